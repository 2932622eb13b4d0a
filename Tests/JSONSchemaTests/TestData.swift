import Foundation

/// Locates `../shared/testdata` relative to the package root. The package root is found by
/// walking up from this file to the first directory holding `Package.swift`; that works from
/// /work/main and from a dev package whose test folder is a symlink into it.
enum TestData {
    static let root: URL? = {
        var candidates: [URL] = []
        var dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while dir.path != "/" {
            if FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path) {
                candidates.append(dir.appendingPathComponent("../shared/testdata").standardizedFileURL)
                candidates.append(dir.appendingPathComponent("../../shared/testdata").standardizedFileURL)
            }
            dir = dir.deletingLastPathComponent()
        }
        candidates.append(URL(fileURLWithPath: "/work/main/../shared/testdata").standardizedFileURL)
        return candidates.first { FileManager.default.fileExists(atPath: $0.appendingPathComponent("json-schema-test-suite").path) }
    }()

    static var suite: URL? { root?.appendingPathComponent("json-schema-test-suite/tests/draft2020-12") }
    static var remotes: URL? { root?.appendingPathComponent("json-schema-test-suite/remotes") }
    static var metaschemas: URL? { root?.appendingPathComponent("json-schema-meta/draft2020-12") }
}
