import Contracts
import Foundation
import HTTP
import JSON
import Kafka
import ServiceKit
import TestSupport
import XCTest

/// The whole platform for fault tests: `twinctl broker` with its admin port (the fault-injection
/// channel) and the six services, each a process the test can SIGKILL and start again, on ports
/// from `Harness.freePortRange`, with logs and state in a temporary folder.
final class FaultStack: @unchecked Sendable {
    /// The services, in the order the kill test takes them.
    static let services = ["ingestor", "validator", "state-updater", "query-api", "simulator-worker", "drift-monitor"]
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    let dir: URL
    let broker: ChildProcess
    let bootstrap: String
    /// The broker's admin port (`twinctl broker --admin-port`).
    let adminPort: Int
    /// The API key (tenant `default`, every scope) the query API and HTTP ingest take.
    let key: String
    let base: Int
    private let environment: [String: String]
    private let lock = NSLock()
    private var running: [String: ChildProcess] = [:]
    /// Every instance started, with the file its log (stdout) is written to at tear-down.
    private var instances: [(process: ChildProcess, log: URL)] = []
    private var starts: [String: Int] = [:]
    /// Peak RSS (kB, /proc VmHWM) of every instance that has ended, by service.
    private var endedPeaks: [String: Int] = [:]

    /// Starts the broker and the six services with `extra` in their environment, and waits until
    /// every one is ready.
    init(extra: [String: String] = [:]) async throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("twinstream-fault-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        (broker, bootstrap, adminPort) = try await Self.startBroker(log: dir.appendingPathComponent("broker.log"))
        let keysFile = dir.appendingPathComponent("keys.json").path
        key = try APIKeysFile.addKey(tenant: "default", scopes: [.read, .write, .simulate, .ingest, .admin], to: keysFile).0
        base = Harness.freePortRange(Self.services.count)
        // What `twinctl up` gives its services; stale alerts only for twins silent for 1,000
        // reporting intervals (the probes the tests make stale on purpose).
        environment = Harness.embeddedBrokerEnvironment([
            "KAFKA_BROKERS": bootstrap, "LOG_LEVEL": "info", "API_KEYS_FILE": keysFile,
            "STATE_DIR": dir.appendingPathComponent("state").path, "CHECKPOINT_INTERVAL": "300ms",
            "MODELS_DIR": Self.root.appendingPathComponent("Schemas/models").path,
            "AUTO_CREATE_TWINS": "true", "MODEL_PREFIX_RULES": "pump-=pump,room-=room,battery-=battery",
            "STALE_FACTOR": "1000",
        ]).merging(extra) { _, new in new }
        for name in Self.services { try start(name) }
        let notReady = await waitUntilReady(timeout: .seconds(120))
        if !notReady.isEmpty {
            tearDown(keepLogs: true)
            throw StackFailure("never ready: \(notReady)")
        }
    }

    /// `twinctl broker --admin-port 0`, once it printed its addresses: the process, its
    /// `bootstrap.servers` and its admin port.
    static func startBroker(log: URL? = nil) async throws -> (ChildProcess, bootstrap: String, adminPort: Int) {
        let broker = try ChildProcess("twinctl", ["broker", "--admin-port", "0"], stderrTo: log)
        func announced(_ prefix: String) -> Substring? {
            broker.output.first { $0.hasPrefix(prefix) }?.dropFirst(prefix.count)
        }
        _ = await Harness.eventually(timeout: .seconds(30)) { announced("bootstrap.servers=") != nil && announced("admin=") != nil }
        guard let servers = announced("bootstrap.servers="), let admin = announced("admin=").flatMap({ Int($0.split(separator: ":").last ?? "") }) else {
            broker.signal(SIGKILL)
            throw StackFailure("twinctl broker did not announce its addresses: \(broker.output)")
        }
        return (broker, String(servers), admin)
    }

    func port(_ name: String) -> Int { base + Self.services.firstIndex(of: name)! }

    /// Starts (or starts again) `name`; each instance logs to its own file.
    func start(_ name: String) throws {
        let n = lock.withLock { () -> Int in starts[name, default: 0] += 1; return starts[name]! }
        let process = try ChildProcess(name, environment: environment.merging(["HTTP_PORT": String(port(name))]) { _, b in b },
                                       stderrTo: dir.appendingPathComponent("\(name)-\(n).stderr"))
        lock.withLock {
            running[name] = process
            instances.append((process, dir.appendingPathComponent("\(name)-\(n).log")))
        }
    }

    func process(_ name: String) -> ChildProcess? { lock.withLock { running[name] } }

    /// SIGKILLs `name` and waits for it to be gone.
    func kill(_ name: String) async {
        guard let process = process(name) else { return }
        let peak = Self.peakRSS(process.process.processIdentifier)
        process.signal(SIGKILL)
        _ = await process.waitForExit(timeout: .seconds(10))
        lock.withLock {
            endedPeaks[name] = max(endedPeaks[name, default: 0], peak ?? 0)
            running[name] = nil
        }
    }

    /// Services of `names` whose `/readyz` is not 200 by `timeout` (empty when all are ready).
    func waitUntilReady(_ names: [String] = FaultStack.services, timeout: Duration) async -> [String] {
        var notReady = names
        _ = await Harness.eventually(timeout: timeout) {
            var still: [String] = []
            for name in notReady where await Harness.get(port: port(name), "/readyz")?.status != 200 { still.append(name) }
            notReady = still
            return still.isEmpty
        }
        return notReady
    }

    /// Services that do not answer `/healthz` with 200 or whose process has ended.
    func unhealthy() async -> [String] {
        var bad: [String] = []
        for name in Self.services {
            let alive = process(name)?.process.isRunning ?? false
            if !alive { bad.append("\(name) (exited)"); continue }
            if await Harness.get(port: port(name), "/healthz")?.status != 200 { bad.append(name) }
        }
        return bad
    }

    /// A fault injection on the broker's admin port (`twinctl broker --admin-port`).
    func admin(_ pathAndQuery: String) async throws {
        let (status, text) = try await Self.admin(port: adminPort, pathAndQuery)
        XCTAssertEqual(status, 204, "broker admin \(pathAndQuery): \(text)")
    }

    /// A POST without a body to a broker admin port: its status and text.
    static func admin(port: Int, _ pathAndQuery: String) async throws -> (status: Int, text: String) {
        let response = try await HTTPClient(port: port, timeout: .seconds(10)).send(.post, pathAndQuery, headers: [:], body: [])
        return (response.status.code, response.text)
    }

    func metrics(_ name: String) async -> String {
        String(decoding: await Harness.get(port: port(name), "/metrics")?.body ?? [], as: UTF8.self)
    }

    /// The sum of the samples of `metric` (every label set) in `text`, Prometheus format.
    static func sum(_ metric: String, in text: String, labelled label: String? = nil) -> Double {
        text.split(separator: "\n").filter { line in
            (line.hasPrefix(metric + "{") || line.hasPrefix(metric + " ")) && (label.map { line.contains($0) } ?? true)
        }.compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }.reduce(0, +)
    }

    /// Peak resident set (kB) of a running process: /proc/PID/status VmHWM.
    static func peakRSS(_ pid: Int32) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return nil }
        return Int(line.split(separator: " ").dropFirst().first ?? "")
    }

    /// Peak RSS (kB) of each service: the largest over its running and ended instances.
    func peakRSS() -> [String: Int] {
        var peaks = lock.withLock { endedPeaks }
        for name in Self.services {
            if let pid = process(name)?.process.processIdentifier, let peak = Self.peakRSS(pid) { peaks[name] = max(peaks[name, default: 0], peak) }
        }
        return peaks
    }

    /// Kills every process and removes the folder (kept when `keepLogs`, for a failing test).
    func tearDown(keepLogs: Bool = false) {
        for process in lock.withLock({ Array(running.values) }) { process.signal(SIGKILL) }
        broker.signal(SIGKILL)
        if keepLogs {
            for (process, log) in lock.withLock({ instances }) {
                try? (process.output.joined(separator: "\n") + "\n").write(to: log, atomically: false, encoding: .utf8)
            }
            print("fault stack logs kept in \(dir.path)")
        } else {
            try? FileManager.default.removeItem(at: dir)
        }
    }
}

/// Readings with known values the tests send to `telemetry.raw.v1` and the state they must fold
/// to: per twin, the values of its last reading (event times increase with the sequence).
struct KnownLoad {
    let twins: [String]
    let start: Int64
    private(set) var sent = 0

    init(twins count: Int, prefix: String = "pump-f") {
        twins = (0..<count).map { "\(prefix)\($0)" }
        start = Int64(Date().timeIntervalSince1970 * 1000) - 60_000
    }

    static func values(twin: Int, seq: Int) -> [String: Double] {
        ["flow": Double(seq % 500), "pressure": Double(twin % 16), "temperature": 20 + Double(seq % 50), "rpm": Double(1000 + seq % 2000)]
    }

    static func eventId(_ twin: String, _ seq: Int) -> String { "\(twin)-e\(seq)" }

    /// The next `perTwin` readings of every twin, as raw messages.
    mutating func next(_ perTwin: Int) -> [OutgoingMessage] {
        var out: [OutgoingMessage] = []
        for seq in sent..<(sent + perTwin) {
            for (t, twin) in twins.enumerated() {
                let values = Self.values(twin: t, seq: seq).map { "\"\($0.key)\":\($0.value)" }.sorted().joined(separator: ",")
                let body = #"{"twinId":"\#(twin)","eventId":"\#(Self.eventId(twin, seq))","ts":\#(start + Int64(seq)),"values":{\#(values)}}"#
                out.append(OutgoingMessage(topic: Topic.telemetryRaw.name, key: twin, value: Array(body.utf8)))
            }
        }
        sent += perTwin
        return out
    }

    /// Every event id sent so far.
    var eventIds: Set<String> { Set(twins.flatMap { twin in (0..<sent).map { Self.eventId(twin, $0) } }) }

    /// What is wrong with `state` (a twin document: twin.state.v1 or the query API's) against the
    /// reference fold, or nil when it holds the last reading's values and event id.
    func mismatch(_ twin: String, _ state: JSON?) -> String? {
        guard let t = twins.firstIndex(of: twin), sent > 0 else { return "not sent" }
        guard let properties = state?["properties"] else { return "no document" }
        for (name, value) in Self.values(twin: t, seq: sent - 1) {
            if properties[name]?["value"]?.doubleValue != value {
                return "\(name) is \(properties[name]?["value"].map { "\($0)" } ?? "missing"), want \(value)"
            }
        }
        let id = properties["flow"]?["eventId"]?.stringValue
        return id == Self.eventId(twin, sent - 1) ? nil : "last event \(id ?? "none"), want \(Self.eventId(twin, sent - 1))"
    }

    /// Waits until twin.state.v1 and the query API both hold the fold for every twin; the
    /// differences left at the deadline (empty when none).
    func converged(_ stack: FaultStack, timeout: Duration = .seconds(90)) async -> [String] {
        var problems: [String] = []
        _ = await Harness.eventually(timeout: timeout) {
            problems = []
            var latest: [String: [UInt8]] = [:]
            for m in (try? await readTopic(Topic.twinState, bootstrap: stack.bootstrap)) ?? [] {
                if let key = m.keyString { latest[key] = m.value }
            }
            for twin in twins {
                if let p = mismatch(twin, latest["default/\(twin)"].flatMap { try? JSON(parsing: $0) }) {
                    problems.append("twin.state.v1 \(twin): \(p)")
                }
            }
            guard problems.isEmpty else { return false }
            for twin in twins {
                let answer = await Harness.get(port: stack.port("query-api"), "/v1/twins/\(twin)", key: stack.key)
                if let p = mismatch(twin, answer.flatMap { try? JSON(parsing: $0.body) }) {
                    problems.append("query API \(twin): \(p) (\(answer?.status ?? 0))")
                }
            }
            return problems.isEmpty
        }
        return problems
    }

    /// Event ids sent but never on telemetry.valid.v1.
    func missingFromValid(_ stack: FaultStack) async throws -> Set<String> {
        var seen: Set<String> = []
        for m in try await readTopic(Topic.telemetryValid, bootstrap: stack.bootstrap) {
            if let id = (try? TelemetryEnvelope(bytes: m.value))?.eventId { seen.insert(id) }
        }
        return eventIds.subtracting(seen)
    }
}

/// The drift alerts on `drift.alerts.v1`, checked for the fault tests' promise: each alert id is
/// raised once (a re-sent copy of the same alert is fine: outputs are at-least-once) and, per twin
/// and condition, never two open at once.
struct AlertLedger {
    var raised: [String: [String]] = [:]  // condition → alert ids in order
    var problems: [String] = []

    init(_ messages: [KafkaMessage]) {
        var open: [String: String] = [:]
        var seen: Set<String> = []
        for m in messages {
            guard let alert = try? DriftAlert(bytes: m.value) else { continue }
            let condition = "\(alert.key)/\(alert.kind.rawValue)/\(alert.property ?? "")"
            let copy = "\(alert.alertId)/\(alert.status.rawValue)"
            guard seen.insert(copy).inserted else { continue }
            switch alert.status {
            case .raised:
                if let other = open[condition] { problems.append("\(condition): \(alert.alertId) raised while \(other) is open") }
                open[condition] = alert.alertId
                raised[condition, default: []].append(alert.alertId)
            case .updated:
                break  // the episode's story grew (recalibration steps); it stays open
            case .resolved:
                open[condition] = nil
            }
        }
        openAlerts = open
    }

    /// Condition → the alert id open at the end.
    private(set) var openAlerts: [String: String] = [:]

    static func read(_ stack: FaultStack) async throws -> AlertLedger {
        AlertLedger(try await readTopic(Topic.driftAlerts, bootstrap: stack.bootstrap))
    }
}

/// The stack could not be started.
struct StackFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// True with `FAULTS=full`: the fault tests run longer and larger (CI runs the fast form).
var fullFaults: Bool { ProcessInfo.processInfo.environment["FAULTS"] == "full" }
