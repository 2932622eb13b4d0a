import Foundation
import XCTest

/// Checks the repository's `docker-compose.yml` with Debian's `docker-compose` (1.29): that the
/// file is valid, and, from the normalized YAML that `docker-compose config` prints, that the
/// stack has what ARCHITECTURE.md promises: Kafka with a healthcheck, a topic-creation job the
/// services wait for, a readiness healthcheck on every service, and a scalable simulator-worker.
///
/// No Docker engine is needed: `config` only reads and validates the file. CI installs
/// `docker-compose`; without it these tests fail rather than skip.
final class ComposeFileTests: XCTestCase {
    /// The six pipeline services and the `HTTP_PORT` each listens on.
    private static let servicePorts: [(name: String, port: String)] = [
        ("query-api", "8080"),
        ("ingestor", "8081"),
        ("validator", "8082"),
        ("state-updater", "8083"),
        ("simulator-worker", "8084"),
        ("drift-monitor", "8085"),
    ]

    func testComposeFileIsValid() throws {
        let compose = try ComposeCLI()
        let result = try compose.run(["config", "-q"])
        XCTAssertEqual(result.status, 0, "docker-compose config -q rejected docker-compose.yml:\n\(result.stderr)")
    }

    func testDefinesKafkaTheTopicJobAndEveryService() throws {
        let compose = try ComposeCLI()
        let result = try compose.run(["config", "--services"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let names = Set(result.stdout.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) })
        for expected in ["kafka", "create-topics"] + Self.servicePorts.map(\.name) {
            XCTAssertTrue(names.contains(expected), "docker-compose.yml defines no service \(expected); it has \(names.sorted())")
        }
    }

    func testEveryServiceHasAReadinessHealthcheckOnItsPort() throws {
        let services = try ComposeCLI().normalizedServices()
        for (name, port) in Self.servicePorts {
            guard let service = services[name] else {
                XCTFail("service \(name) missing from docker-compose config")
                continue
            }
            let environment = service.mapping("environment")
            XCTAssertEqual(environment["HTTP_PORT"], port, "\(name): HTTP_PORT")
            XCTAssertEqual(environment["KAFKA_BROKERS"], "kafka:9092", "\(name): KAFKA_BROKERS")
            XCTAssertNotNil(environment["LOG_LEVEL"], "\(name): LOG_LEVEL")

            XCTAssertTrue(service.hasKey("healthcheck"), "\(name) has no healthcheck")
            let check = service.section("healthcheck")
            let words = check.compactMap(listItem)
            XCTAssertEqual(Array(words.prefix(3)), ["CMD", "twinctl", "health"], "\(name): healthcheck test is \(words)")
            XCTAssertTrue(words.contains("http://127.0.0.1:\(port)/readyz"), "\(name): healthcheck must probe /readyz on \(port), has \(words)")
            XCTAssertFalse(words.contains("NONE") || check.contains { trimmed($0) == "disable: true" }, "\(name): healthcheck disabled")

            XCTAssertTrue(
                service.dependsOn("create-topics", condition: "service_completed_successfully"),
                "\(name) must wait for create-topics to complete successfully")
            XCTAssertNotNil(service.scalar("stop_grace_period"), "\(name): stop_grace_period (services drain on SIGTERM)")
        }
    }

    func testTopicsAreCreatedByAJobOnceKafkaIsHealthy() throws {
        let services = try ComposeCLI().normalizedServices()
        let kafka = try XCTUnwrap(services["kafka"], "no kafka service")
        XCTAssertTrue(kafka.hasKey("healthcheck"), "kafka needs a healthcheck for create-topics to wait on")
        XCTAssertEqual(kafka.mapping("environment")["KAFKA_AUTO_CREATE_TOPICS_ENABLE"], "false", "topics come from the init job, not auto-creation")

        let job = try XCTUnwrap(services["create-topics"], "no create-topics service")
        XCTAssertEqual(job.section("command").compactMap(listItem), ["twinctl", "topics", "create"])
        XCTAssertTrue(job.dependsOn("kafka", condition: "service_healthy"), "create-topics must wait for a healthy kafka")
        XCTAssertEqual(job.scalar("restart"), "no", "create-topics is a one-shot job")
        XCTAssertEqual(job.scalar("image"), services["ingestor"]?.scalar("image"), "create-topics runs the TwinStream image")
    }

    /// `docker compose up --scale simulator-worker=4 --scale validator=2` needs workers without a
    /// fixed container name or host port (the drift monitor too: it scales by partitions).
    func testWorkersCanBeScaled() throws {
        let services = try ComposeCLI().normalizedServices()
        for name in ["simulator-worker", "validator", "drift-monitor"] {
            let worker = try XCTUnwrap(services[name], "no \(name) service")
            XCTAssertFalse(worker.hasKey("container_name"), "`--scale \(name)=N` fails with a fixed container_name")
            // `ports: ["8084"]` (container port only, ephemeral host port) is fine; `published:` is not.
            let fixedHostPorts = worker.section("ports").filter { $0.contains("published:") }
            XCTAssertEqual(fixedHostPorts, [], "\(name) publishes a fixed host port: scaled replicas would collide")
        }
    }

    /// Long-running services restart, run read-only without capabilities, and the state-updater
    /// keeps its checkpoints on a named volume.
    func testServicesRestartRunLockedDownAndKeepCheckpointsOnAVolume() throws {
        let services = try ComposeCLI().normalizedServices()
        for (name, _) in Self.servicePorts {
            let service = try XCTUnwrap(services[name])
            XCTAssertEqual(service.scalar("restart"), "unless-stopped", "\(name): restart policy")
            XCTAssertEqual(service.scalar("read_only"), "true", "\(name): read-only root filesystem")
            XCTAssertEqual(service.section("cap_drop").compactMap(listItem), ["ALL"], "\(name): capabilities")
        }
        let updater = try XCTUnwrap(services["state-updater"])
        XCTAssertEqual(updater.mapping("environment")["STATE_DIR"], "/var/lib/twinstream/checkpoints")
        XCTAssertTrue(updater.section("volumes").compactMap(listItem).contains { $0.hasPrefix("state-updater-checkpoints:/var/lib/twinstream") },
                      "state-updater checkpoints must be on the named volume: \(updater.section("volumes"))")
    }

    /// Prometheus, Alertmanager and Grafana read the shipped files (the ones the Prometheus tests
    /// check), the kafka exporter watches the broker, and the fleet is an optional profile.
    func testMonitoringReadsTheShippedFilesAndTheFleetIsOptional() throws {
        let compose = try ComposeCLI()
        let services = try compose.normalizedServices()
        let root = try repositoryRoot().path
        func mounts(_ name: String) -> [String] { services[name]?.section("volumes").compactMap(listItem) ?? [] }
        XCTAssertTrue(mounts("prometheus").contains("\(root)/Deploy/prometheus:/etc/prometheus:ro"), "\(mounts("prometheus"))")
        XCTAssertTrue(mounts("alertmanager").contains("\(root)/Deploy/alertmanager:/etc/alertmanager:ro"), "\(mounts("alertmanager"))")
        XCTAssertTrue(mounts("grafana").contains("\(root)/Deploy/grafana/provisioning:/etc/grafana/provisioning:ro"), "\(mounts("grafana"))")
        XCTAssertTrue(mounts("grafana").contains("\(root)/Deploy/grafana/dashboards:/etc/grafana/dashboards:ro"), "\(mounts("grafana"))")
        let command = try XCTUnwrap(services["prometheus"]).section("command").compactMap(listItem)
        XCTAssertTrue(command.contains("--config.file=/etc/prometheus/prometheus.yml"), "\(command)")
        XCTAssertTrue(try XCTUnwrap(services["kafka-exporter"]).section("command").compactMap(listItem).contains("--kafka.server=kafka:9092"))

        // docker-compose 1.29 lists profiled services in `config` too; the profile is what keeps
        // `up` from starting them.
        let fleet = try XCTUnwrap(services["fleet"], "no fleet service")
        XCTAssertEqual(fleet.section("profiles").compactMap(listItem), ["fleet"], "the fleet must start only with --profile fleet")
        XCTAssertEqual(Array(fleet.section("command").compactMap(listItem).prefix(2)), ["twinctl", "fleet"])
    }
}

// MARK: - docker-compose

/// `docker-compose -f <repo>/docker-compose.yml --project-directory <repo> …`
private struct ComposeCLI {
    let executable: URL
    let root: URL

    init() throws {
        root = try repositoryRoot()
        executable = try requireTool("docker-compose", package: "docker-compose")
    }

    func run(_ arguments: [String], timeout: TimeInterval = 60) throws -> CommandResult {
        let file = root.appendingPathComponent("docker-compose.yml").path
        return try runProcess(executable, ["-f", file, "--project-directory", root.path] + arguments, in: root, timeout: timeout)
    }

    /// Services from `docker-compose config`, by name.
    func normalizedServices() throws -> [String: ComposeService] {
        let result = try run(["config"])
        guard result.status == 0 else {
            throw ToolFailure(description: "docker-compose config failed (\(result.status)):\n\(result.stderr)")
        }
        let services = parseServices(result.stdout)
        guard !services.isEmpty else {
            throw ToolFailure(description: "no services found in docker-compose config output:\n\(result.stdout)")
        }
        return services
    }
}

/// One service's block of the normalized YAML, kept as lines: `docker-compose config` prints a
/// fixed layout (block mappings, lists as `- item`), so indentation is enough to navigate it.
private struct ComposeService {
    let lines: [String]
    /// Indentation of this service's own keys (`image:`, `healthcheck:`…).
    let keyIndent: Int

    func hasKey(_ key: String) -> Bool { keyLineIndex(key) != nil }

    /// `key: value` on the key's own line, unquoted.
    func scalar(_ key: String) -> String? {
        guard let i = keyLineIndex(key) else { return nil }
        let value = valueAfterColon(lines[i])
        return value.isEmpty ? nil : value
    }

    /// The lines nested under `key:` (deeper, or list items at the key's own indentation).
    func section(_ key: String) -> [String] {
        guard let start = keyLineIndex(key) else { return [] }
        var result: [String] = []
        for line in lines[(start + 1)...] {
            let depth = indentation(line)
            if depth > keyIndent || (depth == keyIndent && trimmed(line).hasPrefix("- ")) {
                result.append(line)
            } else {
                break
            }
        }
        return result
    }

    /// A nested `NAME: value` mapping such as `environment`, unquoted.
    func mapping(_ key: String) -> [String: String] {
        let body = section(key)
        guard let depth = body.first.map(indentation) else { return [:] }
        var result: [String: String] = [:]
        for line in body where indentation(line) == depth {
            let text = trimmed(line)
            guard let colon = text.firstIndex(of: ":") else { continue }
            result[String(text[..<colon])] = valueAfterColon(text)
        }
        return result
    }

    /// Whether `depends_on` names `service` with `condition: <condition>`.
    func dependsOn(_ service: String, condition: String) -> Bool {
        let body = section("depends_on")
        guard let i = body.firstIndex(where: { trimmed($0) == "\(service):" }) else { return false }
        let depth = indentation(body[i])
        for line in body[(i + 1)...] {
            guard indentation(line) > depth else { break }
            if trimmed(line) == "condition: \(condition)" { return true }
        }
        return false
    }

    private func keyLineIndex(_ key: String) -> Int? {
        lines.firstIndex { indentation($0) == keyIndent && (trimmed($0) == "\(key):" || trimmed($0).hasPrefix("\(key): ")) }
    }
}

/// Splits the `services:` mapping of `docker-compose config` output into one block per service.
private func parseServices(_ yaml: String) -> [String: ComposeService] {
    let lines = yaml.split(whereSeparator: \.isNewline).map(String.init)
    guard let start = lines.firstIndex(where: { $0 == "services:" }) else { return [:] }
    var body: [String] = []
    for line in lines[(start + 1)...] {
        if indentation(line) == 0 && !trimmed(line).isEmpty { break }
        body.append(line)
    }
    guard let nameIndent = body.first(where: { !trimmed($0).isEmpty }).map(indentation) else { return [:] }

    var services: [String: ComposeService] = [:]
    var name: String?
    var block: [String] = []
    func flush() {
        guard let name else { return }
        let keyIndent = block.first(where: { !trimmed($0).isEmpty }).map(indentation) ?? nameIndent + 2
        services[name] = ComposeService(lines: block, keyIndent: keyIndent)
    }
    for line in body where !trimmed(line).isEmpty {
        if indentation(line) == nameIndent, trimmed(line).hasSuffix(":") {
            flush()
            name = String(trimmed(line).dropLast())
            block = []
        } else {
            block.append(line)
        }
    }
    flush()
    return services
}

private func indentation(_ line: String) -> Int { line.prefix { $0 == " " }.count }

private func trimmed(_ line: String) -> String { line.trimmingCharacters(in: .whitespaces) }

/// `- value` → `value` (unquoted); nil for other lines.
private func listItem(_ line: String) -> String? {
    let text = trimmed(line)
    guard text.hasPrefix("- ") else { return nil }
    return unquote(String(text.dropFirst(2)))
}

private func valueAfterColon(_ line: String) -> String {
    guard let colon = line.firstIndex(of: ":") else { return "" }
    return unquote(line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
}

private func unquote(_ value: String) -> String {
    for quote in ["'", "\""] where value.count >= 2 && value.hasPrefix(quote) && value.hasSuffix(quote) {
        return String(value.dropFirst().dropLast())
    }
    return value
}
