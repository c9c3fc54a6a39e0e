import NIOHPACK

/// A stream's request headers as the version choice reads them (no closures to allocate per stream).
struct StreamAttributes: RequestAttributes {
    let headers: HPACKHeaders

    func header(_ name: String) -> Substring? { headers.first(name: name).map { Substring($0) } }
    func cookie(_ name: String) -> Substring? { HTTP2ClientStream.cookie(headers, name) }
}
