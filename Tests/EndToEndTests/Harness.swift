import Contracts
import Foundation
import HTTP
import JSON
import ServiceKit
import Kafka
import TestSupport

/// The services of a simulation end-to-end test on an embedded broker: a temporary folder for
/// logs and state, an API key of tenant `acme` (read, write, simulate), the query API and a
/// state-updater started, and `start` for more services with the same environment.
final class SimulationStack {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let broker: EmbeddedBroker
    let dir: URL
    let key: String
    let common: [String: String]
    /// The first of `ports` consecutive free ports: the query API's, then the state-updater's.
    let base: Int
    private var processes: [ChildProcess] = []

    init(ports: Int) throws {
        broker = try EmbeddedBroker(topics: Topic.all)
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("twinstream-sim-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let keysFile = dir.appendingPathComponent("keys.json").path
        key = try APIKeysFile.addKey(tenant: "acme", scopes: [.read, .write, .simulate], to: keysFile).0
        base = Harness.freePortRange(ports)
        common = Harness.embeddedBrokerEnvironment(["KAFKA_BROKERS": broker.bootstrapServers, "LOG_LEVEL": "info",
                                                    "MODELS_DIR": Self.root.appendingPathComponent("Schemas/models").path])
        processes.append(try start("query-api", port: base, ["API_KEYS_FILE": keysFile]))
        processes.append(try start("state-updater", port: base + 1, ["STATE_DIR": dir.appendingPathComponent("state").path]))
    }

    /// Starts `name` on `port` with the stack's environment and `extra`, its stderr in `log`.
    func start(_ name: String, port: Int, _ extra: [String: String] = [:], log: String? = nil) throws -> ChildProcess {
        try ChildProcess(name, environment: common.merging(extra.merging(["HTTP_PORT": String(port)]) { _, b in b }) { _, b in b },
                         stderrTo: dir.appendingPathComponent(log ?? "\(name).log"))
    }

    /// Reads the simulation at `location` until it has a final status, up to `timeout`: whether it
    /// got one, and the last document read.
    static func final(_ client: HTTPClient, _ location: String, headers: HTTPHeaders, timeout: Duration) async -> (done: Bool, result: JSON) {
        var result: JSON = .null
        let done = await Harness.eventually(timeout: timeout) {
            result = (try? JSON(parsing: try await client.get(location, headers: headers).text)) ?? .null
            return ["completed", "failed", "cancelled", "refused"].contains(result["status"]?.stringValue ?? "")
        }
        return (done, result)
    }

    /// Kills the query API and the state-updater, stops the broker and removes the folder.
    func tearDown() {
        for p in processes { p.signal(SIGKILL) }
        broker.shutdown()
        try? FileManager.default.removeItem(at: dir)
    }
}
