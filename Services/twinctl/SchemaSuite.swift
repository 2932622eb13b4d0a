import Foundation
import JSONSchema

/// `twinctl schema-suite DIR [--format-assertion] [--remotes DIR]`: runs JSON Schema Test Suite
/// files; one line per file, then `N passed, N failed`.
func runSchemaSuite(_ args: Arguments) throws {
    guard args.positionals.count > 1 else { throw UsageError("schema-suite needs a folder") }
    throw UsageError("schema-suite is not wired yet")
}
