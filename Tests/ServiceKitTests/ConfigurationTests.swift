import Foundation
import XCTest

@testable import ServiceKit

/// A config struct shaped like a service's, to test the reader the way services use it.
private struct ExampleConfig: Sendable {
    var httpPort: Int
    var logLevel: LogLevel
    var pollTimeout: Duration
    var topics: [String]
    var dryRun: Bool
    var sampleRate: Double
    var apiKeysFile: String?
    var kafka: [String: String]

    init(_ env: EnvironmentReader) throws {
        httpPort = try env.int("HTTP_PORT", default: 8080, range: 1...65535, doc: "Port of the health and metrics server.")
        logLevel = try env.logLevel()
        pollTimeout = try env.duration("POLL_TIMEOUT", default: .milliseconds(500), range: .milliseconds(1)...(.seconds(300)), doc: "Longest wait for a message.")
        topics = env.list("TOPICS", default: ["telemetry.raw.v1"], doc: "Topics to consume.")
        dryRun = try env.bool("DRY_RUN", default: false, doc: "Process but do not produce.")
        sampleRate = try env.double("SAMPLE_RATE", default: 1, range: 0...1, doc: "Share of messages traced.")
        apiKeysFile = env.optionalString("API_KEYS_FILE", doc: "JSON file of API key hashes.")
        kafka = try env.kafkaProperties(known: ["KAFKA_GROUP_ID"])
    }
}

final class ConfigurationTests: XCTestCase {
    func testTypedValuesAndDefaults() throws {
        let env = EnvironmentReader([
            "HTTP_PORT": " 9090 ",
            "LOG_LEVEL": "WARN",
            "POLL_TIMEOUT": "2m",
            "TOPICS": "a, b,,c ",
            "DRY_RUN": "yes",
            "SAMPLE_RATE": "",  // empty means unset
        ])
        let config = try ExampleConfig(env)
        XCTAssertEqual(config.httpPort, 9090)
        XCTAssertEqual(config.logLevel, .warning)
        XCTAssertEqual(config.pollTimeout, .seconds(120))
        XCTAssertEqual(config.topics, ["a", "b", "c"])
        XCTAssertTrue(config.dryRun)
        XCTAssertEqual(config.sampleRate, 1)
        XCTAssertNil(config.apiKeysFile)
        XCTAssertEqual(config.kafka, ["bootstrap.servers": "localhost:9092"])
    }

    func testInvalidValuesThrowErrorsNamingVariableValueAndExpectation() {
        let cases: [(String, String, ConfigurationError.Code, String)] = [
            ("HTTP_PORT", "http", .invalidValue, "an integer in 1...65535"),
            ("HTTP_PORT", "70000", .outOfRange, "an integer in 1...65535"),
            ("LOG_LEVEL", "loud", .invalidValue, "one of trace, debug, info, notice, warning, error, critical"),
            ("POLL_TIMEOUT", "5 parsecs", .invalidValue, "a duration"),
            ("POLL_TIMEOUT", "-1", .invalidValue, "a duration"),
            ("POLL_TIMEOUT", "10m", .outOfRange, "in 1ms...5m"),
            ("DRY_RUN", "maybe", .invalidValue, "true/false"),
            ("SAMPLE_RATE", "1.5", .outOfRange, "a number in 0.0...1.0"),
            ("SAMPLE_RATE", "nan", .invalidValue, "a number"),
        ]
        for (variable, value, code, expected) in cases {
            XCTAssertThrowsError(try ExampleConfig(EnvironmentReader([variable: value])), "\(variable)=\(value)") { error in
                guard let error = error as? ConfigurationError else { return XCTFail("not a ConfigurationError: \(error)") }
                XCTAssertEqual(error.code, code, "\(variable)=\(value)")
                XCTAssertEqual(error.variable, variable)
                XCTAssertEqual(error.value, value)
                XCTAssertTrue(error.expected.contains(expected), error.expected)
                XCTAssertTrue(error.description.contains("\(variable)=\"\(value)\""), error.description)
                XCTAssertTrue(error.description.contains(expected), error.description)
            }
        }
    }

    func testRequiredStringAndSecretValuesStayOutOfErrors() {
        let env = EnvironmentReader(["DB_PASSWORD": "hunter2"])
        XCTAssertThrowsError(try env.requiredString("API_TOKEN", doc: "t")) { error in
            XCTAssertEqual((error as? ConfigurationError)?.code, .missing)
            XCTAssertTrue("\(error)".contains("API_TOKEN is required"), "\(error)")
        }
        XCTAssertThrowsError(try env.int("DB_PASSWORD", default: 0, doc: "odd but possible")) { error in
            XCTAssertFalse("\(error)".contains("hunter2"), "\(error)")
            XCTAssertTrue("\(error)".contains("****"), "\(error)")
        }
    }

    func testDurationSyntax() {
        let cases: [(String, Duration)] = [
            ("500ms", .milliseconds(500)), ("5s", .seconds(5)), ("2m", .seconds(120)), ("1h", .seconds(3600)),
            ("1m30s", .seconds(90)), ("30", .seconds(30)), ("0.5", .milliseconds(500)), ("250us", .microseconds(250)),
            ("10ns", .nanoseconds(10)), ("0.1s", .milliseconds(100)), ("1.5h", .seconds(5400)), ("0", .zero),
        ]
        for (text, expected) in cases {
            XCTAssertEqual(EnvironmentReader.parseDuration(text), expected, text)
        }
        for bad in ["", "ms", "5x", "-5s", "5 s s", "1e400", "s5", "inf", "nan"] {
            XCTAssertNil(EnvironmentReader.parseDuration(bad), bad)
        }
        for duration: Duration in [.seconds(5), .milliseconds(500), .seconds(120), .seconds(90), .seconds(7200), .microseconds(3), .nanoseconds(7), .zero] {
            XCTAssertEqual(EnvironmentReader.parseDuration(EnvironmentReader.formatDuration(duration)), duration)
        }
        XCTAssertEqual(EnvironmentReader.formatDuration(.milliseconds(500)), "500ms")
        XCTAssertEqual(EnvironmentReader.formatDuration(.seconds(120)), "2m")
    }

    func testBoolAndChoiceSpellings() throws {
        for (text, expected) in [("TRUE", true), ("1", true), ("on", true), ("No", false), ("0", false), ("off", false)] {
            XCTAssertEqual(try EnvironmentReader(["B": text]).bool("B", default: !expected, doc: "b"), expected, text)
        }
        let env = EnvironmentReader(["MODE": "Fast", "LEVEL": "Debug"])
        XCTAssertEqual(try env.choice("MODE", default: "safe", among: ["safe", "fast"], doc: "m"), "fast")
        XCTAssertEqual(try env.choice("LEVEL", default: LogLevel.info, doc: "l"), .debug)
        XCTAssertThrowsError(try EnvironmentReader(["MODE": "x"]).choice("MODE", default: "safe", among: ["safe", "fast"], doc: "m"))
    }

    func testKafkaPassthroughMapping() throws {
        let env = EnvironmentReader([
            "KAFKA_BROKERS": "b1:9092,b2:9092",
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_PASSWORD": "s3cret",
            "KAFKA_SSL_CA_LOCATION": "/etc/ca.pem",
            "KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET": "abc",
            "KAFKA_FOO__BAR_BAZ": "1",
            "KAFKA_GROUP_ID": "ingestor",           // declared as known by the caller
            "KAFKA_TOPIC_RAW": "telemetry.raw.v1",  // already read through the reader
            "KAFKA_STATISTICS_INTERVAL_MS": "",     // empty: unset
            "HTTP_PORT": "1",
        ])
        _ = env.string("KAFKA_TOPIC_RAW", default: "telemetry.raw.v1", doc: "Input topic.")
        let properties = try env.kafkaProperties(known: ["KAFKA_GROUP_ID"])
        XCTAssertEqual(properties, [
            "bootstrap.servers": "b1:9092,b2:9092",
            "security.protocol": "SASL_SSL",
            "sasl.password": "s3cret",
            "ssl.ca.location": "/etc/ca.pem",
            "sasl.oauthbearer.client.secret": "abc",
            "foo_bar.baz": "1",
        ])
        XCTAssertEqual(EnvironmentReader.kafkaPropertyName(forVariable: "KAFKA_ENABLE_AUTO_OFFSET_STORE"), "enable.auto.offset.store")
        XCTAssertEqual(EnvironmentReader.kafkaPropertyName(forVariable: "KAFKA_A___B"), "a_.b")
        XCTAssertNil(EnvironmentReader.kafkaPropertyName(forVariable: "KAFKA_X_"))
        XCTAssertNil(EnvironmentReader.kafkaPropertyName(forVariable: "KAFKA_"))
        XCTAssertNil(EnvironmentReader.kafkaPropertyName(forVariable: "HTTP_PORT"))
        // The inverse, as `twinctl up` uses it to hand properties to the services it starts.
        XCTAssertEqual(EnvironmentReader.kafkaVariable(forProperty: "fetch.wait.max.ms"), "KAFKA_FETCH_WAIT_MAX_MS")
        for property in ["enable.auto.offset.store", "a_.b", "foo_bar.baz", "x__y.z"] {
            XCTAssertEqual(EnvironmentReader.kafkaPropertyName(forVariable: EnvironmentReader.kafkaVariable(forProperty: property)), property)
        }
        // Defaults fill in; what the caller set wins.
        XCTAssertEqual(EnvironmentReader.addingKafkaDefaults(["fetch.wait.max.ms": "50", "session.timeout.ms": "3000"],
                                                             to: ["KAFKA_SESSION_TIMEOUT_MS": "6000", "HTTP_PORT": "1"]),
                       ["KAFKA_FETCH_WAIT_MAX_MS": "50", "KAFKA_SESSION_TIMEOUT_MS": "6000", "HTTP_PORT": "1"])
    }

    func testKafkaMalformedNameAndConflictingBrokersThrow() {
        XCTAssertThrowsError(try EnvironmentReader(["KAFKA_SSL_": "x"]).kafkaProperties()) { error in
            XCTAssertEqual((error as? ConfigurationError)?.variable, "KAFKA_SSL_")
        }
        XCTAssertThrowsError(try EnvironmentReader(["KAFKA_BROKERS": "a:1", "KAFKA_BOOTSTRAP_SERVERS": "b:1"]).kafkaProperties()) { error in
            XCTAssertEqual((error as? ConfigurationError)?.code, .conflict)
        }
        XCTAssertEqual(try EnvironmentReader(["KAFKA_BOOTSTRAP_SERVERS": "b:1"]).kafkaProperties()["bootstrap.servers"], "b:1")
    }

    func testSecretRule() {
        for secret in [
            "sasl.password", "ssl.key.password", "ssl.key.pem", "ssl.keystore.password", "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.config", "KAFKA_SASL_PASSWORD", "API_TOKEN", "OPENAI_API_KEY", "DB_PASSWD", "SIGNING_SECRET",
        ] {
            XCTAssertTrue(EnvironmentReader.isSecret(secret), secret)
        }
        for plain in [
            "ssl.key.location", "ssl.keystore.location", "ssl.ca.location", "sasl.username", "sasl.oauthbearer.client.id",
            "sasl.oauthbearer.token.endpoint.url", "API_KEYS_FILE", "KAFKA_SSL_KEY_LOCATION", "HTTP_PORT", "KAFKA_BROKERS",
            "sasl.kerberos.keytab", "MONKEY",
        ] {
            XCTAssertFalse(EnvironmentReader.isSecret(plain), plain)
        }
    }

    func testStartupLineShowsEveryOptionWithSecretsMasked() throws {
        let env = EnvironmentReader([
            "KAFKA_SASL_PASSWORD": "s3cret",
            "KAFKA_SSL_KEY_LOCATION": "/keys/client.key",
            "KAFKA_SSL_KEY_PASSWORD": "pem-pass",
            "HTTP_PORT": "9000",
            "SERVICE_TOKEN": "tok",
        ])
        _ = try ExampleConfig(env)
        _ = env.string("SERVICE_TOKEN", default: "", doc: "Token for the upstream.")
        _ = env.string("PUBLIC_SETTING", default: "", doc: "Not a secret.", secret: false)
        let collector = LineCollector()
        Logger(service: "ingestor", sink: collector.sink).notice("starting", env.startupMetadata())

        let text = String(decoding: collector.rawLines[0], as: UTF8.self)
        XCTAssertFalse(text.contains("s3cret"), text)
        XCTAssertFalse(text.contains("pem-pass"), text)
        XCTAssertFalse(text.contains("\"tok\""), text)
        let config = try XCTUnwrap(collector.objects().first?["config"] as? [String: String])
        XCTAssertEqual(config["KAFKA_SASL_PASSWORD"], "****")
        XCTAssertEqual(config["KAFKA_SSL_KEY_PASSWORD"], "****")
        XCTAssertEqual(config["SERVICE_TOKEN"], "****")
        XCTAssertEqual(config["KAFKA_SSL_KEY_LOCATION"], "/keys/client.key")
        XCTAssertEqual(config["HTTP_PORT"], "9000")
        XCTAssertEqual(config["POLL_TIMEOUT"], "500ms", "defaults are shown too")
        XCTAssertEqual(config["KAFKA_BROKERS"], "localhost:9092")
        XCTAssertEqual(config["API_KEYS_FILE"], "")
        XCTAssertEqual(config["PUBLIC_SETTING"], "")
    }

    func testOptionsAreRecordedOnceInReadOrderAndDocumented() throws {
        let env = EnvironmentReader([:])
        _ = try ExampleConfig(env)
        _ = try env.int("HTTP_PORT", default: 8080, range: 1...65535, doc: "Port of the health and metrics server.")
        let names = env.options.map(\.name)
        XCTAssertEqual(names, ["HTTP_PORT", "LOG_LEVEL", "POLL_TIMEOUT", "TOPICS", "DRY_RUN", "SAMPLE_RATE", "API_KEYS_FILE", "KAFKA_BROKERS"])
        let option = try XCTUnwrap(env.options.first)
        XCTAssertEqual(option.defaultValue, "8080")
        XCTAssertEqual(option.doc, "Port of the health and metrics server.")
        XCTAssertFalse(option.isSecret)

        let table = env.markdownTable()
        let rows = table.split(separator: "\n")
        XCTAssertEqual(rows.first, "| Variable | Default | Accepted values | Description |")
        XCTAssertEqual(rows.count, 2 + names.count + 1, "header, separator, one row per option, KAFKA_*")
        XCTAssertTrue(table.contains("| `HTTP_PORT` | `8080` | an integer in 1...65535 | Port of the health and metrics server. |"), table)
        XCTAssertTrue(table.contains("| `API_KEYS_FILE` | (none) |"), table)
        XCTAssertTrue(table.contains("| `KAFKA_*` |"), table)
        for row in rows {
            XCTAssertEqual(row.filter { $0 == "|" }.count - row.components(separatedBy: "\\|").count + 1, 5, "five unescaped pipes: \(row)")
        }
        XCTAssertTrue(env.helpText().contains("HTTP_PORT  (an integer in 1...65535; default: 8080)"), env.helpText())
    }

    func testPassthroughSecretsAreMaskedButNotDocumented() throws {
        let env = EnvironmentReader(["KAFKA_SASL_PASSWORD": "x", "KAFKA_SASL_USERNAME": "u"])
        _ = try env.kafkaProperties()
        let option = try XCTUnwrap(env.options.first { $0.name == "KAFKA_SASL_PASSWORD" })
        XCTAssertTrue(option.isSecret)
        XCTAssertEqual(option.displayValue, "****")
        XCTAssertEqual(env.options.first { $0.name == "KAFKA_SASL_USERNAME" }?.displayValue, "u")
        XCTAssertFalse(env.markdownTable().contains("| `KAFKA_SASL_PASSWORD` |"), "deployment-specific pass-through is not in the docs")
    }
}

final class AllocatorTuningTests: XCTestCase {
    /// Services turn glibc's fast bins off unless told otherwise; a size glibc cannot take is a
    /// configuration error naming the variable, not a silent no-op.
    func testFastBinSizeIsConfigurableAndChecked() throws {
        let defaults = EnvironmentReader([:])
        try ServiceRuntime.tuneAllocator(defaults)
        XCTAssertEqual(defaults.options.first { $0.name == "MALLOC_FAST_BIN_BYTES" }?.defaultValue, "0")
        XCTAssertThrowsError(try ServiceRuntime.tuneAllocator(EnvironmentReader(["MALLOC_FAST_BIN_BYTES": "4096"]))) { error in
            XCTAssertTrue("\(error)".contains("MALLOC_FAST_BIN_BYTES"), "\(error)")
        }
        try ServiceRuntime.tuneAllocator(EnvironmentReader(["MALLOC_FAST_BIN_BYTES": "128"]))  // glibc's default, back for the other tests
    }
}
