import Durations
import Glibc

/// Readiness a descriptor is interested in, or reported by epoll.
public struct IOEvents: OptionSet, Sendable, Hashable {
    /// The raw epoll bits.
    public let rawValue: UInt32
    /// Creates a set from epoll bits.
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Data (or a connection, or end-of-file) is waiting to be read.
    public static let readable = IOEvents(rawValue: Sys.EPOLLIN)
    /// The send buffer has room.
    public static let writable = IOEvents(rawValue: Sys.EPOLLOUT)
    /// The peer shut down its writing side (EPOLLRDHUP).
    public static let readHangup = IOEvents(rawValue: Sys.EPOLLRDHUP)
    /// Both directions are closed (reported, never asked for).
    public static let hangup = IOEvents(rawValue: Sys.EPOLLHUP)
    /// A socket error is pending (reported, never asked for).
    public static let error = IOEvents(rawValue: Sys.EPOLLERR)
}

/// An epoll event loop on its own OS thread (never Swift's cooperative pool).
///
/// Registrations, timers and their callbacks are confined to the loop thread: call
/// `register`, `setInterest`, `deregister`, `schedule`, `reschedule` and `cancel` only from
/// callbacks running on the loop (or from closures passed to `execute`). `execute`, `stop`
/// and `waitUntilStopped` are safe from any thread or task. Readiness is level-triggered.
public final class EventLoop: @unchecked Sendable {
    private struct Registration {
        var generation: UInt32
        var handler: (IOEvents) -> Void
    }

    private struct Inbox {
        var tasks: [@Sendable () -> Void] = []
        var wakePending = false
        var started = false
        var stopping = false
        var stopped = false
        var waiters: [CheckedContinuation<Void, Never>] = []
        var thread: pthread_t?
    }

    /// The name given to the loop's thread (visible in `top -H` and debuggers).
    public let name: String
    private let epollFD: Int32
    private let wakeFD: Int32
    private let maxEvents: Int
    private let inbox = Locked(Inbox())

    // Loop-confined state.
    private var registrations: [Registration?] = []
    private var nextGeneration: UInt32 = 0
    private var timers = TimerQueue()
    private var spareTasks: [@Sendable () -> Void] = []

    /// Creates the epoll instance and its wake-up eventfd; call `start()` to run it.
    public init(name: String = "event-loop", maxEventsPerWait: Int = 256) throws(SocketError) {
        self.name = name
        self.maxEvents = max(16, maxEventsPerWait)
        let epfd = Sys.epollCreate1(Sys.EPOLL_CLOEXEC)
        guard epfd >= 0 else { throw SocketError(.creation, context: "epoll_create1") }
        let efd = Sys.eventfd(0, Sys.EFD_CLOEXEC | Sys.EFD_NONBLOCK)
        guard efd >= 0 else {
            let error = SocketError(.creation, context: "eventfd")
            close(epfd)
            throw error
        }
        guard Sys.epollCtl(epfd, Sys.EPOLL_CTL_ADD, efd, events: Sys.EPOLLIN, data: UInt64(UInt32(bitPattern: efd))) == 0 else {
            let error = SocketError(.eventLoop, context: "epoll_ctl add eventfd")
            close(efd)
            close(epfd)
            throw error
        }
        epollFD = epfd
        wakeFD = efd
    }

    deinit {
        // A running loop is retained by its thread and closes its descriptors on exit; only a
        // loop that never started still owns them here.
        let started = inbox.withLock { $0.started }
        if !started {
            close(wakeFD)
            close(epollFD)
        }
    }

    /// Starts the loop's thread. Calling it twice does nothing.
    public func start() {
        let first = inbox.withLock { state -> Bool in
            if state.started { return false }
            state.started = true
            return true
        }
        guard first else { return }
        let context = Unmanaged.passRetained(self).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { argument in
            let loop = Unmanaged<EventLoop>.fromOpaque(argument!).takeRetainedValue()
            loop.runOnThisThread()
            return nil
        }, context)
        precondition(rc == 0, "EventLoop \(name): pthread_create failed (\(rc))")
        pthread_detach(thread)
    }

    /// True when called from the loop's own thread.
    public var isInLoopThread: Bool {
        let current = pthread_self()
        return inbox.withLock { state in state.thread.map { pthread_equal($0, current) != 0 } ?? false }
    }

    /// Runs `work` on the loop thread soon. Safe from any thread; one wake-up is shared by
    /// everything queued before the loop gets to it. Work queued after `stop()` is dropped.
    public func execute(_ work: @escaping @Sendable () -> Void) {
        let mustWake = inbox.withLock { state -> Bool in
            if state.stopped { return false }
            state.tasks.append(work)
            if state.wakePending { return false }
            state.wakePending = true
            return true
        }
        if mustWake { wake() }
    }

    /// Asks the loop to exit after its current iteration. Queued work not yet started is
    /// dropped; registered descriptors are not closed (their owners close them).
    public func stop() {
        let mustWake = inbox.withLock { state -> Bool in
            if state.stopping || state.stopped { return false }
            state.stopping = true
            if !state.started {
                state.stopped = true
                return false
            }
            return true
        }
        if mustWake { wake() }
        let waiters = inbox.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard state.stopped else { return [] }
            defer { state.waiters = [] }
            return state.waiters
        }
        waiters.forEach { $0.resume() }
    }

    /// Suspends until the loop's thread has exited.
    public func waitUntilStopped() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = inbox.withLock { state -> Bool in
                if state.stopped { return true }
                state.waiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    // MARK: Loop-thread API

    /// Watches `fileDescriptor` for `interest` and calls `handler` with what is ready.
    /// Loop thread only. The handler may change or remove its own registration.
    public func register(_ fileDescriptor: Int32, interest: IOEvents,
                         handler: @escaping (IOEvents) -> Void) throws(SocketError) {
        precondition(fileDescriptor >= 0, "negative descriptor")
        nextGeneration &+= 1
        let generation = nextGeneration
        let rc = Sys.epollCtl(epollFD, Sys.EPOLL_CTL_ADD, fileDescriptor, events: interest.rawValue,
                              data: Self.token(fileDescriptor, generation))
        guard rc == 0 else { throw SocketError(.eventLoop, context: "epoll_ctl add fd \(fileDescriptor)") }
        let index = Int(fileDescriptor)
        if index >= registrations.count {
            registrations.append(contentsOf: repeatElement(nil, count: index - registrations.count + 64))
        }
        registrations[index] = Registration(generation: generation, handler: handler)
    }

    /// Changes what a registered descriptor is watched for (e.g. add `.writable` while
    /// output is pending). Loop thread only.
    public func setInterest(_ fileDescriptor: Int32, _ interest: IOEvents) throws(SocketError) {
        let index = Int(fileDescriptor)
        guard index >= 0, index < registrations.count, let registration = registrations[index] else {
            throw SocketError(.eventLoop, errno: EBADF, context: "fd \(fileDescriptor) not registered")
        }
        let rc = Sys.epollCtl(epollFD, Sys.EPOLL_CTL_MOD, fileDescriptor, events: interest.rawValue,
                              data: Self.token(fileDescriptor, registration.generation))
        guard rc == 0 else { throw SocketError(.eventLoop, context: "epoll_ctl mod fd \(fileDescriptor)") }
    }

    /// Stops watching a descriptor; call before closing it. Loop thread only.
    public func deregister(_ fileDescriptor: Int32) {
        let index = Int(fileDescriptor)
        guard index >= 0, index < registrations.count, registrations[index] != nil else { return }
        registrations[index] = nil
        _ = Sys.epollCtl(epollFD, Sys.EPOLL_CTL_DEL, fileDescriptor, events: 0, data: 0)
    }

    /// Calls `handler` on the loop after `delay`. Loop thread only.
    @discardableResult
    public func schedule(after delay: Duration, _ handler: @escaping () -> Void) -> TimerID {
        timers.schedule(at: Sys.monotonicNanoseconds() &+ delay.nonNegativeNanoseconds, handler)
    }

    /// Moves a pending timer to fire `delay` from now; false if it already fired or was
    /// cancelled. Loop thread only.
    @discardableResult
    public func reschedule(_ timer: TimerID, after delay: Duration) -> Bool {
        timers.reschedule(timer, to: Sys.monotonicNanoseconds() &+ delay.nonNegativeNanoseconds)
    }

    /// Calls `handler` on the loop at `deadline` (nanoseconds of `EventLoop.now()`).
    /// Loop thread only.
    @discardableResult
    public func schedule(at deadline: UInt64, _ handler: @escaping () -> Void) -> TimerID {
        timers.schedule(at: deadline, handler)
    }

    /// Moves a pending timer to `deadline` (nanoseconds of `EventLoop.now()`); false if it
    /// already fired or was cancelled. Loop thread only.
    @discardableResult
    public func reschedule(_ timer: TimerID, at deadline: UInt64) -> Bool {
        timers.reschedule(timer, to: deadline)
    }

    /// Cancels a pending timer; stale ids are ignored. Loop thread only.
    public func cancel(_ timer: TimerID) {
        timers.cancel(timer)
    }

    /// Nanoseconds on the monotonic clock; the time base of deadlines.
    public static func now() -> UInt64 { Sys.monotonicNanoseconds() }

    // MARK: The loop

    private static func token(_ fd: Int32, _ generation: UInt32) -> UInt64 {
        UInt64(generation) << 32 | UInt64(UInt32(bitPattern: fd))
    }

    private func wake() {
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { Glibc.write(wakeFD, $0.baseAddress, 8) }
    }

    private func drainWakeFD() {
        var value: UInt64 = 0
        _ = withUnsafeMutableBytes(of: &value) { Glibc.read(wakeFD, $0.baseAddress, 8) }
    }

    private func runOnThisThread() {
        let current = pthread_self()
        inbox.withLock { $0.thread = current }
        _ = Sys.setThreadName(current, String(name.prefix(15)))
        let eventSize = Sys.epollEventSize
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: maxEvents * eventSize, alignment: 8)
        defer { buffer.deallocate() }

        while true {
            var timeout: Int32 = -1
            if let deadline = timers.nextDeadline {
                let now = Sys.monotonicNanoseconds()
                timeout = deadline <= now ? 0 : Int32(clamping: (deadline - now + 999_999) / 1_000_000)
            }
            let count = Sys.epollWaitFunction(epollFD, buffer, Int32(maxEvents), timeout)
            if count < 0 && errno != EINTR {
                // Only EBADF/EFAULT/EINVAL are possible: a programming error; do not spin.
                fatalError("EventLoop \(name): epoll_wait failed, errno \(errno)")
            }
            for index in 0..<max(0, Int(count)) {
                let base = buffer + index * eventSize
                let events = base.loadUnaligned(as: UInt32.self)
                let data = base.loadUnaligned(fromByteOffset: Sys.epollDataOffset, as: UInt64.self)
                let fd = Int32(bitPattern: UInt32(truncatingIfNeeded: data))
                if fd == wakeFD {
                    drainWakeFD()
                    continue
                }
                let generation = UInt32(truncatingIfNeeded: data >> 32)
                // The generation check drops events for a descriptor closed and reused earlier
                // in this same batch.
                guard Int(fd) < registrations.count, let registration = registrations[Int(fd)],
                      registration.generation == generation else { continue }
                registration.handler(IOEvents(rawValue: events))
            }

            var tasks = spareTasks
            let stopping = inbox.withLock { state -> Bool in
                swap(&tasks, &state.tasks)
                state.wakePending = false
                return state.stopping
            }
            for task in tasks { task() }
            tasks.removeAll(keepingCapacity: true)
            spareTasks = tasks

            if !timers.isEmpty {
                let now = Sys.monotonicNanoseconds()
                while let handler = timers.popExpired(now: now) { handler() }
            }
            if stopping { break }
        }

        registrations.removeAll()
        timers = TimerQueue()
        let waiters = inbox.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.stopped = true
            state.tasks.removeAll()
            defer { state.waiters = [] }
            return state.waiters
        }
        close(wakeFD)
        close(epollFD)
        waiters.forEach { $0.resume() }
    }
}
