import Foundation

/// A small command-line parser: `--name value`, `--flag`, repeated options, positionals.
struct Arguments {
    private(set) var positionals: [String] = []
    private var options: [String: [String]] = [:]
    private var flags: Set<String> = []

    /// Options that take no value.
    static let flagNames: Set<String> = ["from-beginning", "format-assertion", "help", "quiet", "json", "no-fleet", "dry-run"]

    init(_ args: some Sequence<String>) throws {
        var iterator = args.makeIterator()
        while let arg = iterator.next() {
            if arg.hasPrefix("--") {
                var name = String(arg.dropFirst(2))
                if let eq = name.firstIndex(of: "=") {
                    options[String(name[..<eq]), default: []].append(String(name[name.index(after: eq)...]))
                    continue
                }
                if Self.flagNames.contains(name) {
                    flags.insert(name)
                    continue
                }
                guard let value = iterator.next() else { throw UsageError("option --\(name) needs a value") }
                if name == "" { name = value }
                options[name, default: []].append(value)
            } else {
                positionals.append(arg)
            }
        }
    }

    func string(_ name: String) -> String? { options[name]?.last }
    func strings(_ name: String) -> [String] { options[name] ?? [] }
    func flag(_ name: String) -> Bool { flags.contains(name) }

    func int(_ name: String, default value: Int) throws -> Int {
        guard let text = string(name) else { return value }
        guard let v = Int(text) else { throw UsageError("--\(name) expects a whole number, got '\(text)'") }
        return v
    }

    func double(_ name: String, default value: Double) throws -> Double {
        guard let text = string(name) else { return value }
        guard let v = Double(text) else { throw UsageError("--\(name) expects a number, got '\(text)'") }
        return v
    }

    /// The brokers a command was checked to reach (`main` sets it for broker commands).
    var resolvedBrokers: String?

    /// `resolvedBrokers`, else `--brokers`, else `KAFKA_BROKERS`, else the address a running
    /// `twinctl up` recorded, else the local default (see `BrokerAddress`).
    var brokers: String { resolvedBrokers ?? BrokerAddress(self).servers }
}

/// A mistake in how twinctl was called: printed with the usage, exit code 2.
struct UsageError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}

/// Writes a line to standard error.
func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// Writes a line to standard output and flushes, so a parent process reading a pipe sees it now.
func printNow(_ text: String) {
    print(text)
    fflush(nil)  // all output streams; avoids touching the global `stdout`
}
