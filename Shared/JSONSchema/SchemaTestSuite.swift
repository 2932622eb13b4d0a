import Foundation
import JSON

/// Runs files of the official JSON Schema Test Suite (used by the tests and by
/// `twinctl schema-suite`). Each file is an array of `{description, schema, tests: [{description,
/// data, valid}]}`; a test passes when validation agrees with `valid`. A schema that fails to
/// compile fails all its tests (the error is in the failure text).
public enum SchemaTestSuite {
    /// Outcome of one suite file.
    public struct FileResult: Sendable {
        /// The file that was run.
        public var file: URL
        /// Tests whose outcome matched `valid`.
        public var passed: Int
        /// Tests that did not (including those of schemas that failed to compile).
        public var failed: Int
        /// One line per failure: `group / test: expected valid, got invalid (first error)`.
        public var failures: [String]
    }

    /// A registry for the suite: `http://localhost:1234/` served from `remotes`, and the 2020-12
    /// meta-schemas from `metaschemas` (when given).
    public static func registry(remotes: URL?, metaschemas: URL?) -> SchemaRegistry {
        var registry = SchemaRegistry()
        if let remotes { registry.mapPrefix("http://localhost:1234/", toDirectory: remotes.path) }
        if let metaschemas { registry.mapMetaschemas(directory: metaschemas.path) }
        return registry
    }

    /// Finds the meta-schema folder next to the suite in the shared test-data layout
    /// (`testdata/json-schema-test-suite/remotes` → `testdata/json-schema-meta/draft2020-12`).
    public static func defaultMetaschemas(remotes: URL?) -> URL? {
        guard let remotes else { return nil }
        let candidate = remotes.deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("json-schema-meta/draft2020-12")
        return FileManager.default.fileExists(atPath: candidate.appendingPathComponent("schema.json").path) ? candidate : nil
    }

    /// Runs one file. `formatAssertion` should be on for `optional/format/`.
    public static func run(file: URL, remotes: URL?, formatAssertion: Bool, metaschemas: URL? = nil) -> FileResult {
        let registry = registry(remotes: remotes, metaschemas: metaschemas ?? defaultMetaschemas(remotes: remotes))
        return run(file: file, registry: registry, formatAssertion: formatAssertion)
    }

    /// Runs one file with an explicit registry.
    public static func run(file: URL, registry: SchemaRegistry, formatAssertion: Bool) -> FileResult {
        var result = FileResult(file: file, passed: 0, failed: 0, failures: [])
        let groups: [JSON]
        do {
            guard let data = FileManager.default.contents(atPath: file.path) else {
                throw JSONSchemaError(code: .loadFailed, location: file.path, message: "cannot read file")
            }
            guard case .array(let g) = try JSON(parsing: data) else {
                throw JSONSchemaError(code: .loadFailed, location: file.path, message: "suite file is not an array")
            }
            groups = g
        } catch {
            result.failed = 1
            result.failures = ["\(file.lastPathComponent): \(error)"]
            return result
        }
        let options = JSONSchemaOptions(formatAssertion: formatAssertion, registry: registry)
        for group in groups {
            let groupName = group["description"]?.stringValue ?? "?"
            let tests = group["tests"]?.arrayValue ?? []
            let compiled: CompiledSchema
            do {
                compiled = try JSONSchema.compile(group["schema"] ?? .bool(true), options: options)
            } catch {
                result.failed += tests.count
                result.failures.append("\(groupName): schema does not compile: \(error)")
                continue
            }
            for test in tests {
                let expected = test["valid"]?.boolValue ?? true
                let data = test["data"] ?? .null
                let outcome = compiled.validate(data)
                let fast = compiled.isValid(data)
                if outcome.isValid == expected && fast == expected {
                    result.passed += 1
                } else {
                    result.failed += 1
                    let detail = outcome.errors.first.map { " (\($0))" } ?? ""
                    result.failures.append("\(groupName) / \(test["description"]?.stringValue ?? "?"): expected \(expected ? "valid" : "invalid"), got \(outcome.isValid ? "valid" : "invalid")\(fast != outcome.isValid ? " [isValid disagrees]" : "")\(detail)")
                }
            }
        }
        return result
    }

    /// Runs every `.json` file under `directory` (recursively, sorted by path). Files under a folder
    /// named `format` get format assertion when `formatAssertion` is nil.
    public static func runDirectory(_ directory: URL, remotes: URL?, formatAssertion: Bool?, metaschemas: URL? = nil) -> [FileResult] {
        let registry = registry(remotes: remotes, metaschemas: metaschemas ?? defaultMetaschemas(remotes: remotes))
        var files: [URL] = []
        if let e = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: nil) {
            for case let url as URL in e where url.pathExtension == "json" { files.append(url) }
        }
        files.sort { $0.path < $1.path }
        return files.map { file in
            let assert = formatAssertion ?? file.pathComponents.contains("format")
            return run(file: file, registry: registry, formatAssertion: assert)
        }
    }
}
