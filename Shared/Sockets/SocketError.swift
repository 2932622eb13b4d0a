import Glibc

/// The one error type of the Sockets module: what failed, the `errno` behind it, and where.
///
/// Callers decide on `code`; `errno` and `context` are for the log line.
public struct SocketError: Error, Sendable, CustomStringConvertible {
    /// What kind of operation failed; stable, machine-readable.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// The code's name, as printed.
        public let name: String

        /// Creating a socket, epoll instance or eventfd failed.
        public static let creation = Code(name: "creation")
        /// `bind` failed (port in use, address not available).
        public static let bind = Code(name: "bind")
        /// `listen` failed.
        public static let listen = Code(name: "listen")
        /// `accept4` failed with something other than "try again".
        public static let accept = Code(name: "accept")
        /// `connect` failed or was refused.
        public static let connect = Code(name: "connect")
        /// Reading from a connected socket failed (reset, not "would block").
        public static let read = Code(name: "read")
        /// Writing to a connected socket failed (broken pipe, reset).
        public static let write = Code(name: "write")
        /// A host name or address string could not be resolved or parsed.
        public static let address = Code(name: "address")
        /// A socket option could not be set or read.
        public static let option = Code(name: "option")
        /// An epoll registration change failed.
        public static let eventLoop = Code(name: "eventLoop")
        /// An operation did not complete within its timeout.
        public static let timeout = Code(name: "timeout")

        /// Prints the code's name.
        public var description: String { name }
    }

    /// What failed.
    public let code: Code
    /// The `errno` value reported by the system call, or 0 when none was involved.
    public let errno: Int32
    /// What we were doing, e.g. "bind 0.0.0.0:8080".
    public let context: String
    /// Where the error was raised (for the log, never for the client).
    public let file: String
    /// Line at which the error was raised.
    public let line: Int

    /// Creates an error; `errno` defaults to the thread's current value.
    public init(_ code: Code, errno: Int32 = Glibc.errno, context: String,
                file: String = #fileID, line: Int = #line) {
        self.code = code
        self.errno = errno
        self.context = context
        self.file = file
        self.line = line
    }

    /// True when the peer went away (reset or broken pipe) rather than a local failure.
    public var isPeerGone: Bool {
        errno == ECONNRESET || errno == EPIPE || errno == ENOTCONN || errno == ESHUTDOWN
    }

    /// `code: context: strerror (errno) at file:line`.
    public var description: String {
        var text = "\(code): \(context)"
        if errno != 0 { text += ": \(String(cString: strerror(errno))) (errno \(errno))" }
        return text + " at \(file):\(line)"
    }
}
