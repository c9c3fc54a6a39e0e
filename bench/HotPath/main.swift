import Foundation
import SluiceProxy

// bench/hotpath.sh's loop: Sluice's own per-request work (`HotPathBenchmark`) timed on one thread.
//
// Usage: hotpath ITERATIONS ROUTES_JSON REQUEST_FILE RESPONSE_FILE  → prints "ns_per_request checksum"
let arguments = CommandLine.arguments
guard arguments.count == 5, let iterations = Int(arguments[1]) else {
    FileHandle.standardError.write(Data("usage: hotpath ITERATIONS ROUTES_JSON REQUEST_FILE RESPONSE_FILE\n".utf8))
    exit(2)
}
let table = try JSONDecoder().decode(RoutingTable.self, from: Data(contentsOf: URL(fileURLWithPath: arguments[2])))
let request = try String(contentsOfFile: arguments[3], encoding: .utf8)
let response = try String(contentsOfFile: arguments[4], encoding: .utf8)
let result = try HotPathBenchmark.run(iterations: iterations, table: table, request: request, response: response) {
    DispatchTime.now().uptimeNanoseconds
}
print(String(format: "%.1f", result.nanosPerRequest), result.checksum)
