import Foundation
import HTTP
import JSON
import TestSupport
import XCTest

/// The shipped Prometheus, Alertmanager and Grafana files, checked by the real tools: `promtool`
/// (configuration, rules, rule unit tests), `amtool` (routing), and a real Prometheus scraping
/// `twinctl up` with the shipped scrape jobs, which then answers every dashboard query and every
/// alert expression. Nothing is installed here: `scripts/bootstrap.sh` installs Debian's
/// `prometheus` and `prometheus-alertmanager`; without them these tests fail and say so.
final class PrometheusTests: XCTestCase {
    private var root: URL { get throws { try repositoryRoot() } }
    private var rulesFile: URL { get throws { try root.appendingPathComponent("Deploy/prometheus/rules/twinstream-alerts.yml") } }

    // MARK: promtool and amtool

    func testScrapeConfigurationPassesPromtoolCheckConfig() throws {
        let promtool = try requireTool("promtool", package: "prometheus")
        let result = try runProcess(promtool, ["check", "config", "Deploy/prometheus/prometheus.yml"], in: try root, timeout: 60)
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssertTrue(result.output.contains("SUCCESS: 1 rule files found"), "the configuration must load the shipped rules: \(result.output)")
    }

    func testAlertRulesPassPromtoolCheckRules() throws {
        let promtool = try requireTool("promtool", package: "prometheus")
        let result = try runProcess(promtool, ["check", "rules", try rulesFile.path], in: try root, timeout: 60)
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssertTrue(result.output.contains("SUCCESS: \(try AlertRules.load(try rulesFile).count) rules found"), result.output)
    }

    /// Every rule has `for:`, a severity Alertmanager routes, and a runbook link.
    func testEveryAlertRuleHasForSeverityAndRunbookURL() throws {
        let rules = try AlertRules.load(try rulesFile)
        XCTAssertGreaterThanOrEqual(rules.count, 10)
        for rule in rules {
            XCTAssertNotNil(rule.forDuration, "\(rule.name) has no for:")
            XCTAssertTrue(["critical", "warning"].contains(rule.severity ?? ""), "\(rule.name): severity \(rule.severity ?? "none")")
            XCTAssertTrue(rule.runbookURL?.hasSuffix("Deploy/RUNBOOK.md#\(rule.name.lowercased())") == true,
                          "\(rule.name): runbook_url \(rule.runbookURL ?? "none") must point at its RUNBOOK.md section")
        }
    }

    /// `promtool test rules` passes, and every rule is tested both firing and not firing.
    func testEveryAlertRuleIsUnitTestedFiringAndNotFiring() throws {
        let promtool = try requireTool("promtool", package: "prometheus")
        let tests = try root.appendingPathComponent("Deploy/prometheus/tests/twinstream-alerts.test.yml")
        let result = try runProcess(promtool, ["test", "rules", tests.path], in: try root, timeout: 120)
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssertTrue(result.output.contains("SUCCESS"), result.output)

        // alert_rule_test entries: `alertname: X` followed by `exp_alerts: []` (must not fire) or
        // by `exp_alerts:` with items (must fire).
        let lines = try String(contentsOf: tests, encoding: .utf8).split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        var fires = Set<String>(), silent = Set<String>()
        for (i, line) in lines.enumerated() where line.hasPrefix("alertname: ") && i + 1 < lines.count {
            let name = String(line.dropFirst("alertname: ".count))
            if lines[i + 1] == "exp_alerts: []" { silent.insert(name) } else if lines[i + 1] == "exp_alerts:" { fires.insert(name) }
        }
        for rule in try AlertRules.load(try rulesFile) {
            XCTAssertTrue(fires.contains(rule.name), "\(rule.name) has no unit test where it fires")
            XCTAssertTrue(silent.contains(rule.name), "\(rule.name) has no unit test where it must not fire")
        }
    }

    func testAlertmanagerRoutesBySeverityAndTenant() throws {
        let amtool = try requireTool("amtool", package: "prometheus-alertmanager")
        let config = "Deploy/alertmanager/alertmanager.yml"
        let check = try runProcess(amtool, ["check-config", config], in: try root, timeout: 30)
        XCTAssertEqual(check.status, 0, check.output)
        func receivers(_ labels: String...) throws -> String {
            let result = try runProcess(amtool, ["config", "routes", "test", "--config.file=\(config)"] + labels, in: try root, timeout: 30)
            XCTAssertEqual(result.status, 0, result.output)
            return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        XCTAssertEqual(try receivers("alertname=TwinStreamServiceDown", "severity=critical"), "pager")
        XCTAssertEqual(try receivers("alertname=TwinStreamStaleTwins", "severity=warning"), "tickets")
        XCTAssertEqual(try receivers("alertname=TwinStreamDeadLetterSpike", "severity=warning", "tenant=acme"), "tenant-acme,tickets",
                       "a tenant's alert goes to its team and to the platform's route")
        XCTAssertEqual(try receivers("alertname=TwinStreamDeadLetterSpike", "severity=warning", "tenant=zeta"), "tickets")
    }

    // MARK: A real Prometheus on the local stack

    /// `twinctl up` (broker, six services, a fleet), a real Prometheus with the shipped scrape jobs
    /// pointed at the local ports (a temp copy; the kafka-exporter job is left out: no exporter
    /// runs against the embedded broker) and the shipped rules evaluated every second. Once every
    /// target is up and a little traffic went through (HTTP ingest with a bad reading, a
    /// simulation, reads), every alert rule must evaluate without error and read only series that
    /// exist, and every dashboard query must be valid and return data — or be listed below as
    /// expected empty, with the reason.
    func testLivePrometheusScrapesEveryServiceAndAnswersEveryPanelAndAlert() async throws {
        let prometheusBinary = try requireTool("prometheus", package: "prometheus")
        let root = try root
        let base = Harness.freePortRange(6)
        let prometheusPort = Harness.freePort()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("twinstream-prom-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }

        let up = try ChildProcess("twinctl", ["up", "--twins", "12", "--interval-ms", "250", "--base-port", String(base),
                                              "--log-dir", dir.appendingPathComponent("logs").path, "--state-dir", dir.appendingPathComponent("state").path],
                                  stderrTo: dir.appendingPathComponent("twinctl.log"))
        // Stop the stack and wait for it, whatever happens: dropping the ChildProcess while
        // `twinctl up` still drains would SIGKILL it and leave its six services running.
        addTeardownBlock {
            up.signal(SIGTERM)
            _ = await up.waitForExit(timeout: .seconds(45))
        }

        // The scrape configuration as shipped, with only the targets (and intervals) changed.
        let shipped = try String(contentsOf: root.appendingPathComponent("Deploy/prometheus/prometheus.yml"), encoding: .utf8)
        let rewritten = try LocalScrapeConfiguration.rewrite(shipped, basePort: base, prometheusPort: prometheusPort)
        XCTAssertEqual(rewritten.jobs, ["query-api", "ingestor", "validator", "state-updater", "simulator-worker", "drift-monitor", "prometheus"])
        XCTAssertEqual(rewritten.dropped, ["kafka-exporter"])
        try FileManager.default.copyItem(at: root.appendingPathComponent("Deploy/prometheus/rules"), to: dir.appendingPathComponent("rules"))
        try rewritten.text.write(to: dir.appendingPathComponent("prometheus.yml"), atomically: true, encoding: .utf8)

        let started = await Harness.eventually(timeout: .seconds(90)) { up.output.contains { $0.hasPrefix("platform up") } }
        XCTAssertTrue(started, "twinctl up did not start: \(up.output)")
        let key = try XCTUnwrap(up.output.first { $0.hasPrefix("api key: ") }.map { String($0.dropFirst("api key: ".count)) }, "\(up.output)")

        let prometheus = try ToolProcess(prometheusBinary, [
            "--config.file=\(dir.appendingPathComponent("prometheus.yml").path)",
            "--storage.tsdb.path=\(dir.appendingPathComponent("data").path)",
            "--web.listen-address=127.0.0.1:\(prometheusPort)", "--log.level=warn",
        ], log: dir.appendingPathComponent("prometheus.log"), in: dir)
        defer { prometheus.stop() }
        let api = PrometheusAPI(port: prometheusPort)

        // Every target up.
        var targets: [(job: String, health: String, error: String)] = []
        let allUp = await Harness.eventually(timeout: .seconds(30)) {
            targets = (try? await api.targets()) ?? []
            return targets.count == rewritten.jobs.count && targets.allSatisfy { $0.health == "up" }
        }
        XCTAssertTrue(allUp, "not every target is up: \(targets)\n\(prometheus.tail())")

        // Traffic that the dashboard shows: an HTTP batch with one good and one bad reading (an
        // ingestor dead-letter), reads of the query API, a forecast on the simulator.
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let batch = #"[{"twinId":"pump-1","ts":\#(now),"values":{"flow":30,"pressure":2.5,"temperature":20.5,"rpm":1400}},{"twinId":"pump-1","ts":"yesterday","values":{"flow":1}}]"#
        let posted = try await HTTPClient(port: base + 1).post("/v1/telemetry", headers: ["Authorization": "Bearer \(key)", "Content-Type": "application/json"], body: Array(batch.utf8))
        XCTAssertEqual(posted.status.code, 202, posted.text)
        let simulated = await Harness.eventually(timeout: .seconds(20)) {
            let answer = try? await HTTPClient(port: base).post("/v1/twins/room-1/simulations", headers: ["Authorization": "Bearer \(key)", "Content-Type": "application/json"],
                                                                body: Array(#"{"kind":"forecast","horizon":"1h","step":"1m"}"#.utf8))
            return answer?.status.code == 202
        }
        XCTAssertTrue(simulated, "POST /v1/twins/room-1/simulations was not accepted")
        _ = await Harness.get(port: base, "/v1/twins/pump-1", key: key)
        _ = await Harness.get(port: base, "/v1/twins/nope", key: key)

        // Wait until the traffic is scraped and rules have been evaluated.
        let scraped = await Harness.eventually(timeout: .seconds(30)) {
            let simulations = (try? await api.query("sum(twinstream_simulation_requests_total)"))?.count ?? 0
            let letters = (try? await api.query(#"sum(twinstream_deadlettered_total{stage="ingestor"})"#))?.count ?? 0
            let rules = (try? await api.rules()) ?? []
            return simulations > 0 && letters > 0 && !rules.isEmpty && rules.allSatisfy { $0.evaluated }
        }
        XCTAssertTrue(scraped, "the simulation and the dead-letter never showed in Prometheus, or rules were never evaluated\n\(prometheus.tail())")

        // Alert rules: every one loaded, evaluated without error, reading series that exist.
        let rules = try await api.rules()
        let shippedRules = try AlertRules.load(rulesFile)
        XCTAssertEqual(Set(rules.map(\.name)), Set(shippedRules.map(\.name)), "Prometheus loaded other rules than the file has")
        var report: [String] = []
        for rule in rules {
            XCTAssertEqual(rule.health, "ok", "\(rule.name) does not evaluate: \(rule.lastError)")
            let firing = try await api.query(rule.query)
            for metric in Self.metricNames(in: rule.query) {
                let present = try await api.query("count({__name__=\"\(metric)\"})").count > 0
                if !present, let reason = Self.expectedAbsentMetrics[metric] {
                    report.append("  \(rule.name): \(metric) absent as expected (\(reason))")
                } else {
                    XCTAssertTrue(present, "\(rule.name) reads \(metric), which no service exports")
                }
            }
            report.append("\(rule.name): ok, \(firing.isEmpty ? "not firing" : "\(firing.count) series over threshold") on the healthy stack")
        }
        // A healthy stack: nothing is down or missing.
        for name in ["TwinStreamServiceDown", "TwinStreamServiceMissing"] {
            let rule = try XCTUnwrap(rules.first { $0.name == name }, "\(name) not loaded")
            let firing = try await api.query(rule.query)
            XCTAssertEqual(firing.count, 0, "\(name) fires on the healthy local stack: \(firing)")
        }

        // Dashboard: every panel's every query. A series born with the traffic needs two scrapes
        // before rate() sees it, so wait (with a deadline) until every query that should have data has.
        let dashboard = try JSON(parsing: Array(try Data(contentsOf: root.appendingPathComponent("Deploy/grafana/dashboards/twinstream-overview.json"))))
        let queries = Self.panelQueries(dashboard)
        XCTAssertGreaterThanOrEqual(queries.count, 20)
        var answers: [Int: Result<Int, any Error>] = [:]
        func expectedEmpty(_ expr: String) -> String? { Self.expectedEmptyQueries.first { expr.contains($0.key) }?.value }
        _ = await Harness.eventually(timeout: .seconds(30)) {
            for (i, (_, expr)) in queries.enumerated() {
                if case .success(let n)? = answers[i], n > 0 { continue }
                let query = expr.replacingOccurrences(of: "$__rate_interval", with: "1m")
                do { answers[i] = .success(try await api.query(query).count) } catch { answers[i] = .failure(error) }
            }
            return queries.indices.allSatisfy { i in
                if case .success(let n)? = answers[i] { return n > 0 || expectedEmpty(queries[i].1) != nil }
                return false
            }
        }
        for (i, (panel, expr)) in queries.enumerated() {
            XCTAssertFalse(expr.replacingOccurrences(of: "$__rate_interval", with: "").contains("$"), "\(panel): a Grafana variable this test does not know: \(expr)")
            switch answers[i] {
            case .failure(let error)?:
                XCTFail("panel \(panel): \(expr) is not a valid query: \(error)")
            case .success(let count)? where count > 0:
                report.append("panel \(panel): \(count) series: \(expr)")
            case .success?:
                if let reason = expectedEmpty(expr) {
                    report.append("panel \(panel): empty as expected (\(reason)): \(expr)")
                } else {
                    XCTFail("panel \(panel): \(expr) returned no data")
                }
            case nil:
                XCTFail("panel \(panel): \(expr) was never run")
            }
        }
        print(report.joined(separator: "\n"))
    }

    /// Metrics a healthy local stack does not export, and why.
    static let expectedAbsentMetrics: [String: String] = [
        "twinstream_outputs_rejected_total": "created on the first output the broker refuses; none here",
        "twinstream_drift_alerts_total": "created on the first drift alert; a minute-old fleet has none",
        "kafka_consumergroup_lag_sum": "kafka_exporter does not run against the embedded broker",
        "kafka_consumergroup_members": "kafka_exporter does not run against the embedded broker",
    ]

    /// Dashboard queries expected to return nothing on the local stack (matched by substring), and why.
    static let expectedEmptyQueries: [String: String] = [
        "kafka_consumergroup": "kafka_exporter does not run against the embedded broker (it does in compose)",
        "twinstream_outputs_rejected_total": "no output was refused",
        "twinstream_drift_alerts_total": "no drift alert was raised in the first minute",
        // Sharding lands with the simulation-sharding work; until then no worker writes these topics.
        "simulation.shards.v1": "no simulation was sharded (a small forecast runs whole)",
        "simulation.shard-results.v1": "no simulation was sharded (a small forecast runs whole)",
    ]

    /// Metric names in a PromQL expression: identifiers followed by a selector, a range or a
    /// closing parenthesis, excluding functions, keywords and label names.
    static func metricNames(in query: String) -> Set<String> {
        let pattern = try! NSRegularExpression(pattern: #"\b(twinstream_[a-z0-9_]+|kafka_[a-z0-9_]+|process_[a-z0-9_]+|up)\b(?=\s*[{\[)\s]|$)"#)
        let range = NSRange(query.startIndex..., in: query)
        return Set(pattern.matches(in: query, range: range).compactMap { Range($0.range(at: 1), in: query).map { String(query[$0]) } })
    }

    /// `(panel title, expr)` of every target of every panel, rows' nested panels included.
    static func panelQueries(_ dashboard: JSON) -> [(String, String)] {
        var queries: [(String, String)] = []
        func visit(_ panels: [JSON]) {
            for panel in panels {
                let title = panel["title"]?.stringValue ?? "?"
                for target in panel["targets"]?.arrayValue ?? [] {
                    if let expr = target["expr"]?.stringValue { queries.append((title, expr)) }
                }
                visit(panel["panels"]?.arrayValue ?? [])
            }
        }
        visit(dashboard["panels"]?.arrayValue ?? [])
        return queries
    }
}

// MARK: - The shipped rules file

/// The alert rules of a rules file, read line by line (the file keeps one `key: value` per line;
/// promtool checks the YAML itself).
struct AlertRule {
    var name: String
    var forDuration: String?
    var severity: String?
    var runbookURL: String?
}

enum AlertRules {
    static func load(_ file: URL) throws -> [AlertRule] {
        var rules: [AlertRule] = []
        for raw in try String(contentsOf: file, encoding: .utf8).split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            func value(_ key: String) -> String? {
                line.hasPrefix(key + ":") ? line.dropFirst(key.count + 1).trimmingCharacters(in: .whitespaces) : nil
            }
            if let name = value("- alert") {
                rules.append(AlertRule(name: name))
            } else if !rules.isEmpty {
                if let duration = value("for") { rules[rules.count - 1].forDuration = duration }
                if let severity = value("severity") { rules[rules.count - 1].severity = severity }
                if let url = value("runbook_url") { rules[rules.count - 1].runbookURL = url }
            }
        }
        return rules
    }
}

// MARK: - Rewriting the scrape configuration for local ports

/// The shipped `prometheus.yml` with each service job's DNS discovery replaced by the local port
/// `twinctl up` gave it, Prometheus' own job pointed at the test's Prometheus, intervals of one
/// second, and jobs without a local counterpart (kafka-exporter) dropped. Everything else
/// (relabelling, paths, rule files) stays as shipped.
struct LocalScrapeConfiguration {
    var text: String
    var jobs: [String]
    var dropped: [String]

    /// Service port in the shipped file → offset from `twinctl up --base-port`.
    static let offsets: [Int: Int] = [8080: 0, 8081: 1, 8082: 2, 8083: 3, 8084: 4, 8085: 5]

    static func rewrite(_ shipped: String, basePort: Int, prometheusPort: Int) throws -> LocalScrapeConfiguration {
        // Split into the part before `scrape_configs:` and one block per job.
        let lines = shipped.components(separatedBy: "\n")
        guard let start = lines.firstIndex(of: "scrape_configs:") else { throw ToolFailure(description: "no scrape_configs in prometheus.yml") }
        var head = Array(lines[..<start])
        for (i, line) in head.enumerated() {
            for key in ["scrape_interval", "evaluation_interval", "scrape_timeout"] where line.trimmingCharacters(in: .whitespaces).hasPrefix(key + ":") {
                head[i] = "  \(key): 1s"
            }
        }
        var blocks: [[String]] = []
        for line in lines[(start + 1)...] {
            if line.hasPrefix("  - job_name:") { blocks.append([line]) } else if !blocks.isEmpty { blocks[blocks.count - 1].append(line) }
        }
        var out = head + ["scrape_configs:"]
        var jobs: [String] = [], dropped: [String] = []
        for block in blocks {
            let job = block[0].replacingOccurrences(of: "  - job_name:", with: "").trimmingCharacters(in: .whitespaces)
            let text = block.joined(separator: "\n")
            if text.contains("dns_sd_configs:") {
                guard let portLine = block.first(where: { $0.trimmingCharacters(in: .whitespaces).hasPrefix("port:") }),
                      let port = Int(portLine.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)), let offset = offsets[port] else {
                    throw ToolFailure(description: "job \(job): a DNS discovery without a known service port")
                }
                // Keep every line but the discovery block (which ends where indentation returns to 4).
                var kept: [String] = [], skipping = false
                for line in block {
                    if line.hasPrefix("    dns_sd_configs:") {
                        skipping = true
                        kept += ["    static_configs:", "      - targets: [\"127.0.0.1:\(basePort + offset)\"]"]
                        continue
                    }
                    if skipping && line.hasPrefix("      ") { continue }
                    skipping = false
                    kept.append(line)
                }
                out += kept
                jobs.append(job)
            } else if job == "prometheus" {
                out += block.map { $0.replacingOccurrences(of: "localhost:9090", with: "127.0.0.1:\(prometheusPort)") }
                jobs.append(job)
            } else {
                dropped.append(job)
            }
        }
        return LocalScrapeConfiguration(text: out.joined(separator: "\n"), jobs: jobs, dropped: dropped)
    }
}

// MARK: - Prometheus' HTTP API

/// The parts of Prometheus' HTTP API the test reads.
struct PrometheusAPI {
    let port: Int

    struct Rule {
        var name: String
        var query: String
        var health: String
        var lastError: String
        /// Whether the rule has been evaluated at least once.
        var evaluated: Bool
    }

    private func get(_ path: String) async throws -> JSON {
        let response = try await HTTPClient(port: port, timeout: .seconds(10)).get(path)
        let body = try JSON(parsing: Array(response.text.utf8))
        guard body["status"]?.stringValue == "success" else {
            throw ToolFailure(description: "GET \(path): \(response.status.code) \(body["errorType"]?.stringValue ?? "") \(body["error"]?.stringValue ?? response.text)")
        }
        return body["data"] ?? .null
    }

    /// An instant query's result vector (throws with Prometheus' message on a bad query).
    func query(_ expression: String) async throws -> [JSON] {
        let encoded = expression.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? expression
        return try await get("/api/v1/query?query=\(encoded)")["result"]?.arrayValue ?? []
    }

    func targets() async throws -> [(job: String, health: String, error: String)] {
        (try await get("/api/v1/targets")["activeTargets"]?.arrayValue ?? []).map {
            ($0["labels"]?["job"]?.stringValue ?? "?", $0["health"]?.stringValue ?? "?", $0["lastError"]?.stringValue ?? "")
        }
    }

    func rules() async throws -> [Rule] {
        var rules: [Rule] = []
        for group in try await get("/api/v1/rules?type=alert")["groups"]?.arrayValue ?? [] {
            for rule in group["rules"]?.arrayValue ?? [] {
                let last = rule["lastEvaluation"]?.stringValue ?? ""
                rules.append(Rule(name: rule["name"]?.stringValue ?? "?", query: rule["query"]?.stringValue ?? "",
                                  health: rule["health"]?.stringValue ?? "?", lastError: rule["lastError"]?.stringValue ?? "",
                                  evaluated: !last.isEmpty && !last.hasPrefix("0001-")))
            }
        }
        return rules
    }
}
