import Contracts
import Foundation
import Kafka
import ServiceKit

/// The six services, their default ports' offsets from `--base-port`.
let platformServices: [(name: String, offset: Int)] = [
    ("query-api", 0), ("ingestor", 1), ("validator", 2), ("state-updater", 3), ("simulator-worker", 4), ("drift-monitor", 5),
]

/// `twinctl up`: the embedded broker, all six services as separate processes and a simulated fleet.
/// Ctrl-C (or SIGTERM) stops the fleet, then every service with SIGTERM, then the broker.
func runUp(_ args: Arguments) async throws {
    let signals = SignalListener()
    let basePort = try args.int("base-port", default: 8080)
    let twins = try args.int("twins", default: 30)
    let interval = Duration.milliseconds(try args.int("interval-ms", default: 1000))
    let logDir = URL(fileURLWithPath: args.string("log-dir") ?? ".twinstream/logs")
    try FileManager.default.createDirectory(at: logDir, withIntermediateDirectories: true)
    let stateDir = URL(fileURLWithPath: args.string("state-dir") ?? ".twinstream/state")
    try FileManager.default.createDirectory(at: stateDir, withIntermediateDirectories: true)

    let broker = try EmbeddedBroker(topics: Topic.all)
    printNow("bootstrap.servers=\(broker.bootstrapServers)")
    let binDir = executableDirectory()
    var environment = ProcessInfo.processInfo.environment
    environment["KAFKA_BROKERS"] = broker.bootstrapServers
    // Group and fetch timings suited to the mock cluster, unless the caller set them.
    environment = EnvironmentReader.addingKafkaDefaults(EmbeddedBroker.clientProperties, to: environment)
    environment["STATE_DIR"] = stateDir.path
    environment["AUTO_CREATE_TWINS"] = environment["AUTO_CREATE_TWINS"] ?? "true"
    // The simulated fleet names its models; these rules cover producers that do not.
    environment["MODEL_PREFIX_RULES"] = environment["MODEL_PREFIX_RULES"] ?? "pump-=pump,room-=room,battery-=battery"
    let apiKey = try localAPIKey(stateDir: stateDir, environment: &environment)

    let supervisor = Supervisor()
    for service in platformServices {
        var env = environment
        env["HTTP_PORT"] = String(basePort + service.offset)
        let log = logDir.appendingPathComponent("\(service.name).log")
        try supervisor.start(name: service.name, executable: binDir.appendingPathComponent(service.name), environment: env, log: log)
    }
    printNow("logs in \(logDir.path)")

    var readyAll = true
    for service in platformServices {
        let port = basePort + service.offset
        let ready = await waitUntilReady(port: port, timeout: .seconds(60))
        readyAll = readyAll && ready
        printNow("\(service.name.padding(toLength: 17, withPad: " ", startingAt: 0)) http://127.0.0.1:\(port)  \(ready ? "ready" : "NOT READY (see its log)")")
    }
    printNow("query API: http://127.0.0.1:\(basePort)/v1/twins/{id}  (e.g. /v1/twins/pump-1; all routes: /openapi.json)")
    if let apiKey {
        printNow("api key: \(apiKey)")
        printNow("  curl -H 'Authorization: Bearer \(apiKey)' http://127.0.0.1:\(basePort)/v1/twins/pump-1")
        printNow("  curl -H 'Authorization: Bearer \(apiKey)' -H 'Content-Type: application/json' \\")
        printNow("       -d '{\"twinId\":\"pump-1\",\"ts\":\"\(Timestamp.format(Timestamp.now))\",\"values\":{\"temperature\":71.5}}' http://127.0.0.1:\(basePort + 1)/v1/telemetry")
        let api = (basePort == 8080 ? "" : " --api http://127.0.0.1:\(basePort)") + (args.string("state-dir").map { " --state-dir \($0)" } ?? "")
        printNow("simulate (what if the room's time constant were 9000 s; then 500 samples of an uncertain ambient temperature):")
        printNow("  \(binDir.appendingPathComponent("twinctl").path) simulate room-1 --kind forecast --horizon 24h --what-if tau=9000 --svg room-1.svg\(api)")
        printNow("  \(binDir.appendingPathComponent("twinctl").path) simulate room-1 --kind monteCarlo --horizon 6h --step 5m --samples 500 --uncertain Ta=uniform:0:10 --threshold 'temperature>24' --svg room-1-mc.svg\(api)")
    }

    var fleetTask: Task<Void, Never>?
    if !args.flag("no-fleet") && twins > 0 {
        let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: broker.bootstrapServers))
        printNow("fleet: \(twins) twins publishing to \(Topic.telemetryRaw.name) every \(interval)")
        fleetTask = Task {
            do { try await publishFleet(producer: producer, twins: twins, interval: interval) } catch {
                printError("fleet stopped: \(error)")
            }
            await producer.close()
        }
    }
    printNow(readyAll ? "platform up; Ctrl-C stops it" : "platform up with services not ready; Ctrl-C stops it")

    // Run until a signal, or until a service exits on its own — whichever comes first.
    let (events, trigger) = AsyncStream<String>.makeStream()
    let watchExit = Task { trigger.yield("\(await supervisor.firstExit()) exited") }
    let watchSignal = Task {
        for await signal in signals.signals where signal.requestsShutdown {
            trigger.yield("\(signal) received")
            return
        }
    }
    for await reason in events {
        printNow("\(reason)")
        break
    }
    watchExit.cancel()
    watchSignal.cancel()
    printNow("stopping: fleet, then services (SIGTERM), then broker")
    fleetTask?.cancel()
    _ = await fleetTask?.value
    let codes = await supervisor.stopAll(grace: .seconds(30))
    for (name, code) in codes.sorted(by: { $0.key < $1.key }) {
        printNow("\(name) exited with \(code)")
    }
    broker.shutdown()
    exit(codes.values.allSatisfy { $0 == 0 } ? 0 : 1)
}

/// The API key of the local stack, so `POST /v1/telemetry` works the way it does in production
/// (with a key) without setting anything up: `<state-dir>/api-keys.json` holds its hash, and the
/// key itself is kept in `<state-dir>/local-api-key` (mode 0600) so every `up` can print it
/// again. Nil — and nothing generated — when the caller brought `API_KEYS_FILE` or `AUTH_DISABLED`.
func localAPIKey(stateDir: URL, environment: inout [String: String]) throws -> String? {
    if !(environment["API_KEYS_FILE"] ?? "").isEmpty || !(environment["AUTH_DISABLED"] ?? "").isEmpty { return nil }
    let keysFile = stateDir.appendingPathComponent("api-keys.json").path
    let keyFile = stateDir.appendingPathComponent("local-api-key").path
    environment["API_KEYS_FILE"] = keysFile
    if let saved = FileManager.default.contents(atPath: keyFile).map({ String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) }),
       FileManager.default.fileExists(atPath: keysFile), case .authenticated = try APIKeys.load(path: keysFile).authenticate(key: saved) {
        return saved
    }
    let tenant = environment["DEFAULT_TENANT"].flatMap { $0.isEmpty ? nil : $0 } ?? "default"
    let (key, _) = try APIKeysFile.addKey(tenant: tenant, scopes: [.admin], to: keysFile)
    unlink(keyFile)
    let fd = open(keyFile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw UsageError("cannot write \(keyFile)") }
    defer { close(fd) }
    let line = Array((key + "\n").utf8)
    guard line.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == line.count else { throw UsageError("cannot write \(keyFile)") }
    return key
}

/// The folder holding this executable (the services are built beside it).
func executableDirectory() -> URL {
    let path = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return URL(fileURLWithPath: path).deletingLastPathComponent()
}

/// Starts child processes and stops them in order, SIGTERM first.
final class Supervisor: @unchecked Sendable {
    private let lock = NSLock()
    private var processes: [String: Process] = [:]
    private var exitWaiters: [CheckedContinuation<String, Never>] = []
    private var exited: [String: Int32] = [:]
    private var stopping = false

    func start(name: String, executable: URL, environment: [String: String], log: URL) throws {
        guard FileManager.default.isExecutableFile(atPath: executable.path) else {
            throw UsageError("\(executable.path) not found: build the package first (swift build)")
        }
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        let process = Process()
        process.executableURL = executable
        process.environment = environment
        process.standardOutput = handle
        process.standardError = handle
        process.terminationHandler = { [weak self] p in self?.didExit(name, p.terminationStatus) }
        try process.run()
        lock.withLock { processes[name] = process }
    }

    private func didExit(_ name: String, _ status: Int32) {
        let (waiters, report) = lock.withLock { () -> ([CheckedContinuation<String, Never>], Bool) in
            exited[name] = status
            defer { exitWaiters.removeAll() }
            return (exitWaiters, !stopping)
        }
        if report { printError("\(name) exited unexpectedly with status \(status)") }
        for waiter in waiters { waiter.resume(returning: name) }
    }

    /// Returns the name of the first child to exit.
    func firstExit() async -> String {
        await withCheckedContinuation { continuation in
            let already: String? = lock.withLock {
                if let name = exited.keys.first { return name }
                exitWaiters.append(continuation)
                return nil
            }
            if let already { continuation.resume(returning: already) }
        }
    }

    /// SIGTERM to every child, then waits up to `grace`; SIGKILL for any still running.
    func stopAll(grace: Duration) async -> [String: Int32] {
        let running = lock.withLock { () -> [String: Process] in
            stopping = true
            return processes
        }
        for process in running.values where process.isRunning { kill(process.processIdentifier, SIGTERM) }
        let deadline = ContinuousClock.now + grace
        while running.values.contains(where: \.isRunning) && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(100))
        }
        for process in running.values where process.isRunning { kill(process.processIdentifier, SIGKILL) }
        for process in running.values { process.waitUntilExit() }
        return running.mapValues(\.terminationStatus)
    }
}
