import Foundation
import ServiceKit
import TestSupport
import XCTest

/// `twinctl keys`: the built binary writes a keys file the services' `APIKeys` accept.
final class KeysCommandTests: XCTestCase {
    private func run(_ arguments: [String], environment: [String: String] = [:]) async throws -> (status: Int32?, output: [String]) {
        let child = try ChildProcess("twinctl", arguments, environment: environment)
        let status = await child.waitForExit(timeout: .seconds(30))
        // The reader may still be draining the pipe just after exit: wait for its end.
        let drained = await child.waitForOutputEnd()
        XCTAssertTrue(drained, "twinctl's output never reached its end")
        return (status, child.output)
    }

    func testKeysAddPrintsAKeyOnceThatAuthenticatesAgainstTheWrittenFile() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("twinctl-keys-\(UUID().uuidString.prefix(8))")
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("keys.json").path

        let added = try await run(["keys", "add", "--tenant", "acme", "--scopes", "ingest,read", "--file", path])
        XCTAssertEqual(added.status, 0)
        XCTAssertEqual(added.output.count, 1, "stdout is the key and nothing else: \(added.output)")
        let key = try XCTUnwrap(added.output.first)
        let keys = try APIKeys.load(path: path)
        guard case .authenticated(let principal) = keys.authenticate(["Authorization": "Bearer \(key)"], requiring: .ingest) else {
            return XCTFail("the printed key does not authenticate against \(path)")
        }
        XCTAssertEqual(principal.tenant, "acme")
        XCTAssertEqual(principal.scopes, [.ingest, .read])
        XCTAssertFalse(try String(contentsOfFile: path, encoding: .utf8).contains(key), "only the hash is stored")

        // $API_KEYS_FILE is the default file; a second key is appended, the first still works.
        let second = try await run(["keys", "add", "--tenant", "beta", "--scopes", "read"], environment: ["API_KEYS_FILE": path])
        XCTAssertEqual(second.status, 0)
        let both = try APIKeys.load(path: path)
        XCTAssertEqual(both.entries.map(\.tenant), ["acme", "beta"])
        guard case .authenticated = both.authenticate(key: key) else { return XCTFail("the first key stopped working") }
        guard case .forbidden = both.authenticate(["X-API-Key": try XCTUnwrap(second.output.first)], requiring: .ingest) else {
            return XCTFail("a read key must not ingest")
        }

        let listed = try await run(["keys", "list", "--file", path])
        XCTAssertEqual(listed.status, 0)
        XCTAssertEqual(listed.output.count, 3, "\(listed.output)")
        XCTAssertTrue(listed.output[1].hasPrefix(principal.keyId) && listed.output[1].contains("acme"), "\(listed.output)")
        XCTAssertFalse(listed.output.joined().contains(both.entries[0].sha256), "list never shows hashes")

        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        let bad = try await run(["keys", "add", "--tenant", "acme", "--scopes", "ingest,wrte", "--file", path])
        XCTAssertEqual(bad.status, 2, "an unknown scope is a usage error")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), before, "and the file is left alone")
    }
}
