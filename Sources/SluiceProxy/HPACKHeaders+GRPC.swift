import NIOHPACK

extension HPACKHeaders {
    /// A gRPC request or answer: `content-type: application/grpc`, with or without a `+format`.
    var isGRPC: Bool { first(name: "content-type")?.hasPrefix("application/grpc") ?? false }
}
