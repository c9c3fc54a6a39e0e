/// gRPC status codes as HTTP statuses, so a failed call counts like a failed request: the mapping of
/// Google's API design guide (`google.rpc.Code`). OK is 200, client mistakes are 4xx, and the server's
/// failures (UNKNOWN, INTERNAL, UNAVAILABLE, DATA_LOSS, DEADLINE_EXCEEDED, UNIMPLEMENTED) are 5xx.
public enum GRPCStatus {
    public static func httpEquivalent(_ code: Int) -> Int {
        switch code {
        case 0: 200
        case 1: 499 // CANCELLED
        case 3, 9, 11: 400 // INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE
        case 4: 504 // DEADLINE_EXCEEDED
        case 5: 404 // NOT_FOUND
        case 6, 10: 409 // ALREADY_EXISTS, ABORTED
        case 7: 403 // PERMISSION_DENIED
        case 8: 429 // RESOURCE_EXHAUSTED
        case 12: 501 // UNIMPLEMENTED
        case 14: 503 // UNAVAILABLE
        case 16: 401 // UNAUTHENTICATED
        default: 500 // UNKNOWN, INTERNAL, DATA_LOSS and codes not defined
        }
    }
}
