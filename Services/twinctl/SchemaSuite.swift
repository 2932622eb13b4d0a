import Foundation
import JSONSchema

/// `twinctl schema-suite DIR [--format-assertion] [--remotes DIR]`: runs every file of a folder in
/// the JSON Schema Test Suite's format; one line per file, then `N passed, N failed`. Exits 1 when
/// any test failed.
func runSchemaSuite(_ args: Arguments) throws {
    guard let path = args.positionals.dropFirst().first else { throw UsageError("schema-suite needs a folder") }
    let directory = URL(fileURLWithPath: path)
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory), isDirectory.boolValue else {
        throw UsageError("\(path) is not a folder")
    }
    // `remotes/` beside the folder (or above it, as in the suite's own layout) unless given.
    var remotes = args.string("remotes").map { URL(fileURLWithPath: $0) }
    if remotes == nil {
        var dir = directory
        while dir.path != "/" {
            let candidate = dir.appendingPathComponent("remotes")
            if FileManager.default.fileExists(atPath: candidate.path) { remotes = candidate; break }
            dir = dir.deletingLastPathComponent()
        }
    }
    let results = SchemaTestSuite.runDirectory(directory, remotes: remotes, formatAssertion: args.flag("format-assertion") ? true : nil)
    var passed = 0
    var failed = 0
    for result in results {
        passed += result.passed
        failed += result.failed
        let name = result.file.path.hasPrefix(directory.path) ? String(result.file.path.dropFirst(directory.path.count + 1)) : result.file.path
        printNow("\(name): \(result.passed) passed, \(result.failed) failed")
        for failure in result.failures.prefix(args.flag("quiet") ? 0 : 5) { printNow("    \(failure)") }
    }
    printNow("\(passed) passed, \(failed) failed")
    if failed > 0 { exit(1) }
}
