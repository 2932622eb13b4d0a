import Glibc

// Swift's Glibc module map leaves out <sys/epoll.h>, <sys/eventfd.h> and the GNU extensions
// (accept4, pthread_setname_np), and this module has no C target, so those few calls are
// looked up once with dlsym and called through typed C function pointers (the real C ABI,
// unlike @_silgen_name). This file is the only place that knows their layouts and constants.

enum Sys {
    typealias EpollCreate1 = @convention(c) (Int32) -> Int32
    typealias EpollCtl = @convention(c) (Int32, Int32, Int32, UnsafeMutableRawPointer?) -> Int32
    typealias EpollWait = @convention(c) (Int32, UnsafeMutableRawPointer?, Int32, Int32) -> Int32
    typealias EventFD = @convention(c) (UInt32, Int32) -> Int32
    typealias Accept4 = @convention(c) (Int32, UnsafeMutablePointer<sockaddr>?, UnsafeMutablePointer<socklen_t>?, Int32) -> Int32
    typealias SetThreadName = @convention(c) (pthread_t, UnsafePointer<CChar>) -> Int32

    private static func symbol<T>(_ name: String, as type: T.Type) -> T {
        // RTLD_DEFAULT is (void *)0 on glibc: search every object already loaded (libc).
        guard let pointer = dlsym(nil, name) else {
            fatalError("Sockets: libc symbol \(name) not found; this module needs Linux/glibc")
        }
        return unsafeBitCast(pointer, to: type)
    }

    nonisolated(unsafe) static let epollCreate1 = symbol("epoll_create1", as: EpollCreate1.self)
    nonisolated(unsafe) static let epollCtlFunction = symbol("epoll_ctl", as: EpollCtl.self)
    nonisolated(unsafe) static let epollWaitFunction = symbol("epoll_wait", as: EpollWait.self)
    nonisolated(unsafe) static let eventfd = symbol("eventfd", as: EventFD.self)
    // accept4 and pthread_setname_np are GNU extensions the module map hides as well.
    nonisolated(unsafe) static let accept4 = symbol("accept4", as: Accept4.self)
    nonisolated(unsafe) static let setThreadName = symbol("pthread_setname_np", as: SetThreadName.self)

    // <sys/epoll.h>
    static let EPOLLIN: UInt32 = 0x001
    static let EPOLLOUT: UInt32 = 0x004
    static let EPOLLERR: UInt32 = 0x008
    static let EPOLLHUP: UInt32 = 0x010
    static let EPOLLRDHUP: UInt32 = 0x2000
    static let EPOLL_CTL_ADD: Int32 = 1
    static let EPOLL_CTL_DEL: Int32 = 2
    static let EPOLL_CTL_MOD: Int32 = 3
    static let EPOLL_CLOEXEC: Int32 = 0o2000000   // == O_CLOEXEC
    // <sys/eventfd.h>
    static let EFD_CLOEXEC: Int32 = 0o2000000
    static let EFD_NONBLOCK: Int32 = 0o4000

    // struct epoll_event is packed on x86_64 (12 bytes) and naturally aligned elsewhere (16).
    #if arch(x86_64)
    static let epollEventSize = 12
    static let epollDataOffset = 4
    #else
    static let epollEventSize = 16
    static let epollDataOffset = 8
    #endif

    /// epoll_ctl with a (events, u64) pair encoded in the platform's struct layout.
    static func epollCtl(_ epfd: Int32, _ op: Int32, _ fd: Int32, events: UInt32, data: UInt64) -> Int32 {
        withUnsafeTemporaryAllocation(byteCount: 16, alignment: 8) { raw in
            raw.initializeMemory(as: UInt8.self, repeating: 0)
            raw.storeBytes(of: events, toByteOffset: 0, as: UInt32.self)
            // storeBytes with an unaligned offset is allowed for trivial types.
            raw.storeBytes(of: data, toByteOffset: epollDataOffset, as: UInt64.self)
            return epollCtlFunction(epfd, op, fd, raw.baseAddress)
        }
    }

    static func monotonicNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}

