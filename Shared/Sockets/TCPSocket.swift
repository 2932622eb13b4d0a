import Durations
import Glibc

/// A connected, non-blocking TCP socket.
///
/// A value type around the descriptor: the owner calls `close()` exactly once. Reads and
/// writes never block; `waitUntilReadable`/`waitUntilWritable` exist for the blocking
/// client, which runs on its own thread.
public struct TCPSocket: Sendable, Hashable {
    /// The socket descriptor (for event-loop registration only).
    public let fileDescriptor: Int32

    /// Outcome of a non-blocking read.
    public enum ReadResult: Sendable, Equatable {
        /// This many bytes were stored at the start of the buffer.
        case bytes(Int)
        /// Nothing to read right now.
        case wouldBlock
        /// The peer closed its sending side.
        case endOfFile
    }

    /// Outcome of a non-blocking write.
    public enum WriteResult: Sendable, Equatable {
        /// This many bytes were handed to the kernel (possibly fewer than offered).
        case written(Int)
        /// The send buffer is full; wait for writability.
        case wouldBlock
    }

    /// How to shut a connection down.
    public enum ShutdownMode: Sendable {
        /// No more reads.
        case read
        /// No more writes (sends FIN; the peer reads end-of-file).
        case write
        /// Both directions.
        case both
    }

    /// Wraps an already-connected, non-blocking descriptor (from `TCPListener.accept` or `connect`).
    public init(fileDescriptor: Int32) {
        self.fileDescriptor = fileDescriptor
    }

    /// Reads into `buffer[0..<buffer.count]`; the buffer's length is the most read at once.
    public func read(into buffer: inout [UInt8]) throws(SocketError) -> ReadResult {
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fileDescriptor, $0.baseAddress, $0.count, 0) }
            if count > 0 { return .bytes(count) }
            if count == 0 { return buffer.isEmpty ? .bytes(0) : .endOfFile }
            let code = errno
            switch code {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .wouldBlock
            default: throw SocketError(.read, errno: code, context: "recv fd \(fileDescriptor)")
            }
        }
    }

    /// Writes `bytes[offset...]` with MSG_NOSIGNAL (a closed peer is an error, not SIGPIPE).
    public func write(_ bytes: [UInt8], from offset: Int = 0) throws(SocketError) -> WriteResult {
        precondition(offset >= 0 && offset <= bytes.count, "write offset out of range")
        if offset == bytes.count { return .written(0) }
        while true {
            let count = bytes.withUnsafeBytes { raw in
                send(fileDescriptor, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
            }
            if count >= 0 { return .written(count) }
            let code = errno
            switch code {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .wouldBlock
            default: throw SocketError(.write, errno: code, context: "send fd \(fileDescriptor)")
            }
        }
    }

    /// Shuts down one or both directions; errors (already closed) are ignored.
    public func shutdown(_ mode: ShutdownMode) {
        let how: Int32
        switch mode {
        case .read: how = Int32(SHUT_RD)
        case .write: how = Int32(SHUT_WR)
        case .both: how = Int32(SHUT_RDWR)
        }
        _ = Glibc.shutdown(fileDescriptor, how)
    }

    /// Closes the descriptor.
    public func close() {
        _ = Glibc.close(fileDescriptor)
    }

    /// Closes with SO_LINGER 0: the kernel sends RST and frees the socket at once.
    /// For dropping abusive or stuck peers without leaving state in FIN_WAIT.
    public func abort() {
        var option = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fileDescriptor, SOL_SOCKET, SO_LINGER, &option, socklen_t(MemoryLayout<linger>.size))
        _ = Glibc.close(fileDescriptor)
    }

    /// Turns Nagle's algorithm off so small responses leave at once.
    public func setNoDelay(_ enabled: Bool = true) {
        var value: Int32 = enabled ? 1 : 0
        setsockopt(fileDescriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &value, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Sets the kernel send buffer size (tests use a small one to provoke back-pressure).
    public func setSendBufferSize(_ bytes: Int) {
        var value = Int32(clamping: bytes)
        setsockopt(fileDescriptor, SOL_SOCKET, SO_SNDBUF, &value, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Sets the kernel receive buffer size (tests use a small one to play a slow reader).
    public func setReceiveBufferSize(_ bytes: Int) {
        var value = Int32(clamping: bytes)
        setsockopt(fileDescriptor, SOL_SOCKET, SO_RCVBUF, &value, socklen_t(MemoryLayout<Int32>.size))
    }

    /// The remote address, if the socket is still connected.
    public func peerAddress() -> SocketAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fileDescriptor, $0, &length) }
        }
        return rc == 0 ? SocketAddress(storage: &storage) : nil
    }

    // MARK: Blocking helpers (client side, run on a dedicated thread)

    /// Connects to `host:port`, trying each resolved address, within `timeout` per address.
    /// Blocking: run it on a thread, not on Swift's cooperative pool.
    public static func connect(host: String, port: UInt16, timeout: Duration) throws(SocketError) -> TCPSocket {
        var lastError = SocketError(.connect, errno: 0, context: "connect \(host):\(port): no addresses")
        for address in try SocketAddress.resolve(host: host, port: port) {
            do {
                return try connect(to: address, timeout: timeout)
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    /// Connects to one address within `timeout`; the returned socket is non-blocking.
    public static func connect(to address: SocketAddress, timeout: Duration) throws(SocketError) -> TCPSocket {
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let fd = socket(address.addressFamily, type, 0)
        guard fd >= 0 else { throw SocketError(.creation, context: "socket for \(address)") }
        let socket = TCPSocket(fileDescriptor: fd)
        let rc = address.withSockAddr { Glibc.connect(fd, $0, $1) }
        if rc != 0 {
            let code = errno
            guard code == EINPROGRESS || code == EINTR else {
                socket.close()
                throw SocketError(.connect, errno: code, context: "connect \(address)")
            }
            let ready: Bool
            do {
                ready = try socket.waitUntilWritable(timeout: timeout)
            } catch {
                socket.close()
                throw error
            }
            guard ready else {
                socket.close()
                throw SocketError(.timeout, errno: ETIMEDOUT, context: "connect \(address)")
            }
            var failure: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &failure, &length)
            guard failure == 0 else {
                socket.close()
                throw SocketError(.connect, errno: failure, context: "connect \(address)")
            }
        }
        socket.setNoDelay()
        return socket
    }

    /// Blocks until the socket is readable (or at end-of-file/error), or `timeout` passes.
    /// Returns false on timeout; nil timeout waits forever.
    public func waitUntilReadable(timeout: Duration?) throws(SocketError) -> Bool {
        try poll(events: Int16(POLLIN), timeout: timeout)
    }

    /// Blocks until the socket is writable, or `timeout` passes; false on timeout.
    public func waitUntilWritable(timeout: Duration?) throws(SocketError) -> Bool {
        try poll(events: Int16(POLLOUT), timeout: timeout)
    }

    private func poll(events: Int16, timeout: Duration?) throws(SocketError) -> Bool {
        let deadline = timeout.map { Sys.monotonicNanoseconds() &+ $0.nonNegativeNanoseconds }
        while true {
            var milliseconds: Int32 = -1
            if let deadline {
                let now = Sys.monotonicNanoseconds()
                milliseconds = now >= deadline ? 0 : Int32(clamping: (deadline - now + 999_999) / 1_000_000)
            }
            var descriptor = pollfd(fd: fileDescriptor, events: events, revents: 0)
            let rc = Glibc.poll(&descriptor, 1, milliseconds)
            if rc > 0 { return true }
            if rc == 0 { return false }
            if errno == EINTR { continue }
            throw SocketError(.read, context: "poll fd \(fileDescriptor)")
        }
    }
}
