import Contracts
import Foundation
import TestSupport
import XCTest

/// The shutdown crash seen in benchmark runs (a stage stopped while its broker died, metrics read
/// meanwhile): every round SIGTERMs the ingestor and the validator while telemetry flows, kills
/// the broker at about the same moment (before, with or after the SIGTERM), and scrapes
/// `/metrics` throughout. Each stage must exit by itself — 0, or 1 when the drain gave up
/// without a broker — and never die of a signal.
final class ShutdownStressTests: XCTestCase {
    func testStagesStoppedWhileTheirBrokerDiesExitWithoutCrashing() async throws {
        var rng = SplitMix64(seed: UInt64(ProcessInfo.processInfo.environment["STRESS_SEED"].flatMap(UInt64.init) ?? 20261121))
        for round in 0..<3 {
            let broker = try ChildProcess("twinctl", ["broker", "--partitions", "6"])
            let up = await Harness.eventually(timeout: .seconds(20)) { broker.output.contains { $0.hasPrefix("bootstrap.servers=") } }
            XCTAssertTrue(up, "round \(round): broker did not start")
            let bootstrap = String(try XCTUnwrap(broker.output.first { $0.hasPrefix("bootstrap.servers=") }).dropFirst("bootstrap.servers=".count))
            let fleet = try ChildProcess("twinctl", ["fleet", "--brokers", bootstrap, "--twins", "50", "--interval-ms", "5"])
            let base = Harness.freePortRange(2)
            var stages: [(String, ChildProcess, Int)] = []
            for (offset, name) in ["ingestor", "validator"].enumerated() {
                let env = Harness.embeddedBrokerEnvironment(["KAFKA_BROKERS": bootstrap, "HTTP_PORT": String(base + offset),
                                                             "SHUTDOWN_TIMEOUT": "8s", "LOG_LEVEL": "warning"])
                stages.append((name, try ChildProcess(name, environment: env), base + offset))
            }
            for (name, _, port) in stages {
                let ready = await Harness.eventually(timeout: .seconds(60)) { await Harness.get(port: port, "/readyz")?.status == 200 }
                XCTAssertTrue(ready, "round \(round): \(name) never became ready")
            }
            let ports = stages.map(\.2)
            let scraping = Task { [ports] in
                while !Task.isCancelled {
                    for port in ports { _ = await Harness.get(port: port, "/metrics") }
                }
            }
            try await Task.sleep(for: .milliseconds(Int(200 + rng.next() % 1300)))
            let order = round % 3  // 0: broker first, 1: together, 2: stages first
            if order == 0 { broker.signal(SIGKILL) }
            for (_, stage, _) in stages { stage.signal(SIGTERM) }
            if order == 1 { broker.signal(SIGKILL) }
            if order == 2 {
                try await Task.sleep(for: .milliseconds(Int(rng.next() % 300)))
                broker.signal(SIGKILL)
            }
            for (name, stage, _) in stages {
                let status = await stage.waitForExit(timeout: .seconds(30))
                XCTAssertNotNil(status, "round \(round): \(name) did not exit within 30 s")
                XCTAssertFalse(stage.endedBySignal, "round \(round): \(name) died of signal \(status ?? -1)")
                if let status { XCTAssertTrue(status == 0 || status == 1, "round \(round): \(name) exited \(status)") }
            }
            scraping.cancel()
            fleet.signal(SIGKILL)
            _ = await fleet.waitForExit(timeout: .seconds(5))
            _ = await broker.waitForExit(timeout: .seconds(5))
        }
    }
}
