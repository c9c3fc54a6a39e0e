import Testing
@testable import SluiceAnalysis

@Suite("Balanced order: a Williams design for treatments taking turns")
struct BalancedOrderTests {
    @Test("every row is a permutation; every treatment holds every position and follows every other equally often", arguments: 1...9)
    func balanced(count: Int) {
        let order = BalancedOrder(count: count)
        #expect(order.count == count)
        #expect(order.rows.count == (count % 2 == 0 ? count : 2 * count))
        var position = [[Int]](repeating: [Int](repeating: 0, count: count), count: count)
        var follows = [[Int]](repeating: [Int](repeating: 0, count: count), count: count)
        for row in order.rows {
            #expect(row.sorted() == Array(0..<count), "\(row)")
            for (index, treatment) in row.enumerated() { position[treatment][index] += 1 }
            for (before, after) in zip(row, row.dropFirst()) { follows[before][after] += 1 }
        }
        let perPosition = order.rows.count / count
        #expect(position.allSatisfy { $0.allSatisfy { $0 == perPosition } }, "\(position)")
        // Each of the n(n-1) ordered pairs appears in (rows × (n-1)) adjacent places equally often.
        let perPair = count == 1 ? 0 : order.rows.count * (count - 1) / (count * (count - 1))
        for before in 0..<count {
            for after in 0..<count where after != before {
                #expect(follows[before][after] == perPair, "\(before) then \(after): \(follows[before][after]) times, rows \(order.rows)")
            }
        }
    }

    @Test("the known square for four, and slots taking the rows one after another")
    func slots() {
        let order = BalancedOrder(count: 4)
        #expect(order.rows == [[0, 1, 3, 2], [1, 2, 0, 3], [2, 3, 1, 0], [3, 0, 2, 1]])
        #expect((0..<20).map(order.treatment(atSlot:)) == [0, 1, 3, 2, 1, 2, 0, 3, 2, 3, 1, 0, 3, 0, 2, 1, 0, 1, 3, 2])
        #expect(BalancedOrder(count: 3).rows == [[0, 1, 2], [2, 1, 0], [1, 2, 0], [0, 2, 1], [2, 0, 1], [1, 0, 2]])
        #expect((0..<5).map(BalancedOrder(count: 1).treatment(atSlot:)) == [0, 0, 0, 0, 0])
    }
}
