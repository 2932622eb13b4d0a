import Foundation
import XCTest

/// Deploy/RUNBOOK.md has a section for every alert rule (the heading its `runbook_url` points at),
/// for every failure an operator meets, and for the procedures.
final class RunbookTests: XCTestCase {
    /// GitHub's anchor of a heading: lowercased, spaces to hyphens, punctuation dropped.
    private static func anchor(_ heading: String) -> String {
        String(heading.lowercased().compactMap { c -> Character? in
            if c == " " { return "-" }
            return c.isLetter || c.isNumber || c == "-" || c == "_" ? c : nil
        })
    }

    private func headings() throws -> [String] {
        let text = try String(contentsOf: try repositoryRoot().appendingPathComponent("Deploy/RUNBOOK.md"), encoding: .utf8)
        return text.split(separator: "\n").filter { $0.hasPrefix("#") }.map { String($0.drop { $0 == "#" }).trimmingCharacters(in: .whitespaces) }
    }

    func testEveryAlertRuleHasTheSectionItsRunbookURLPointsAt() throws {
        let anchors = Set(try headings().map(Self.anchor))
        let rules = try AlertRules.load(try repositoryRoot().appendingPathComponent("Deploy/prometheus/rules/twinstream-alerts.yml"))
        XCTAssertFalse(rules.isEmpty)
        for rule in rules {
            let fragment = try XCTUnwrap(rule.runbookURL?.split(separator: "#").last.map(String.init), "\(rule.name) has no runbook_url anchor")
            XCTAssertTrue(anchors.contains(fragment), "RUNBOOK.md has no section #\(fragment) for \(rule.name)")
        }
    }

    func testEveryFailureAndProcedureHasASection() throws {
        let sections = Set(try headings())
        for expected in ["Broker unreachable", "A poison message", "Consumer lag growing", "Dead-letter spike by reason", "Stale twins",
                         "Drift alert storm", "Simulation backlog", "State-updater restore slow",
                         "Replaying dead-letters", "Scaling each stage", "Rotating API keys"] {
            XCTAssertTrue(sections.contains(expected), "RUNBOOK.md has no section \"\(expected)\"")
        }
    }
}
