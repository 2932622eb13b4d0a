import Foundation
import Synchronization

// Typed configuration from environment variables, read once at start-up. Every option read
// is recorded so the service can print them all (secrets masked) in its first log line and
// the README's option tables can be generated from the same code that reads them.

/// A configuration value the service cannot start with. The service prints `description`
/// and exits non-zero; the message names the variable, the value and what was expected.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What is wrong with the variable.
    public enum Code: String, Sendable {
        /// The value does not parse as the expected type.
        case invalidValue
        /// The value parses but lies outside the accepted range.
        case outOfRange
        /// A required variable is unset or empty.
        case missing
        /// Two variables set the same thing to different values.
        case conflict
    }

    /// What is wrong.
    public let code: Code
    /// The environment variable at fault.
    public let variable: String
    /// The value found, already masked (`****`) when the variable holds a secret.
    public let value: String?
    /// What would have been accepted, in words: "an integer in 1...65535".
    public let expected: String

    /// Creates an error; `value` should already be masked if secret.
    public init(code: Code, variable: String, value: String?, expected: String) {
        self.code = code
        self.variable = variable
        self.value = value
        self.expected = expected
    }

    /// One line for the operator, e.g. `invalid configuration: HTTP_PORT="http" is not
    /// valid: expected an integer in 1...65535`.
    public var description: String {
        switch code {
        case .missing:
            return "invalid configuration: \(variable) is required but not set: expected \(expected)"
        case .conflict:
            return "invalid configuration: \(variable)=\"\(value ?? "")\" conflicts with \(expected)"
        case .invalidValue, .outOfRange:
            return "invalid configuration: \(variable)=\"\(value ?? "")\" is not valid: expected \(expected)"
        }
    }
}

/// One option a service read, kept for the start-up log line and the generated docs.
public struct ConfigurationOption: Sendable, Equatable {
    /// The environment variable.
    public let name: String
    /// The value found (trimmed), or nil when unset or empty.
    public let value: String?
    /// The default as text, or nil when the option is required or has no default.
    public let defaultValue: String?
    /// The accepted values in words: "an integer in 1...65535".
    public let expected: String
    /// One line saying what the option does.
    public let doc: String
    /// Whether the value is masked in logs.
    public let isSecret: Bool

    /// Creates an option record.
    public init(name: String, value: String?, defaultValue: String?, expected: String, doc: String, isSecret: Bool) {
        self.name = name
        self.value = value
        self.defaultValue = defaultValue
        self.expected = expected
        self.doc = doc
        self.isSecret = isSecret
    }

    /// The value in effect: the one set, else the default.
    public var effectiveValue: String? { value ?? defaultValue }

    /// What the start-up line shows: the effective value, `****` for a non-empty secret.
    public var displayValue: String {
        let shown = effectiveValue ?? ""
        return isSecret && !shown.isEmpty ? EnvironmentReader.mask : shown
    }
}

/// Reads typed options from an environment once, at start-up, recording each one.
///
/// Values are trimmed of surrounding whitespace, and an empty value counts as unset (so
/// `FOO=` in a compose file means "use the default"). Typed getters throw a
/// `ConfigurationError` for a value that does not parse. Reading the same variable twice
/// records it once. The usual shape is a `Sendable` config struct with an
/// `init(_ env: EnvironmentReader) throws`; built over an empty environment the same code
/// yields the option list for `--help` and the README (`markdownTable()`).
public final class EnvironmentReader: Sendable {
    /// What secrets are replaced with in logs and error messages.
    public static let mask = "****"

    /// The variable holding the Kafka bootstrap servers.
    public static let kafkaBrokersVariable = "KAFKA_BROKERS"

    /// The variables being read.
    public let environment: [String: String]

    private struct Record {
        var options: [ConfigurationOption] = []
        var index: [String: Int] = [:]
        var readsKafkaPassthrough = false
        /// Pass-through `KAFKA_*` variables: they depend on the deployment, so docs skip them.
        var passthroughNames: Set<String> = []
    }

    private let record = Mutex(Record())

    /// Creates a reader over `environment`, by default the process's own.
    public init(_ environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.environment = environment
    }

    /// Every option read so far, in the order first read.
    public var options: [ConfigurationOption] {
        record.withLock { $0.options }
    }

    // MARK: Getters

    /// A string option.
    public func string(_ name: String, default defaultValue: String, doc: String, secret: Bool? = nil) -> String {
        let value = lookup(name)
        remember(name, value, defaultValue, "text", doc, secret)
        return value ?? defaultValue
    }

    /// A string option with no default: nil when unset.
    public func optionalString(_ name: String, doc: String, secret: Bool? = nil) -> String? {
        let value = lookup(name)
        remember(name, value, nil, "text", doc, secret)
        return value
    }

    /// A string option that must be set.
    public func requiredString(_ name: String, doc: String, secret: Bool? = nil) throws -> String {
        let value = lookup(name)
        remember(name, value, nil, "text (required)", doc, secret)
        guard let value else { throw ConfigurationError(code: .missing, variable: name, value: nil, expected: "text") }
        return value
    }

    /// An integer option, optionally limited to `range`.
    public func int(_ name: String, default defaultValue: Int, range: ClosedRange<Int>? = nil, doc: String) throws -> Int {
        let expected = range.map { "an integer in \($0.lowerBound)...\($0.upperBound)" } ?? "an integer"
        let value = lookup(name)
        let secret = remember(name, value, String(defaultValue), expected, doc, nil)
        guard let value else { return defaultValue }
        guard let parsed = Int(value) else { throw invalid(.invalidValue, name, value, expected, secret) }
        if let range, !range.contains(parsed) { throw invalid(.outOfRange, name, value, expected, secret) }
        return parsed
    }

    /// A finite floating-point option, optionally limited to `range`.
    public func double(_ name: String, default defaultValue: Double, range: ClosedRange<Double>? = nil, doc: String) throws -> Double {
        let expected = range.map { "a number in \($0.lowerBound)...\($0.upperBound)" } ?? "a number"
        let value = lookup(name)
        let secret = remember(name, value, String(defaultValue), expected, doc, nil)
        guard let value else { return defaultValue }
        guard let parsed = Double(value), parsed.isFinite else { throw invalid(.invalidValue, name, value, expected, secret) }
        if let range, !range.contains(parsed) { throw invalid(.outOfRange, name, value, expected, secret) }
        return parsed
    }

    /// A boolean option: `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`, any case.
    public func bool(_ name: String, default defaultValue: Bool, doc: String) throws -> Bool {
        let expected = "true/false, 1/0, yes/no or on/off"
        let value = lookup(name)
        let secret = remember(name, value, String(defaultValue), expected, doc, nil)
        guard let value else { return defaultValue }
        switch value.lowercased() {
        case "true", "1", "yes", "on": return true
        case "false", "0", "no", "off": return false
        default: throw invalid(.invalidValue, name, value, expected, secret)
        }
    }

    /// A duration option: `500ms`, `5s`, `2m`, `1h`, `1m30s`, or plain (fractional) seconds;
    /// see `parseDuration(_:)`. Optionally limited to `range`.
    public func duration(_ name: String, default defaultValue: Duration, range: ClosedRange<Duration>? = nil, doc: String) throws -> Duration {
        var expected = "a duration such as 500ms, 5s, 2m or plain seconds"
        if let range {
            expected += " in \(EnvironmentReader.formatDuration(range.lowerBound))...\(EnvironmentReader.formatDuration(range.upperBound))"
        }
        let value = lookup(name)
        let secret = remember(name, value, EnvironmentReader.formatDuration(defaultValue), expected, doc, nil)
        guard let value else { return defaultValue }
        guard let parsed = EnvironmentReader.parseDuration(value) else { throw invalid(.invalidValue, name, value, expected, secret) }
        if let range, !range.contains(parsed) { throw invalid(.outOfRange, name, value, expected, secret) }
        return parsed
    }

    /// A comma-separated list; items are trimmed and empty items dropped.
    public func list(_ name: String, default defaultValue: [String], doc: String, secret: Bool? = nil) -> [String] {
        let value = lookup(name)
        remember(name, value, defaultValue.joined(separator: ","), "a comma-separated list", doc, secret)
        guard let value else { return defaultValue }
        return value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// One of a fixed set of strings, matched case-insensitively; returns the spelling in `choices`.
    public func choice(_ name: String, default defaultValue: String, among choices: [String], doc: String) throws -> String {
        let expected = "one of " + choices.joined(separator: ", ")
        let value = lookup(name)
        let secret = remember(name, value, defaultValue, expected, doc, nil)
        guard let value else { return defaultValue }
        guard let match = choices.first(where: { $0.lowercased() == value.lowercased() }) else {
            throw invalid(.invalidValue, name, value, expected, secret)
        }
        return match
    }

    /// A case of a string-backed enum, matched case-insensitively against its raw values.
    public func choice<T: RawRepresentable & CaseIterable>(_ name: String, default defaultValue: T, doc: String) throws -> T
        where T.RawValue == String {
        let match = try choice(name, default: defaultValue.rawValue, among: T.allCases.map(\.rawValue), doc: doc)
        return T(rawValue: match) ?? defaultValue
    }

    /// The log threshold, by default from `LOG_LEVEL`; accepts the level names and the
    /// aliases `LogLevel(parsing:)` knows (`warn`, `err`, `fatal`).
    public func logLevel(_ name: String = "LOG_LEVEL", default defaultValue: LogLevel = .info, doc: String = "Lowest level written to the log.") throws -> LogLevel {
        let expected = "one of " + LogLevel.allCases.map(\.rawValue).joined(separator: ", ")
        let value = lookup(name)
        let secret = remember(name, value, defaultValue.rawValue, expected, doc, nil)
        guard let value else { return defaultValue }
        guard let level = LogLevel(parsing: value) else { throw invalid(.invalidValue, name, value, expected, secret) }
        return level
    }

    // MARK: Kafka

    /// librdkafka properties from the environment:
    ///
    /// - `KAFKA_BROKERS` (default `defaultBrokers`) becomes `bootstrap.servers`;
    /// - every other `KAFKA_*` variable, except those in `known` and those already read
    ///   through this reader (the service's own `KAFKA_GROUP_ID`, topic names…), passes
    ///   through: drop `KAFKA_`, lowercase, `_` becomes `.`, and a double underscore `__`
    ///   becomes a literal `_` for the few property names that contain one
    ///   (`KAFKA_SASL_PASSWORD` → `sasl.password`, `KAFKA_FOO__BAR_BAZ` → `foo_bar.baz`).
    ///
    /// Each pass-through variable is recorded as an option (secrets masked). A name that maps
    /// to an empty segment (`KAFKA__X`, `KAFKA_X_`) throws, as does `KAFKA_BOOTSTRAP_SERVERS`
    /// disagreeing with `KAFKA_BROKERS`. librdkafka itself rejects unknown property names
    /// when the client is configured, so typos surface at start-up either way.
    public func kafkaProperties(defaultBrokers: String = "localhost:9092", known: Set<String> = []) throws -> [String: String] {
        let brokers = string(
            EnvironmentReader.kafkaBrokersVariable, default: defaultBrokers,
            doc: "Kafka bootstrap servers, comma-separated host:port (librdkafka `bootstrap.servers`).")
        var properties = ["bootstrap.servers": brokers]
        let alreadyRead = record.withLock { record in
            record.readsKafkaPassthrough = true
            return Set(record.index.keys)
        }
        let skip = known.union(alreadyRead)
        // Sorted so the recorded options and any error are deterministic.
        for name in environment.keys.sorted() where name.hasPrefix("KAFKA_") && !skip.contains(name) {
            guard let value = lookup(name) else { continue }
            guard let property = EnvironmentReader.kafkaPropertyName(forVariable: name) else {
                throw invalid(.invalidValue, name, value,
                              "a name KAFKA_<PROPERTY> whose segments are non-empty (`_` for `.`, `__` for `_`)",
                              EnvironmentReader.isSecret(name))
            }
            let secret = EnvironmentReader.isSecret(name) || EnvironmentReader.isSecret(property)
            remember(name, value, nil, "librdkafka property `\(property)`", "Passed to librdkafka as `\(property)`.", secret)
            record.withLock { _ = $0.passthroughNames.insert(name) }
            if property == "bootstrap.servers", lookup(EnvironmentReader.kafkaBrokersVariable) != nil, value != brokers {
                throw ConfigurationError(code: .conflict, variable: name, value: value, expected: EnvironmentReader.kafkaBrokersVariable)
            }
            properties[property] = value
        }
        return properties
    }

    /// The `KAFKA_*` variable that sets librdkafka property `name` (the inverse of
    /// `kafkaPropertyName(forVariable:)`): `fetch.wait.max.ms` → `KAFKA_FETCH_WAIT_MAX_MS`.
    public static func kafkaVariable(forProperty name: String) -> String {
        "KAFKA_" + name.replacingOccurrences(of: "_", with: "__").replacingOccurrences(of: ".", with: "_").uppercased()
    }

    /// `environment` with the `KAFKA_*` variable of each of `properties` added where it is not set
    /// already (how `twinctl up` hands the embedded broker's client settings to its services).
    public static func addingKafkaDefaults(_ properties: [String: String], to environment: [String: String]) -> [String: String] {
        var result = environment
        for (property, value) in properties {
            let name = kafkaVariable(forProperty: property)
            result[name] = result[name] ?? value
        }
        return result
    }

    /// The librdkafka property a `KAFKA_*` variable maps to, or nil when it is not a
    /// `KAFKA_*` name or would produce an empty segment. `_` → `.`, `__` → `_`, lowercased.
    public static func kafkaPropertyName(forVariable name: String) -> String? {
        guard name.hasPrefix("KAFKA_") else { return nil }
        let rest = Array(name.dropFirst("KAFKA_".count))
        var property = ""
        var index = 0
        while index < rest.count {
            if rest[index] == "_" {
                if index + 1 < rest.count, rest[index + 1] == "_" {
                    property.append("_")
                    index += 2
                    continue
                }
                property.append(".")
            } else {
                property += rest[index].lowercased()
            }
            index += 1
        }
        guard !property.isEmpty, !property.hasPrefix("."), !property.hasSuffix("."), !property.contains("..") else { return nil }
        return property
    }

    // MARK: Secrets

    /// Whether an option name (environment variable or librdkafka property) holds a secret.
    ///
    /// The name is split into words at `_`, `.` and `-`. It is a secret when a word is one of
    /// PASSWORD, PASSWD, PASSPHRASE, SECRET, TOKEN, CREDENTIALS, CREDENTIAL, KEY, APIKEY,
    /// PRIVATE, or the name is `sasl.oauthbearer.config` (it can embed a client secret),
    /// unless its last word says the value only points at the secret: LOCATION, FILE, PATH,
    /// DIR, URL, ENDPOINT. So `ssl.key.password`, `ssl.key.pem`, `sasl.password` and
    /// `sasl.oauthbearer.client.secret` are masked; `ssl.key.location`,
    /// `sasl.oauthbearer.token.endpoint.url`, `ssl.keystore.location` and `API_KEYS_FILE`
    /// are not. Getters take `secret:` to override the rule for one option.
    public static func isSecret(_ name: String) -> Bool {
        let words = name.uppercased().split(whereSeparator: { $0 == "_" || $0 == "." || $0 == "-" })
        guard let last = words.last else { return false }
        if ["LOCATION", "FILE", "PATH", "DIR", "URL", "ENDPOINT"].contains(last) { return false }
        if name.lowercased() == "sasl.oauthbearer.config" || name.uppercased() == "KAFKA_SASL_OAUTHBEARER_CONFIG" { return true }
        let secretWords: Set<Substring> = [
            "PASSWORD", "PASSWD", "PASSPHRASE", "SECRET", "TOKEN", "CREDENTIALS", "CREDENTIAL", "KEY", "APIKEY", "PRIVATE",
        ]
        return words.contains { secretWords.contains($0) }
    }

    // MARK: Output

    /// The options for the start-up log line: `["config": {NAME: value, …}]`, secrets masked.
    public func startupMetadata() -> LogMetadata {
        var fields: [String: LogValue] = [:]
        for option in options {
            fields[option.name] = .string(option.displayValue)
        }
        return ["config": .object(fields)]
    }

    /// A markdown table of every option read (variable, default, accepted values,
    /// description) for the README, plus a `KAFKA_*` row when Kafka pass-through was read.
    public func markdownTable() -> String {
        let (all, passthrough, skipped) = record.withLock { ($0.options, $0.readsKafkaPassthrough, $0.passthroughNames) }
        var lines = ["| Variable | Default | Accepted values | Description |", "|---|---|---|---|"]
        func cell(_ text: String) -> String {
            text.replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "\n", with: " ")
        }
        for option in all where !skipped.contains(option.name) {
            var defaultText = option.defaultValue.map { $0.isEmpty ? "(empty)" : "`\($0)`" } ?? "(none)"
            if option.isSecret, let value = option.defaultValue, !value.isEmpty { defaultText = EnvironmentReader.mask }
            lines.append("| `\(option.name)` | \(cell(defaultText)) | \(cell(option.expected)) | \(cell(option.doc)) |")
        }
        if passthrough {
            lines.append("| `KAFKA_*` | (none) | any librdkafka property | Passed to librdkafka: drop `KAFKA_`, lowercase, `_` → `.`, `__` → `_` (`KAFKA_SASL_PASSWORD` → `sasl.password`). Secrets are masked in logs. |")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Plain-text option documentation for `--help`: one block per option.
    public func helpText() -> String {
        let (all, passthrough, skipped) = record.withLock { ($0.options, $0.readsKafkaPassthrough, $0.passthroughNames) }
        var text = ""
        for option in all where !skipped.contains(option.name) {
            let defaultText = option.defaultValue.map { option.isSecret && !$0.isEmpty ? EnvironmentReader.mask : $0 } ?? "none"
            text += "  \(option.name)  (\(option.expected); default: \(defaultText.isEmpty ? "empty" : defaultText))\n"
            text += "      \(option.doc)\n"
        }
        if passthrough {
            text += "  KAFKA_*  any other KAFKA_ variable is passed to librdkafka (_ → ., __ → _, lowercased)\n"
        }
        return text
    }

    // MARK: Durations

    /// Parses `500ms`, `5s`, `2m`, `1h`, `250us`, `10ns`, sequences such as `1m30s`, and
    /// plain non-negative seconds (`30`, `0.5`). Nil for anything else, including negatives.
    public static func parseDuration(_ text: String) -> Duration? {
        let input = text.trimmingCharacters(in: .whitespaces).lowercased()
        if let seconds = Double(input) {
            guard seconds.isFinite, seconds >= 0, seconds < 1e12 else { return nil }
            return .seconds(seconds)
        }
        let units: [(suffix: String, seconds: Double)] = [
            ("ns", 1e-9), ("us", 1e-6), ("µs", 1e-6), ("ms", 1e-3), ("s", 1), ("m", 60), ("h", 3600),
        ]
        var rest = Substring(input)
        var total: Duration = .zero
        guard !rest.isEmpty else { return nil }
        while !rest.isEmpty {
            let number = rest.prefix { $0.isNumber || $0 == "." }
            guard !number.isEmpty, let amount = Double(number), amount.isFinite else { return nil }
            rest = rest.dropFirst(number.count)
            let unitText = rest.prefix { $0.isLetter }
            guard let unit = units.first(where: { $0.suffix == unitText }) else { return nil }
            rest = rest.dropFirst(unitText.count)
            let seconds = amount * unit.seconds
            guard seconds < 1e12 else { return nil }
            // Whole nanoseconds avoid "0.1s" becoming 99999999 ns through binary rounding.
            total += .nanoseconds(Int64((seconds * 1e9).rounded()))
        }
        return total
    }

    /// The shortest exact text for a duration in the units `parseDuration` reads: `5s`,
    /// `2m`, `1h`, `500ms`, `250us`, `10ns`.
    public static func formatDuration(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let nanoseconds = seconds * 1_000_000_000 + attoseconds / 1_000_000_000
        if nanoseconds == 0 { return "0s" }
        if nanoseconds % 1_000_000_000 == 0 {
            let s = nanoseconds / 1_000_000_000
            if s % 3600 == 0 { return "\(s / 3600)h" }
            if s % 60 == 0 { return "\(s / 60)m" }
            return "\(s)s"
        }
        if nanoseconds % 1_000_000 == 0 { return "\(nanoseconds / 1_000_000)ms" }
        if nanoseconds % 1_000 == 0 { return "\(nanoseconds / 1_000)us" }
        return "\(nanoseconds)ns"
    }

    // MARK: Internals

    /// The trimmed value, nil when unset or empty.
    private func lookup(_ name: String) -> String? {
        guard let raw = environment[name] else { return nil }
        let value = raw.trimmingCharacters(in: .whitespacesAndNewlines)
        return value.isEmpty ? nil : value
    }

    /// Records an option (replacing an earlier read of the same name) and returns whether it
    /// is secret.
    @discardableResult
    private func remember(_ name: String, _ value: String?, _ defaultValue: String?, _ expected: String, _ doc: String, _ secret: Bool?) -> Bool {
        let isSecret = secret ?? EnvironmentReader.isSecret(name)
        let option = ConfigurationOption(name: name, value: value, defaultValue: defaultValue, expected: expected, doc: doc, isSecret: isSecret)
        record.withLock { record in
            if let index = record.index[name] {
                record.options[index] = option
            } else {
                record.index[name] = record.options.count
                record.options.append(option)
            }
        }
        return isSecret
    }

    private func invalid(_ code: ConfigurationError.Code, _ name: String, _ value: String, _ expected: String, _ secret: Bool) -> ConfigurationError {
        ConfigurationError(code: code, variable: name, value: secret ? EnvironmentReader.mask : value, expected: expected)
    }
}
