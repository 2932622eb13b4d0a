import Contracts
import Foundation
import TestSupport
import XCTest

/// The topic-creation job (compose's `create-topics`, the Kubernetes Job) runs `twinctl topics
/// create`, which creates `Shared/Contracts`' list: `twinctl topics list` prints exactly that list
/// with every setting, and `create` prints each topic it wants before creating it.
final class TopicJobTests: XCTestCase {
    func testTopicsListPrintsTheContractsTopicsWithTheirSettings() async throws {
        let list = try ChildProcess("twinctl", ["topics", "list"])
        let status = await list.waitForExit(timeout: .seconds(30))
        XCTAssertEqual(status, 0)
        let ended = await list.waitForOutputEnd()
        XCTAssertTrue(ended, "twinctl topics list output did not end")
        let printed = list.output.filter { !$0.isEmpty }
        XCTAssertEqual(printed.count, Topic.allCases.count, "\(printed)")
        for (line, topic) in zip(printed, Topic.allCases) {
            let fields = line.split(separator: "\t").map(String.init)
            XCTAssertEqual(fields.first, topic.name)
            XCTAssertTrue(fields.contains("partitions=\(Topic.partitionCount)"), line)
            for (key, value) in topic.configs { XCTAssertTrue(fields.contains("\(key)=\(value)"), "\(topic.name) lacks \(key)=\(value): \(line)") }
        }
        for compacted in [Topic.twinState, Topic.driftState] {
            XCTAssertTrue(printed.contains { $0.hasPrefix(compacted.name + "\t") && $0.contains("cleanup.policy=compact") }, "\(compacted.name) must be compacted")
        }
    }

    /// The compose job and the Kubernetes Job both run `twinctl topics create`.
    func testComposeAndKubernetesJobsRunTopicsCreate() throws {
        let root = try repositoryRoot()
        let compose = try String(contentsOf: root.appendingPathComponent("docker-compose.yml"), encoding: .utf8)
        XCTAssertTrue(compose.contains(#"command: ["twinctl", "topics", "create"]"#), "compose's create-topics job")
        let job = try String(contentsOf: root.appendingPathComponent("Deploy/k8s/topics-job.yaml"), encoding: .utf8)
        XCTAssertTrue(job.contains(#"command: ["twinctl", "topics", "create""#), "the Kubernetes Job must run twinctl topics create:\n\(job)")
    }
}
