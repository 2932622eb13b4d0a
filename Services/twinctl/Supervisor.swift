import Foundation

/// The folder holding this executable (the services are built beside it).
func executableDirectory() -> URL {
    URL(fileURLWithPath: executablePath()).deletingLastPathComponent()
}

/// This executable's path.
func executablePath() -> String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
}

/// `twinctl __child PARENT_PID EXECUTABLE`: how `twinctl up` starts a service. Asks the kernel to
/// send this process SIGTERM when its parent dies — even by SIGKILL — so no service outlives the
/// stack holding its port, leaves the terminal's process group (Ctrl-C reaches `twinctl up`
/// alone, which stops the services in order), then becomes the service (`execv`: same pid, same
/// environment and log file).
func runChild(_ arguments: [String]) -> Never {
    guard arguments.count >= 2, let parent = pid_t(arguments[0]) else {
        printError("twinctl __child: internal command of twinctl up (usage: __child PARENT_PID EXECUTABLE)")
        exit(2)
    }
    let executable = arguments[1]
    // The service starts with default stop signals, unblocked: a mask inherited from the spawning
    // thread would keep an early SIGTERM pending, and the service's own SignalListener, setting it
    // to "ignore" before installing its handler, would then discard it.
    signal(SIGTERM, SIG_DFL)
    signal(SIGINT, SIG_DFL)
    var none = sigset_t()
    sigemptyset(&none)
    sigprocmask(SIG_SETMASK, &none, nil)
    setParentDeathSignal(SIGTERM)
    // The parent may have died before the line above: then nobody would ever send the signal.
    if getppid() != parent { exit(1) }
    _ = setpgid(0, 0)
    var argv: [UnsafeMutablePointer<CChar>?] = [strdup(executable), nil]
    execv(executable, &argv)
    printError("twinctl __child: cannot run \(executable): \(String(cString: strerror(errno)))")
    exit(127)
}

/// `prctl(PR_SET_PDEATHSIG, signal)`. Swift does not import C's variadic `prctl`, so it is called
/// through a pointer of its fixed-argument form (integer arguments pass alike on Linux's ABIs).
private func setParentDeathSignal(_ signal: Int32) {
    typealias Prctl = @convention(c) (Int32, UInt, UInt, UInt, UInt) -> Int32
    guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, "prctl") else { return }
    let prctl = unsafeBitCast(symbol, to: Prctl.self)
    _ = prctl(1 /* PR_SET_PDEATHSIG */, UInt(signal), 0, 0, 0)
}

/// Starts the services as child processes (through `twinctl __child`), reports each exit, and
/// stops them all with SIGTERM, then SIGKILL after a grace period.
///
/// Every child is spawned from one thread that lives as long as twinctl: the kernel's
/// parent-death signal fires when the *thread* that created a child ends, and the threads
/// behind Swift's task executor may end while idle.
final class Supervisor: @unchecked Sendable {
    private let lock = NSLock()
    private var processes: [String: Process] = [:]
    private var stopping = false
    private let onExit: @Sendable (String, Int32) -> Void
    private let spawner = SpawnThread()

    /// `onExit` is called with the name and status of every child that exits before `stopAll`.
    init(onExit: @escaping @Sendable (String, Int32) -> Void) {
        self.onExit = onExit
    }

    /// Starts `executable` with `environment`, its standard output and error appended to `log`.
    func start(name: String, executable: URL, environment: [String: String], log: URL) throws {
        guard FileManager.default.isExecutableFile(atPath: executable.path) else {
            throw CommandFailure("\(executable.path) not found: build the package first (swift build)")
        }
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executablePath())
        process.arguments = ["__child", String(getpid()), executable.path]
        process.environment = environment
        process.standardOutput = handle
        process.standardError = handle
        process.terminationHandler = { [weak self] p in self?.didExit(name, p.terminationStatus) }
        try spawner.run { try process.run() }
        lock.withLock { processes[name] = process }
    }

    private func didExit(_ name: String, _ status: Int32) {
        let report = lock.withLock { !stopping }
        if report { onExit(name, status) }
    }

    /// How a child ended: its exit status, or the signal that ended it.
    struct Ending: CustomStringConvertible {
        var status: Int32
        var bySignal: Bool
        /// A clean stop: exit status 0, or our SIGTERM before the service could handle it.
        var isClean: Bool { bySignal ? status == SIGTERM : status == 0 }
        var description: String {
            bySignal ? "stopped by signal \(status)\(status == SIGTERM ? " (SIGTERM before it had started)" : status == SIGKILL ? " (SIGKILL after the grace period)" : "")"
                : "exited with \(status)"
        }
    }

    /// SIGTERM to every child, then waits up to `grace`; SIGKILL for any still running.
    func stopAll(grace: Duration) async -> [String: Ending] {
        let running = lock.withLock { () -> [String: Process] in
            stopping = true
            return processes
        }
        for process in running.values where process.isRunning {
            await waitUntilSignalWouldArrive(SIGTERM, pid: process.processIdentifier)
            kill(process.processIdentifier, SIGTERM)
        }
        let deadline = ContinuousClock.now + grace
        while running.values.contains(where: \.isRunning) && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(100))
        }
        for process in running.values where process.isRunning { kill(process.processIdentifier, SIGKILL) }
        for process in running.values { process.waitUntilExit() }
        return running.mapValues { Ending(status: $0.terminationStatus, bySignal: $0.terminationReason == .uncaughtSignal) }
    }
}

/// Waits (up to 2 s) while `pid` ignores `signal` without a handler: a service stopped at the very
/// moment it starts, between ServiceKit's `SignalListener` ignoring the signal and libdispatch
/// installing its handler, would otherwise lose the SIGTERM and run on until killed.
func waitUntilSignalWouldArrive(_ signal: Int32, pid: pid_t) async {
    let bit = UInt64(1) << UInt64(signal - 1)
    let deadline = ContinuousClock.now + .seconds(2)
    while ContinuousClock.now < deadline {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return }
        func mask(_ name: String) -> UInt64 {
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }) else { return 0 }
            return UInt64(line.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces), radix: 16) ?? 0
        }
        if mask("SigIgn") & bit == 0 || mask("SigCgt") & bit != 0 { return }
        try? await Task.sleep(for: .milliseconds(10))
    }
}

/// One thread that runs the closures it is given, one at a time, and never ends.
final class SpawnThread: @unchecked Sendable {
    private let lock = NSCondition()
    private var jobs: [() -> Void] = []

    init() {
        let thread = Thread { [lock] in
            while true {
                lock.lock()
                while self.jobs.isEmpty { lock.wait() }
                let job = self.jobs.removeFirst()
                lock.unlock()
                job()
            }
        }
        thread.start()
    }

    /// Runs `body` on the thread and waits for it.
    func run(_ body: @escaping () throws -> Void) throws {
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var failure: Error?
        lock.lock()
        jobs.append {
            do { try body() } catch { failure = error }
            done.signal()
        }
        lock.signal()
        lock.unlock()
        done.wait()
        if let failure { throw failure }
    }
}
