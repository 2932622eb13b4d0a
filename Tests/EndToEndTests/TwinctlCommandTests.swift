import Foundation
import Kafka
import ServiceKit
import TestSupport
import XCTest

/// Every `twinctl` command answers `--help` with its own usage, touching no broker, and a command
/// that needs a broker says within seconds that nothing answers where it looked, where that address
/// came from, and how to give one (issue 24).
final class TwinctlCommandTests: XCTestCase {
    static let commands = ["broker", "up", "fleet", "produce", "tail", "topics", "bench", "seed-twins", "keys", "simulate", "health", "schema-suite"]

    private func tempDir() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("twinstream-cmd-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Runs twinctl to its end: status, standard output, standard error.
    private func twinctl(_ arguments: [String], in directory: URL, timeout: Duration = .seconds(15)) async throws -> (status: Int32?, output: [String], error: String) {
        let log = directory.appendingPathComponent("stderr-\(UUID().uuidString.prefix(6)).log")
        let child = try ChildProcess("twinctl", arguments, environment: ["KAFKA_BROKERS": ""], stderrTo: log, directory: directory)
        let status = await child.waitForExit(timeout: timeout)
        _ = await child.waitForOutputEnd()
        return (status, child.output, String(decoding: (try? Data(contentsOf: log)) ?? Data(), as: UTF8.self))
    }

    func testEveryCommandPrintsItsOwnUsageForHelp() async throws {
        let dir = try tempDir()
        for command in Self.commands {
            let (status, output, _) = try await twinctl([command, "--help"], in: dir, timeout: .seconds(5))
            XCTAssertEqual(status, 0, command)
            XCTAssertEqual(output.first, "usage: twinctl", command)
            XCTAssertTrue(output.dropFirst().first?.hasPrefix("  \(command) ") == true, "\(command): \(output)")
            XCTAssertFalse(output.contains { $0.hasPrefix("  ") && !$0.hasPrefix("   ") && !$0.hasPrefix("  \(command) ") },
                           "only \(command)'s usage: \(output)")
        }
    }

    func testBrokerCommandsSayAtOnceThatNothingAnswersAndHowToGiveTheAddress() async throws {
        let dir = try tempDir()
        let port = Harness.freePort()
        for arguments in [["tail", "--topic", "twin.changes.v1"], ["produce", "--topic", "t", "--value", "x"], ["fleet", "--ticks", "1"],
                          ["bench", "produce", "--topic", "t"], ["seed-twins", "--count", "1"]] {
            let start = ContinuousClock.now
            let (status, _, error) = try await twinctl(arguments + ["--brokers", "127.0.0.1:\(port)"], in: dir)
            XCTAssertEqual(status, 1, "\(arguments): \(error)")
            XCTAssertLessThan(ContinuousClock.now - start, .seconds(10), "\(arguments) kept the user waiting")
            XCTAssertTrue(error.contains("nothing answers at 127.0.0.1:\(port) (--brokers)") && error.contains("twinctl up"), "\(arguments): \(error)")
        }
        // A fault plan that does not parse is told as such, broker or not.
        let faults = try await twinctl(["fleet", "--faults", "stuck:pump-1:temperature@5m;bogus:1%", "--brokers", "127.0.0.1:\(port)"], in: dir)
        XCTAssertEqual(faults.status, 2, faults.error)
        XCTAssertTrue(faults.error.contains("--faults: fault 2 'bogus:1%': unknown kind 'bogus'"), faults.error)
        // Without --brokers: the address a running twinctl up recorded here, named as such.
        let state = dir.appendingPathComponent(".twinstream/state")
        try FileManager.default.createDirectory(at: state, withIntermediateDirectories: true)
        try Data("127.0.0.1:\(port)\n".utf8).write(to: state.appendingPathComponent("bootstrap"))
        let (status, _, error) = try await twinctl(["tail", "--topic", "twin.changes.v1"], in: dir)
        XCTAssertEqual(status, 1)
        XCTAssertTrue(error.contains("nothing answers at 127.0.0.1:\(port) (recorded by twinctl up in") && error.contains("--brokers"), error)
        // The query API's client says the same for simulate.
        let simulate = try await twinctl(["simulate", "room-1", "--api", "http://127.0.0.1:\(port)"], in: dir)
        XCTAssertEqual(simulate.status, 1)
        XCTAssertTrue(simulate.error.contains("nothing answers at http://127.0.0.1:\(port) (--api)") && simulate.error.contains("--api"), simulate.error)
    }

    /// Scripts that start the services themselves (Benchmarks/e2e) read the client settings from
    /// `twinctl broker`, so they run the services as `twinctl up` does, whatever those settings become.
    func testBrokerPrintsTheClientSettingsUpGivesItsServicesBeforeItsAddress() async throws {
        let broker = try ChildProcess("twinctl", ["broker", "--partitions", "1"])
        defer { broker.signal(SIGTERM) }
        let up = await Harness.eventually(timeout: .seconds(20)) { broker.output.contains { $0.hasPrefix("bootstrap.servers=") } }
        XCTAssertTrue(up, "no address: \(broker.output)")
        let lines = broker.output
        let address = try XCTUnwrap(lines.firstIndex { $0.hasPrefix("bootstrap.servers=") })
        let printed = lines[..<address].filter { $0.hasPrefix("client ") }.map { $0.dropFirst("client ".count).split(separator: "=", maxSplits: 1) }
        let settings = Dictionary(uniqueKeysWithValues: printed.map { (String($0[0]), String($0[1])) })
        XCTAssertEqual(settings, EnvironmentReader.addingKafkaDefaults(EmbeddedBroker.clientProperties, to: [:]))
        XCTAssertEqual(settings["KAFKA_FETCH_WAIT_MAX_MS"], EmbeddedBroker.clientProperties["fetch.wait.max.ms"])
    }
}
