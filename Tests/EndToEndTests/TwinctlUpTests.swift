import Foundation
import JSON
import TestSupport
import XCTest

/// `twinctl up` as a new user meets it (issue 24): every example it prints works as printed, from
/// a directory outside the source tree; busy ports and missing files are refused before anything
/// starts; a service dying at start-up stops the stack with its last log line; Ctrl-C during
/// start-up and a SIGKILL of `twinctl up` itself leave no service behind.
final class TwinctlUpTests: XCTestCase {
    private func tempDir() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("twinstream-up-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Runs one printed line with `sh` in `directory`: its exit status and standard output.
    private func shell(_ line: String, in directory: URL) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", line]
        process.currentDirectoryURL = directory
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// `twinctl up` (`--no-fleet` unless `fleet`) on the ports from `base`, started in `dir` (standard error to `log`).
    private func up(_ base: Int, in dir: URL, log: String, environment: [String: String] = [:], fleet: Bool = false, _ more: [String] = []) throws -> ChildProcess {
        try ChildProcess("twinctl", ["up", "--base-port", String(base)] + (fleet ? [] : ["--no-fleet"]) + more, environment: environment,
                         stderrTo: dir.appendingPathComponent(log), directory: dir)
    }

    /// Waits until `process` printed a line starting with `prefix`.
    private func printed(_ process: ChildProcess, _ prefix: String, within timeout: Duration) async -> Bool {
        await Harness.eventually(timeout: timeout) { process.output.contains { $0.hasPrefix(prefix) } }
    }

    /// True once no service of the stack at `base` answers on its port.
    private func allPortsFree(_ base: Int, within timeout: Duration) async -> Bool {
        await Harness.eventually(timeout: timeout) {
            for offset in 0..<6 where await Harness.get(port: base + offset, "/healthz") != nil { return false }
            return true
        }
    }

    func testEveryExampleItPrintsWorksAsPrintedFromAnotherDirectory() async throws {
        let base = Harness.freePortRange(6)
        let dir = try tempDir()
        // No --state-dir, --log-dir or --models: everything is found from a folder outside the tree.
        let up = try up(base, in: dir, log: "twinctl.log")
        let started = await printed(up, "platform up", within: .seconds(120))
        XCTAssertTrue(started, "twinctl up did not start: \(up.output)")
        XCTAssertTrue(up.output.contains("platform up; Ctrl-C stops it"), "\(up.output)")
        let examples = up.output.filter { $0.hasPrefix("  curl ") || $0.hasPrefix("  /") }.map { $0.trimmingCharacters(in: .whitespaces) }
        let post = try XCTUnwrap(examples.first { $0.contains("/v1/telemetry") }, "\(up.output)")
        let read = try XCTUnwrap(examples.first { $0.hasSuffix("/v1/twins/room-demo") }, "\(up.output)")
        let incomplete = try XCTUnwrap(examples.first { $0.contains("filter=missing") }, "\(up.output)")
        let simulations = examples.filter { $0.contains(" simulate ") }
        let tail = try XCTUnwrap(examples.first { $0.contains(" tail ") }, "\(up.output)")
        XCTAssertEqual(simulations.count, 2, "\(examples)")
        XCTAssertEqual(examples.count, 6, "every printed example is exercised here: \(examples)")

        let posted = try shell(post, in: dir)
        XCTAssertEqual(posted.status, 0)
        let answer = try JSON(parsing: posted.output)
        XCTAssertEqual(answer["accepted"]?.intValue, 2, "partial readings are readings: \(posted.output)")
        XCTAssertEqual(answer["rejected"]?.intValue, 0, posted.output)
        var twin = JSON.null
        let visible = await Harness.eventually(timeout: .seconds(30)) {
            twin = (try? JSON(parsing: shell(read, in: dir).output)) ?? .null
            return twin["properties"]?["temperature"]?["value"] == 21.5
        }
        XCTAssertTrue(visible, "the posted reading never showed: \(twin)")
        var listed = JSON.null
        let found = await Harness.eventually(timeout: .seconds(30)) {
            listed = (try? JSON(parsing: shell(incomplete, in: dir).output)) ?? .null
            return listed["items"]?.arrayValue?.contains { $0["twinId"] == "pump-demo" } == true
        }
        XCTAssertTrue(found, "pump-demo is not listed as incomplete: \(listed)")
        XCTAssertEqual(listed["items"]?.arrayValue?.first { $0["twinId"] == "pump-demo" }?["missing"], ["flow", "pressure", "rpm"])
        for simulation in simulations {
            let run = try shell(simulation, in: dir)
            XCTAssertEqual(run.status, 0, "\(simulation): \(run.output)")
            XCTAssertTrue(run.output.contains("completed"), run.output)
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("room-demo.svg").path))
        let changes = try shell(tail, in: dir)
        XCTAssertEqual(changes.status, 0)
        XCTAssertGreaterThanOrEqual(changes.output.split(separator: "\n").filter { $0.contains(#""topic":"twin.changes.v1""#) }.count, 2,
                                    "tail found the broker twinctl up recorded: \(changes.output)")
        // A reading the validator rejects (room-demo at 500 °C): the 202's link, read with the same key, says so.
        let key = try XCTUnwrap(up.output.first { $0.hasPrefix("api key: ") }?.dropFirst("api key: ".count))
        let bad = try shell(post.replacingOccurrences(of: "21.5", with: "500"), in: dir)
        let link = try XCTUnwrap(try JSON(parsing: bad.output)["deadLetters"]?.stringValue, bad.output)
        XCTAssertTrue(link.hasPrefix("http://127.0.0.1:\(base)/v1/deadletters?requestId="), link)
        var fate = JSON.null
        let told = await Harness.eventually(timeout: .seconds(30)) {
            fate = (try? JSON(parsing: shell("curl -s -H 'Authorization: Bearer \(key)' '\(link)'", in: dir).output)) ?? .null
            return fate["total"]?.intValue == 1
        }
        XCTAssertTrue(told, "the rejected reading never showed behind its link: \(fate)")
        XCTAssertEqual(fate["items"]?[0]?["twinId"], "room-demo", "pump-demo's 71.5 is fine: \(fate)")
        XCTAssertEqual(fate["items"]?[0]?["stage"], "validator")
        XCTAssertEqual(fate["items"]?[0]?["reasons"]?[0]?["code"], "out_of_range")

        // The OpenAPI document comes from the binary, not from a file beside the current directory.
        let document = await Harness.get(port: base, "/openapi.json")
        XCTAssertEqual(document?.status, 200)
        XCTAssertEqual((try? JSON(parsing: document?.body ?? []))?["openapi"], "3.1.0")

        up.signal(SIGINT)
        let status = await up.waitForExit(timeout: .seconds(60))
        XCTAssertEqual(status, 0, "\(up.output.suffix(8))")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent(".twinstream/state/bootstrap").path),
                       "a stopped stack's address is not left for other commands to try")
    }

    func testBusyPortsMissingModelFilesAndFaultsThatDoNotFitAreRefusedBeforeAnythingStarts() async throws {
        let base = Harness.freePortRange(6)
        let dir = try tempDir()
        let holder = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(holder) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(base + 3).bigEndian
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(holder, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        XCTAssertEqual(bound, 0)
        XCTAssertEqual(listen(holder, 1), 0)
        let log = dir.appendingPathComponent("busy.log")
        let busy = try up(base, in: dir, log: "busy.log")
        let busyStatus = await busy.waitForExit(timeout: .seconds(10))
        XCTAssertEqual(busyStatus, 1)
        let message = String(decoding: try Data(contentsOf: log), as: UTF8.self)
        XCTAssertTrue(message.contains("\(base + 3) (state-updater)") && message.contains("--base-port"), message)
        XCTAssertFalse(busy.output.contains { $0.hasPrefix("bootstrap.servers=") }, "nothing started: \(busy.output)")

        let modelsLog = dir.appendingPathComponent("models.log")
        let noModels = try up(base, in: dir, log: "models.log", ["--models", dir.path])
        let noModelsStatus = await noModels.waitForExit(timeout: .seconds(10))
        XCTAssertEqual(noModelsStatus, 1)
        let modelsMessage = String(decoding: try Data(contentsOf: modelsLog), as: UTF8.self)
        XCTAssertTrue(modelsMessage.contains("--models DIR"), modelsMessage)

        // A fault plan naming a twin the fleet does not have, and one that does not parse.
        for (spec, expected) in [("stuck:room-99:temperature@1m", "no twin room-99 in a fleet of 30"), ("stuck:room-1:temperature@1", "not a whole number with a unit")] {
            let faults = try up(base, in: dir, log: "faults.log", fleet: true, ["--faults", spec])
            let faultsStatus = await faults.waitForExit(timeout: .seconds(10))
            XCTAssertEqual(faultsStatus, 2, spec)
            let faultsMessage = String(decoding: try Data(contentsOf: dir.appendingPathComponent("faults.log")), as: UTF8.self)
            XCTAssertTrue(faultsMessage.contains("--faults: ") && faultsMessage.contains(expected), faultsMessage)
            XCTAssertFalse(faults.output.contains { $0.hasPrefix("bootstrap.servers=") }, "nothing started: \(faults.output)")
        }
    }

    func testAServiceDyingAtStartUpStopsTheStackWithItsNameAndLastLogLine() async throws {
        let base = Harness.freePortRange(6)
        let dir = try tempDir()
        let up = try up(base, in: dir, log: "twinctl.log", environment: ["MAX_TWINS": "many"])
        let status = await up.waitForExit(timeout: .seconds(40))
        XCTAssertEqual(status, 1, "\(up.output)")
        XCTAssertTrue(up.output.contains { $0.hasPrefix("state-updater exited with status 2 during start-up") }, "\(up.output)")
        XCTAssertTrue(up.output.contains { $0.contains("MAX_TWINS") }, "the service's last log line says why: \(up.output)")
        XCTAssertFalse(up.output.contains { $0.hasPrefix("platform up") }, "\(up.output)")
        let free = await allPortsFree(base, within: .seconds(10))
        XCTAssertTrue(free, "a service outlived the stack")
    }

    func testCtrlCDuringStartUpAndASIGKILLOfUpLeaveNoServiceBehind() async throws {
        let base = Harness.freePortRange(6)
        let dir = try tempDir()
        let starting = try up(base, in: dir, log: "starting.log")
        let spawned = await printed(starting, "logs in", within: .seconds(30))
        XCTAssertTrue(spawned, "\(starting.output)")
        starting.signal(SIGINT)
        let stopped = await starting.waitForExit(timeout: .seconds(20))
        XCTAssertEqual(stopped, 0, "Ctrl-C while the services start: \(starting.output)")
        XCTAssertTrue(starting.output.contains("SIGINT received"), "\(starting.output)")
        let freeAfterCtrlC = await allPortsFree(base, within: .seconds(10))
        XCTAssertTrue(freeAfterCtrlC)

        let up = try up(base, in: dir, log: "up.log")
        let started = await printed(up, "platform up", within: .seconds(120))
        XCTAssertTrue(started, "\(up.output)")
        up.signal(SIGKILL)
        _ = await up.waitForExit(timeout: .seconds(10))
        XCTAssertTrue(up.endedBySignal)
        let freeAfterKill = await allPortsFree(base, within: .seconds(15))
        XCTAssertTrue(freeAfterKill, "services outlived a SIGKILLed twinctl up and hold its ports")
    }

    /// Issue 23's fault injector on the local stack, read the way a person reads it (`GET /v1/alerts`):
    /// a stuck sensor raises one residual alert on its property, a twin that stops reporting raises
    /// one stale alert that resolves when it reports again, and a control twin raises nothing —
    /// while late, duplicate and malformed readings (dead-lettered with their reason) go on around them.
    ///
    /// Settings that make minutes of monitoring fit in seconds, all through the environment the
    /// drift monitor already reads: readings every 100 ms (event time stays the wall clock, so
    /// freshness means what it means in production; a pump's interval is 1 s, stale after 3 s), a
    /// 20 s prediction horizon (over it a warming pump's temperature rises ~0.25 K, ~1.7σ of its
    /// residual, which a stuck sensor misses), a warm-up of 40 residuals, and no data drift (the
    /// pumps warm up from cold during the test: a real shift of their temperature's distribution
    /// that data drift rightly reports on every pump, the control included).
    func testAStuckSensorAndASilentTwinFromTheFaultInjectorRaiseTheirAlertsOnceAndAControlTwinNone() async throws {
        let base = Harness.freePortRange(6)
        let dir = try tempDir()
        let faults = "stuck:pump-2:temperature@25s;silent:pump-3@5s+10s;late:1%:2s;duplicate:1%;malformed:1%"
        let up = try up(base, in: dir, log: "twinctl.log", environment: ["DRIFT_WARMUP": "40", "DRIFT_HORIZON": "20s", "DRIFT_EVAL_EVERY": "0"],
                        fleet: true, ["--twins", "7", "--interval-ms", "100", "--seed", "7", "--faults", faults])
        let started = await printed(up, "platform up", within: .seconds(120))
        XCTAssertTrue(started, "twinctl up did not start: \(up.output)")
        XCTAssertTrue(up.output.contains("fleet faults (seed 7): \(faults)"), "\(up.output)")
        let key = try XCTUnwrap(up.output.first { $0.hasPrefix("api key: ") }?.dropFirst("api key: ".count)).description
        func alerts(_ query: String) async -> [JSON] {
            guard let answer = await Harness.get(port: base, "/v1/alerts?\(query)", key: key), answer.status == 200 else { return [] }
            return (try? JSON(parsing: answer.body))?["items"]?.arrayValue ?? []
        }
        /// The fault lines twinctl printed: kind and phase by twin.
        func fired(_ twinId: String) -> [String] {
            up.output.compactMap { try? JSON(parsing: Array($0.utf8)) }.filter { $0["twinId"]?.stringValue == twinId && $0["phase"] != "hit" }
                .map { "\($0["fault"]?.stringValue ?? "?") \($0["phase"]?.stringValue ?? "?")" }
        }

        // pump-3 falls silent 5 s into the fleet for 10 s: stale after 3 reporting intervals, resolved when it reports again.
        var stale: [JSON] = []
        let resolved = await Harness.eventually(timeout: .seconds(60)) {
            stale = await alerts("twinId=pump-3&kind=stale")
            return stale.first?["status"] == "resolved"
        }
        XCTAssertTrue(resolved, "pump-3's stale alert: \(stale); fired: \(fired("pump-3"))")
        XCTAssertEqual(stale.count, 1, "one episode: \(stale)")
        XCTAssertEqual(fired("pump-3"), ["silent start", "silent end"])

        // pump-2's temperature sticks 25 s in: its residual leaves the model's prediction.
        var residual: [JSON] = []
        let raised = await Harness.eventually(timeout: .seconds(60)) {
            residual = await alerts("twinId=pump-2&kind=residual")
            return !residual.isEmpty
        }
        XCTAssertTrue(raised, "pump-2's stuck temperature raised nothing; fired: \(fired("pump-2")); last lines: \(up.output.suffix(5))")
        XCTAssertEqual(residual.map { $0["property"] }, ["temperature"], "one alert, on the stuck property: \(residual)")
        XCTAssertEqual(residual.first?["status"], "raised", "it stays stuck, so the alert stays open")
        XCTAssertEqual(fired("pump-2"), ["stuck start"])
        let stuckAt = try XCTUnwrap(up.output.lazy.compactMap { try? JSON(parsing: Array($0.utf8)) }.first { $0["fault"] == "stuck" }?["time"]?.stringValue)
        let detectedAt = try XCTUnwrap(residual.first?["eventTime"]?.stringValue)
        XCTAssertGreaterThan(detectedAt, stuckAt, "raised after the sensor stuck")
        let data = await alerts("twinId=pump-2&kind=data")
        XCTAssertEqual(data, [])

        // The control pump, watched as long as the others: nothing of any kind.
        let control = await alerts("twinId=pump-1")
        XCTAssertEqual(control, [], "the control twin raised alerts")
        XCTAssertEqual(fired("pump-1"), [])
        // Malformed readings are dead-lettered with their reason: invalid JSON by the ingestor, a
        // number sent as a string by the validator.
        var reasons: Set<String> = []
        let deadLettered = await Harness.eventually(timeout: .seconds(30)) {
            let answer = await Harness.get(port: base, "/v1/deadletters?limit=100", key: key)
            let items = (try? JSON(parsing: answer?.body ?? []))?["items"]?.arrayValue ?? []
            reasons = Set(items.compactMap { $0["reasons"]?[0]?["code"]?.stringValue })
            return reasons.isSuperset(of: ["invalid_json", "wrong_type"])
        }
        XCTAssertTrue(deadLettered, "dead-letter reasons seen: \(reasons)")

        up.signal(SIGINT)
        let status = await up.waitForExit(timeout: .seconds(60))
        XCTAssertEqual(status, 0, "\(up.output.suffix(8))")
    }
}
