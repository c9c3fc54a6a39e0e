// libFuzzer harnesses for what parses untrusted input: the spec reader and both HTTP head parsers.
//
//   SLUICE_FUZZ=spec|request|response sluice-fuzz [libFuzzer options] [CORPUS_DIR...]   (fuzzing build)
//   sluice-fuzz spec|request|response FILE...                                         (replay build)
//
// bench/fuzz.sh builds it with -sanitize=fuzzer and -DFUZZING (in .build/fuzz) and runs each harness;
// a normal build replays inputs, which is how the tests run every seed and every crash ever found.
import Foundation
import SluiceProxy
import SluiceSpec

enum Harness: String, CaseIterable {
    case spec, request, response

    func run(_ bytes: [UInt8]) {
        switch self {
        case .spec:
            // Any text as a manifest: the catalog must answer with deployments or diagnostics, never trap.
            _ = SpecCatalog(manifests: [SourceFile(path: "fuzz.yaml", text: String(decoding: bytes, as: UTF8.self))])
        case .request:
            ParserFuzzing.clientRequests(bytes)
        case .response:
            ParserFuzzing.upstreamResponse(bytes)
        }
    }
}

#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

nonisolated(unsafe) var harness = Harness.spec
guard let chosen = ProcessInfo.processInfo.environment["SLUICE_FUZZ"].flatMap(Harness.init(rawValue:)) else {
    FileHandle.standardError.write(Data("set SLUICE_FUZZ to one of: \(Harness.allCases.map(\.rawValue).joined(separator: ", "))\n".utf8))
    exit(2)
}
harness = chosen
var argc = CommandLine.argc
var argv = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in
    harness.run(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
    return 0
})
#else
let arguments = Array(CommandLine.arguments.dropFirst())
guard let name = arguments.first, let chosen = Harness(rawValue: name) else {
    FileHandle.standardError.write(Data("usage: sluice-fuzz spec|request|response FILE...\n".utf8))
    exit(2)
}
var replayed = 0
for path in arguments.dropFirst() {
    guard let data = FileManager.default.contents(atPath: path) else {
        FileHandle.standardError.write(Data("cannot read \(path)\n".utf8))
        exit(1)
    }
    chosen.run(Array(data))
    replayed += 1
}
print("replayed \(replayed) input(s) through \(name)")
#endif
