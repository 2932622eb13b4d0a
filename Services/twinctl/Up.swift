import Contracts
import Fleet
import Foundation
import Kafka
import ServiceKit

/// The six services, their default ports' offsets from `--base-port`.
let platformServices: [(name: String, offset: Int)] = [
    ("query-api", 0), ("ingestor", 1), ("validator", 2), ("state-updater", 3), ("simulator-worker", 4), ("drift-monitor", 5),
]

/// What happens to a starting or running stack, in the order `runUp` learns it.
private enum UpEvent: Sendable {
    case signal(String)
    case exited(String, Int32)
    case ready(String, port: Int, Bool)
    case allReady
}

/// `twinctl up`: the embedded broker, all six services as separate processes and a simulated fleet.
/// Ctrl-C (or SIGTERM) stops the fleet, then every service with SIGTERM, then the broker, at any
/// moment, start-up included. A service that exits on its own stops the stack, naming it with its
/// last log line (exit status 1). Ports in use, missing files and a fault plan that does not fit the
/// fleet are refused before anything starts. `--faults SPEC` (with `--seed S`) injects faults into the
/// fleet, timed from the fleet's start; the drift monitor's settings (`DRIFT_*`) pass through the environment.
func runUp(_ args: Arguments) async throws {
    let signals = SignalListener()
    let basePort = try args.int("base-port", default: 8080)
    guard (1...(65535 - 5)).contains(basePort) else { throw UsageError("--base-port must be between 1 and 65530") }
    let twins = try args.int("twins", default: 30)
    let interval = Duration.milliseconds(try args.int("interval-ms", default: 1000))
    let models = try LocalFiles.modelsDirectory(args)
    var fleetOptions = FleetSimulator.Options(seed: UInt64(try args.int("seed", default: 42)), step: interval > .zero ? interval.seconds : 60,
                                              faults: try faultPlan(args))
    if !args.flag("no-fleet") { try checkFaults(fleetOptions, twins: twins, models: models.path) }
    try refusePortsInUse(basePort: basePort)
    let logDir = URL(fileURLWithPath: args.string("log-dir") ?? ".twinstream/logs")
    try FileManager.default.createDirectory(at: logDir, withIntermediateDirectories: true)
    let record = LocalStackRecord(args)
    let stateDir = record.directory
    try FileManager.default.createDirectory(at: stateDir, withIntermediateDirectories: true)

    let broker = try EmbeddedBroker(topics: Topic.all)
    printNow("bootstrap.servers=\(broker.bootstrapServers)")
    let binDir = executableDirectory()
    var environment = ProcessInfo.processInfo.environment
    environment["KAFKA_BROKERS"] = broker.bootstrapServers
    // Group and fetch timings suited to the mock cluster, unless the caller set them.
    environment = EnvironmentReader.addingKafkaDefaults(EmbeddedBroker.clientProperties, to: environment)
    environment["STATE_DIR"] = stateDir.path
    environment["MODELS_DIR"] = models.path
    environment["AUTO_CREATE_TWINS"] = environment["AUTO_CREATE_TWINS"] ?? "true"
    // The simulated fleet names its models; these rules cover producers that do not.
    environment["MODEL_PREFIX_RULES"] = environment["MODEL_PREFIX_RULES"] ?? "pump-=pump,room-=room,battery-=battery"
    // The ingestor's 202 links each request's dead-letters on the query API.
    environment["QUERY_API_URL"] = environment["QUERY_API_URL"] ?? "http://127.0.0.1:\(basePort)"
    // The local stack closes the drift loop itself: residual alerts are recalibrated and applied.
    environment["DRIFT_RECALIBRATE"] = environment["DRIFT_RECALIBRATE"] ?? "auto"
    let apiKey = try localAPIKey(stateDir: stateDir, environment: &environment)
    try record.write(bootstrap: broker.bootstrapServers, api: "http://127.0.0.1:\(basePort)")
    printNow("models from \(models.path); broker address recorded in \(record.bootstrapFile.path) (tail, produce, fleet … run from here find it)")

    let (events, trigger) = AsyncStream<UpEvent>.makeStream()
    let supervisor = Supervisor { name, status in trigger.yield(.exited(name, status)) }
    let watchSignal = Task {
        for await signal in signals.signals where signal.requestsShutdown {
            trigger.yield(.signal("\(signal)"))
            return
        }
    }
    var startFailure: Error?
    for service in platformServices {
        var env = environment
        env["HTTP_PORT"] = String(basePort + service.offset)
        let log = logDir.appendingPathComponent("\(service.name).log")
        do {
            try supervisor.start(name: service.name, executable: binDir.appendingPathComponent(service.name), environment: env, log: log)
        } catch {
            startFailure = error
            break
        }
    }
    printNow("logs in \(logDir.path)")
    let watchReady = Task {
        // Every service at once: the first to fail is reported without waiting for the others.
        await withTaskGroup(of: Void.self) { group in
            for service in platformServices {
                group.addTask {
                    let port = basePort + service.offset
                    trigger.yield(.ready(service.name, port: port, await waitUntilReady(port: port, timeout: .seconds(60))))
                }
            }
        }
        trigger.yield(.allReady)
    }

    var fleetTask: Task<Void, Never>?
    var failed: String?
    var readyAll = true
    var stopReason = startFailure.map { "could not start every service: \($0)" }
    if stopReason != nil {
        failed = "start"
        trigger.finish()
    }
    loop: for await event in events {
        switch event {
        case .signal(let name):
            stopReason = "\(name) received"
            break loop
        case .exited(let name, let status):
            failed = name
            let last = lastLogLine(logDir.appendingPathComponent("\(name).log"))
            stopReason = "\(name) exited with status \(status)\(fleetTask == nil ? " during start-up" : ""); its last log line (\(logDir.appendingPathComponent("\(name).log").path)):\n  \(last ?? "(empty)")"
            break loop
        case .ready(let name, let port, let ready):
            readyAll = readyAll && ready
            printNow("\(name.padding(toLength: 17, withPad: " ", startingAt: 0)) http://127.0.0.1:\(port)  \(ready ? "ready" : "NOT READY after 60 s (see its log)")")
        case .allReady:
            let fleet = !args.flag("no-fleet") && twins > 0
            printExamples(args, basePort: basePort, apiKey: apiKey, binDir: binDir, fleet: fleet)
            if fleet {
                let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: broker.bootstrapServers))
                printNow("fleet: \(twins) twins (pump-N, room-N, battery-N) publishing to \(Topic.telemetryRaw.name) every \(interval)")
                if !fleetOptions.faults.faults.isEmpty { printNow("fleet faults (seed \(fleetOptions.seed)): \(fleetOptions.faults)") }
                fleetOptions.start = Timestamp.now  // fault times count from here
                let options = fleetOptions
                fleetTask = Task {
                    do { try await publishFleet(producer: producer, twins: twins, interval: interval, options: options, models: models.path) } catch {
                        printError("fleet stopped: \(error)")
                    }
                    await producer.close()
                }
            } else {
                fleetTask = Task {}
            }
            printNow(readyAll ? "platform up; Ctrl-C stops it" : "platform up with services not ready; Ctrl-C stops it")
        }
    }
    if let stopReason { printNow(stopReason) }
    watchSignal.cancel()
    watchReady.cancel()
    printNow("stopping: fleet, then services (SIGTERM), then broker")
    fleetTask?.cancel()
    _ = await fleetTask?.value
    let endings = await supervisor.stopAll(grace: .seconds(30))
    for (name, ending) in endings.sorted(by: { $0.key < $1.key }) {
        printNow("\(name) \(ending)")
    }
    record.clear(bootstrap: broker.bootstrapServers)
    broker.shutdown()
    if let failed {
        printError("twinctl up: stopped because \(failed == "start" ? "a service could not be started" : "\(failed) exited") (see above)")
        exit(1)
    }
    exit(endings.values.allSatisfy(\.isClean) ? 0 : 1)
}

/// Refuses to start when a port the stack needs is taken, naming it and the flag that moves the
/// stack — before anything starts, so no service dies on "Address already in use".
func refusePortsInUse(basePort: Int) throws {
    let taken = platformServices.filter { !isPortFree(basePort + $0.offset) }
    guard !taken.isEmpty else { return }
    let list = taken.map { "\(basePort + $0.offset) (\($0.name))" }.joined(separator: ", ")
    throw CommandFailure("port\(taken.count == 1 ? "" : "s") \(list) already in use (another twinctl up?): stop what holds "
        + "\(taken.count == 1 ? "it" : "them"), or move the stack's six consecutive ports with --base-port P (now \(basePort))")
}

/// True when `port` can be bound on every address, as the services bind it.
func isPortFree(_ port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var reuse: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, socklen_t(MemoryLayout<Int32>.size))
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = INADDR_ANY
    addr.sin_port = UInt16(port).bigEndian
    return withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
}

/// The last non-empty line of a log file (its message when it is a JSON log line), at most 500 characters.
func lastLogLine(_ file: URL) -> String? {
    guard let data = FileManager.default.contents(atPath: file.path) else { return nil }
    guard let line = String(decoding: data.suffix(64 << 10), as: UTF8.self).split(whereSeparator: \.isNewline).last(where: { !$0.allSatisfy(\.isWhitespace) }) else { return nil }
    return String(line.prefix(500))
}

/// The commands a new user can paste, each on one line and working as printed: partial readings
/// of twins the fleet does not drive (`room-demo`, `pump-demo`: no fleet reading overtakes them)
/// stamped with the time the shell runs the line, reading one back, finding the incomplete one,
/// simulating the room and reading the changes from the broker.
func printExamples(_ args: Arguments, basePort: Int, apiKey: String?, binDir: URL, fleet: Bool) {
    let api = "http://127.0.0.1:\(basePort)"
    printNow("query API: \(api)/v1/twins/{id}  (all routes: \(api)/openapi.json)")
    let twinctl = binDir.appendingPathComponent("twinctl").path
    let stateDir = args.string("state-dir").map { " --state-dir \($0)" } ?? ""
    guard let apiKey else {
        printNow("API keys from API_KEYS_FILE or AUTH_DISABLED: no local key printed")
        return
    }
    let auth = "-H 'Authorization: Bearer \(apiKey)'"
    printNow("api key: \(apiKey)")
    printNow("try (any subset of a model's telemetry is a reading; the 202 links the request's dead-letters, if any):")
    if fleet { printNow("  curl -s \(auth) \(api)/v1/twins/pump-1") }
    let now = "'\"$(date +%s%3N)\"'"  // the shell stamps each reading when the line runs
    printNow("  curl -s \(auth) -H 'Content-Type: application/json' -d '[{\"twinId\":\"room-demo\",\"ts\":\(now),\"values\":{\"temperature\":21.5}},"
        + "{\"twinId\":\"pump-demo\",\"ts\":\(now),\"values\":{\"temperature\":71.5}}]' http://127.0.0.1:\(basePort + 1)/v1/telemetry")
    printNow("  curl -s \(auth) \(api)/v1/twins/room-demo")
    printNow("  curl -s \(auth) '\(api)/v1/twins?filter=missing&limit=5'     # incomplete twins: pump-demo still lacks flow, pressure, rpm")
    printNow("simulate room-demo (what if its time constant were 9000 s; then 500 samples of an uncertain ambient temperature):")
    printNow("  \(twinctl) simulate room-demo --kind forecast --horizon 24h --what-if tau=9000 --svg room-demo.svg\(stateDir)")
    printNow("  \(twinctl) simulate room-demo --kind monteCarlo --horizon 6h --step 5m --samples 500 --uncertain Ta=uniform:0:10 --threshold 'temperature>24' --svg room-demo-mc.svg\(stateDir)")
    printNow("the changes so far (the broker's address is found in \(LocalStackRecord(args).bootstrapFile.path)):")
    printNow("  \(twinctl) tail --topic \(Topic.twinChanges.name) --count 2 --timeout 10\(stateDir)")
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
