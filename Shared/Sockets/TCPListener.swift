import Glibc

/// A non-blocking, close-on-exec TCP listening socket with SO_REUSEADDR set.
///
/// A value type around the descriptor: whoever created it calls `close()` exactly once.
public struct TCPListener: Sendable, Hashable {
    /// The listening descriptor (for event-loop registration only).
    public let fileDescriptor: Int32
    /// The bound address; its port is the real one when port 0 was asked for.
    public let localAddress: SocketAddress

    /// The bound port.
    public var port: UInt16 { localAddress.port }

    /// Binds and listens on `host:port` ("0.0.0.0", "::", "127.0.0.1", "::1", "localhost"…).
    ///
    /// "::" accepts IPv4 too (IPV6_V6ONLY off) so one socket serves both families.
    /// Port 0 asks the kernel for a free port; read it back from `port`.
    public static func bind(host: String, port: UInt16, backlog: Int32 = 1024,
                            reusePort: Bool = false) throws(SocketError) -> TCPListener {
        let addresses = try SocketAddress.resolve(host: host, port: port)
        var lastError: SocketError?
        for address in addresses {
            do {
                return try bind(address: address, backlog: backlog, reusePort: reusePort)
            } catch {
                lastError = error
            }
        }
        throw lastError ?? SocketError(.bind, errno: 0, context: "bind \(host):\(port)")
    }

    /// Binds and listens on one resolved address.
    public static func bind(address: SocketAddress, backlog: Int32 = 1024,
                            reusePort: Bool = false) throws(SocketError) -> TCPListener {
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let fd = socket(address.addressFamily, type, 0)
        guard fd >= 0 else { throw SocketError(.creation, context: "socket for \(address)") }
        var one: Int32 = 1
        var zero: Int32 = 0
        // Without SO_REUSEADDR a restart fails with EADDRINUSE while old connections sit in TIME_WAIT.
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if reusePort {
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        if address.family == .ipv6 {
            setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &zero, socklen_t(MemoryLayout<Int32>.size))
        }
        let bound = address.withSockAddr { Glibc.bind(fd, $0, $1) }
        guard bound == 0 else {
            let error = SocketError(.bind, context: "bind \(address)")
            Glibc.close(fd)
            throw error
        }
        guard listen(fd, backlog) == 0 else {
            let error = SocketError(.listen, context: "listen \(address)")
            Glibc.close(fd)
            throw error
        }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0, let local = SocketAddress(storage: &storage) else {
            let error = SocketError(.bind, context: "getsockname \(address)")
            Glibc.close(fd)
            throw error
        }
        return TCPListener(fileDescriptor: fd, localAddress: local)
    }

    /// Accepts one pending connection as a non-blocking, close-on-exec socket.
    ///
    /// Returns nil when none is pending. Transient per-connection failures (the peer reset
    /// before we accepted) are skipped; running out of descriptors or memory throws so the
    /// caller can back off instead of spinning on a listener that stays readable.
    public func accept() throws(SocketError) -> (socket: TCPSocket, peer: SocketAddress?)? {
        while true {
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let flags = Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
            let fd = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Sys.accept4(fileDescriptor, $0, &length, flags) }
            }
            if fd >= 0 {
                return (TCPSocket(fileDescriptor: fd), SocketAddress(storage: &storage))
            }
            let code = errno
            switch code {
            case EAGAIN, EWOULDBLOCK:
                return nil
            case EINTR, ECONNABORTED, EPROTO, ENETDOWN, ENOPROTOOPT, EHOSTDOWN, ENONET,
                 EHOSTUNREACH, EOPNOTSUPP, ENETUNREACH:
                // Linux reports pending network errors on the new socket through accept: skip it.
                continue
            default:
                throw SocketError(.accept, errno: code, context: "accept on \(localAddress)")
            }
        }
    }

    /// Closes the listening socket; new connection attempts are refused from now on.
    public func close() {
        Glibc.close(fileDescriptor)
    }
}
