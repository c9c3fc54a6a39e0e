/// The header lines a head drops when forwarded, noted while parsing it. Two are remembered (most
/// heads drop none or one, `Connection`); past that, or when what to drop depends on more than the
/// line itself, `rescan` sends the writer through every line again.
struct DroppedLines {
    /// Line bounds in 32 bits; an empty range is none.
    private var lines: (Int32, Int32, Int32, Int32) = (0, 0, 0, 0)
    var rescan = false

    var first: Range<Int>? { lines.0 == lines.1 ? nil : Int(lines.0)..<Int(lines.1) }
    var second: Range<Int>? { lines.2 == lines.3 ? nil : Int(lines.2)..<Int(lines.3) }

    mutating func add(_ field: HeaderField) {
        let (start, end) = (Int32(field.start), Int32(field.end + 2))
        if lines.0 == lines.1 {
            (lines.0, lines.1) = (start, end)
        } else if lines.2 == lines.3 {
            (lines.2, lines.3) = (start, end)
        } else {
            rescan = true
        }
    }
}
