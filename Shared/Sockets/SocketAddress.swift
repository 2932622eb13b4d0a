import Glibc

/// An IPv4 or IPv6 address and port, copied out of the kernel's `sockaddr` so no pointer
/// or C struct escapes this module.
public struct SocketAddress: Sendable, Hashable, CustomStringConvertible {
    /// The address family.
    public enum Family: Sendable, Hashable {
        /// AF_INET.
        case ipv4
        /// AF_INET6.
        case ipv6
    }

    /// The address family.
    public let family: Family
    /// The port in host byte order.
    public let port: UInt16
    /// The raw address: 4 bytes for IPv4, 16 for IPv6 (network order).
    public let addressBytes: [UInt8]
    /// The IPv6 scope (interface) id; 0 for IPv4.
    public let scopeID: UInt32

    /// Creates an address from a numeric host ("127.0.0.1", "::1", "0.0.0.0", "::") and a port.
    public init(numericHost host: String, port: UInt16) throws(SocketError) {
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            self.family = .ipv4
            self.addressBytes = withUnsafeBytes(of: &v4) { Array($0) }
            self.port = port
            self.scopeID = 0
            return
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 {
            self.family = .ipv6
            self.addressBytes = withUnsafeBytes(of: &v6) { Array($0) }
            self.port = port
            self.scopeID = 0
            return
        }
        throw SocketError(.address, errno: 0, context: "not a numeric IPv4/IPv6 address: \(host)")
    }

    /// Resolves `host` (numeric or a name such as "localhost") to the addresses to try, in
    /// the resolver's order. Blocking (getaddrinfo): call it off the cooperative pool.
    public static func resolve(host: String, port: UInt16) throws(SocketError) -> [SocketAddress] {
        if let numeric = try? SocketAddress(numericHost: host, port: port) { return [numeric] }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let first = list else {
            let message = rc == 0 ? "no addresses" : String(cString: gai_strerror(rc))
            throw SocketError(.address, errno: 0, context: "resolve \(host): \(message)")
        }
        defer { freeaddrinfo(first) }
        var result: [SocketAddress] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let entry = cursor {
            if let sa = entry.pointee.ai_addr, let address = SocketAddress(sockaddr: sa) {
                if !result.contains(address) { result.append(address) }
            }
            cursor = entry.pointee.ai_next
        }
        if result.isEmpty { throw SocketError(.address, errno: 0, context: "resolve \(host): no IPv4/IPv6 addresses") }
        return result
    }

    /// Copies an address out of a kernel `sockaddr` (IPv4 or IPv6 only).
    init?(sockaddr pointer: UnsafePointer<sockaddr>) {
        switch Int32(pointer.pointee.sa_family) {
        case AF_INET:
            let sin = UnsafeRawPointer(pointer).loadUnaligned(as: sockaddr_in.self)
            var addr = sin.sin_addr
            family = .ipv4
            port = UInt16(bigEndian: sin.sin_port)
            addressBytes = withUnsafeBytes(of: &addr) { Array($0) }
            scopeID = 0
        case AF_INET6:
            let sin6 = UnsafeRawPointer(pointer).loadUnaligned(as: sockaddr_in6.self)
            var addr = sin6.sin6_addr
            family = .ipv6
            port = UInt16(bigEndian: sin6.sin6_port)
            addressBytes = withUnsafeBytes(of: &addr) { Array($0) }
            scopeID = sin6.sin6_scope_id
        default:
            return nil
        }
    }

    /// Copies the address out of a `sockaddr_storage` filled by accept/getsockname.
    init?(storage: inout sockaddr_storage) {
        let copy: SocketAddress? = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { SocketAddress(sockaddr: $0) }
        }
        guard let copy else { return nil }
        self = copy
    }

    /// Calls `body` with this address as a kernel `sockaddr` and its length.
    func withSockAddr<Result>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> Result) -> Result {
        switch family {
        case .ipv4:
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            withUnsafeMutableBytes(of: &sin.sin_addr) { $0.copyBytes(from: addressBytes) }
            return withUnsafePointer(to: &sin) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    body($0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        case .ipv6:
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = port.bigEndian
            sin6.sin6_scope_id = scopeID
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { $0.copyBytes(from: addressBytes) }
            return withUnsafePointer(to: &sin6) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    body($0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        }
    }

    var addressFamily: Int32 { family == .ipv4 ? AF_INET : AF_INET6 }

    /// The numeric host, e.g. "127.0.0.1" or "::1".
    public var host: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        let ok: Bool = addressBytes.withUnsafeBytes { raw in
            inet_ntop(addressFamily, raw.baseAddress, &buffer, socklen_t(buffer.count)) != nil
        }
        guard ok else { return "?" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// "127.0.0.1:8080" or "[::1]:8080".
    public var description: String {
        family == .ipv4 ? "\(host):\(port)" : "[\(host)]:\(port)"
    }
}
