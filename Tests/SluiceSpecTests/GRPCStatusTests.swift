import SluiceSpec
import Testing

@Suite("gRPC status as HTTP status")
struct GRPCStatusTests {
    /// The HTTP mapping in the comments of google/rpc/code.proto, code by code.
    static let googleRPCCode: [(code: Int, name: String, http: Int)] = [
        (0, "OK", 200), (1, "CANCELLED", 499), (2, "UNKNOWN", 500), (3, "INVALID_ARGUMENT", 400),
        (4, "DEADLINE_EXCEEDED", 504), (5, "NOT_FOUND", 404), (6, "ALREADY_EXISTS", 409), (7, "PERMISSION_DENIED", 403),
        (8, "RESOURCE_EXHAUSTED", 429), (9, "FAILED_PRECONDITION", 400), (10, "ABORTED", 409), (11, "OUT_OF_RANGE", 400),
        (12, "UNIMPLEMENTED", 501), (13, "INTERNAL", 500), (14, "UNAVAILABLE", 503), (15, "DATA_LOSS", 500),
        (16, "UNAUTHENTICATED", 401),
    ]

    @Test("every code maps as google.rpc.Code says; a code it does not define is a server failure")
    func mapping() {
        for (code, name, http) in Self.googleRPCCode {
            #expect(GRPCStatus.httpEquivalent(code) == http, "\(name)")
        }
        #expect(GRPCStatus.httpEquivalent(17) == 500)
        #expect(GRPCStatus.httpEquivalent(-1) == 500)
    }
}
