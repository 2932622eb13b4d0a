import Foundation
import HTTP
import XCTest

@testable import ServiceKit

/// API keys: the keys file, the outcomes of checking a request, configuration and file edits.
final class APIKeysTests: XCTestCase {
    private func tempDir() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("apikeys-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    private let hashA = String(repeating: "ab", count: 32)

    // MARK: The file

    func testParsesEntriesAndIgnoresUnknownFields() throws {
        let text = """
        [
          {"id": "k-1", "sha256": "\(hashA.uppercased())", "tenant": "acme", "scopes": ["ingest", "read"], "note": "edge gateway"},
          {"id": "k2", "sha256": "\(String(repeating: "0", count: 64))", "tenant": "other_t", "scopes": ["admin"]}
        ]
        """
        let keys = try APIKeys.parse(Array(text.utf8), file: "keys.json")
        XCTAssertEqual(keys.entries, [
            APIKeyEntry(id: "k-1", sha256: hashA, tenant: "acme", scopes: [.ingest, .read]),
            APIKeyEntry(id: "k2", sha256: String(repeating: "0", count: 64), tenant: "other_t", scopes: [.admin]),
        ])
    }

    func testAnEmptyFileOrAnEmptyArrayMeansNoKeysAndEveryKeyIsInvalid() throws {
        for text in ["", "  \n", "[]", "[ ]\n"] {
            let keys = try APIKeys.parse(Array(text.utf8))
            XCTAssertTrue(keys.entries.isEmpty, text)
            guard case .invalid(let detail) = keys.authenticate(key: "tsk_abc_def") else { return XCTFail("expected invalid for \(text)") }
            XCTAssertTrue(detail.contains("no API keys are configured"), detail)
        }
    }

    func testMalformedFilesNameTheFileTheEntryAndTheField() {
        let good = #"{"id":"a","sha256":"\#(hashA)","tenant":"acme","scopes":["read"]}"#
        let cases: [(String, Int?, String?, String)] = [
            ("{not json", nil, nil, "not valid JSON"),
            (#"{"keys":[]}"#, nil, nil, "expected a JSON array"),
            ("[\(good), 5]", 1, nil, "expected an object, found integer"),
            (#"[{"sha256":"\#(hashA)","tenant":"acme","scopes":["read"]}]"#, 0, "id", "required field is missing"),
            (#"[{"id":"a_b","sha256":"\#(hashA)","tenant":"acme","scopes":["read"]}]"#, 0, "id", "letters, digits or '-'"),
            (#"[{"id":"a","sha256":"abc","tenant":"acme","scopes":["read"]}]"#, 0, "sha256", "64 hex digits"),
            (#"[{"id":"a","sha256":"\#(String(repeating: "g", count: 64))","tenant":"acme","scopes":["read"]}]"#, 0, "sha256", "64 hex digits"),
            (#"[{"id":"a","sha256":"\#(hashA)","tenant":"a/b","scopes":["read"]}]"#, 0, "tenant", "'a/b'"),
            (#"[{"id":"a","sha256":"\#(hashA)","tenant":7,"scopes":["read"]}]"#, 0, "tenant", "expected a string, found integer"),
            (#"[\#(good),{"id":"b","sha256":"\#(hashA)","tenant":"acme","scopes":["read","wrte"]}]"#, 1, "scopes", "unknown scope 'wrte'"),
            (#"[{"id":"a","sha256":"\#(hashA)","tenant":"acme","scopes":[]}]"#, 0, "scopes", "at least one"),
            (#"[{"id":"a","sha256":"\#(hashA)","tenant":"acme","scopes":"read"}]"#, 0, "scopes", "expected an array"),
            (#"[\#(good),\#(good)]"#, 1, "id", "already used by entry 0"),
        ]
        for (text, index, field, message) in cases {
            XCTAssertThrowsError(try APIKeys.parse(Array(text.utf8), file: "/etc/keys.json"), text) { error in
                guard let error = error as? APIKeysError else { return XCTFail("\(error)") }
                XCTAssertEqual(error.file, "/etc/keys.json")
                XCTAssertEqual(error.index, index, text)
                XCTAssertEqual(error.field, field, text)
                XCTAssertTrue(error.message.contains(message), "\(error.message) should mention \(message)")
                XCTAssertTrue(error.description.hasPrefix("API keys file /etc/keys.json"), error.description)
                if let index, let field { XCTAssertTrue(error.description.contains("entry \(index), field \"\(field)\""), error.description) }
            }
        }
    }

    func testLoadingAFileThatDoesNotExistSaysHowToCreateIt() {
        XCTAssertThrowsError(try APIKeys.load(path: "/nonexistent/keys.json")) { error in
            XCTAssertTrue("\(error)".contains("does not exist"), "\(error)")
            XCTAssertTrue("\(error)".contains("twinctl keys add"), "\(error)")
        }
    }

    // MARK: Checking requests

    private func store() throws -> (keys: APIKeys, ingest: String, readOnly: String, admin: String) {
        let ingest = APIKeys.generate(tenant: "acme", scopes: [.ingest, .read])
        let readOnly = APIKeys.generate(tenant: "acme", scopes: [.read])
        let admin = APIKeys.generate(tenant: "ops", scopes: [.admin])
        let keys = try APIKeys(entries: [ingest.entry, readOnly.entry, admin.entry])
        return (keys, ingest.key, readOnly.key, admin.key)
    }

    func testGeneratedKeysHaveTheDocumentedShapeAndTheirHashIsStored() {
        let (key, entry) = APIKeys.generate(tenant: "acme", scopes: [.write])
        XCTAssertTrue(key.hasPrefix("tsk_\(entry.id)_"), key)
        XCTAssertEqual(key.utf8.count, 4 + 12 + 1 + 64)
        XCTAssertEqual(APIKeys.keyId(of: key), entry.id)
        XCTAssertEqual(entry.sha256, APIKeys.hash(key))
        XCTAssertNotEqual(APIKeys.generate(tenant: "acme", scopes: [.write]).key, key)
    }

    func testOutcomesMissingInvalidForbiddenAndAuthenticated() throws {
        let (keys, ingest, readOnly, admin) = try store()
        let ingestId = try XCTUnwrap(APIKeys.keyId(of: ingest))

        guard case .missing = keys.authenticate([:], requiring: .ingest) else { return XCTFail("no header is missing") }
        guard case .missing(let hint) = keys.authenticate(["Authorization": "Basic YTpi"], requiring: .ingest) else {
            return XCTFail("another scheme is missing credentials")
        }
        XCTAssertTrue(hint.contains("'Basic' is not supported"), hint)

        let unknown = APIKeys.generate(tenant: "acme", scopes: [.ingest]).key
        XCTAssertEqual(keys.authenticate(["Authorization": "Bearer \(unknown)"], requiring: .ingest), .invalid(APIKeys.invalidKeyDetail))
        let wrongSecret = "tsk_\(ingestId)_" + String(repeating: "0", count: 64)
        XCTAssertEqual(keys.authenticate(["X-API-Key": wrongSecret], requiring: .ingest), .invalid(APIKeys.invalidKeyDetail))
        XCTAssertEqual(keys.authenticate(["X-API-Key": "not-a-key"], requiring: .ingest), .invalid(APIKeys.invalidKeyDetail))
        guard case .invalid = keys.authenticate(["Authorization": "Bearer"], requiring: .ingest) else { return XCTFail("empty bearer") }

        let reader = APIPrincipal(keyId: try XCTUnwrap(APIKeys.keyId(of: readOnly)), tenant: "acme", scopes: [.read])
        XCTAssertEqual(keys.authenticate(["X-API-Key": readOnly], requiring: .ingest), .forbidden(reader, required: .ingest))
        XCTAssertEqual(keys.authenticate(["X-API-Key": readOnly], requiring: .read), .authenticated(reader))

        let ingester = APIPrincipal(keyId: ingestId, tenant: "acme", scopes: [.ingest, .read])
        XCTAssertEqual(keys.authenticate(["Authorization": "Bearer \(ingest)"], requiring: .ingest), .authenticated(ingester))
        XCTAssertEqual(keys.authenticate(["authorization": "bearer  \(ingest) "], requiring: .ingest), .authenticated(ingester))
        XCTAssertEqual(keys.authenticate(["X-API-Key": ingest], requiring: .ingest), .authenticated(ingester))
        XCTAssertEqual(keys.authenticate(["X-API-Key": ingest, "Authorization": "Bearer \(ingest)"], requiring: .ingest), .authenticated(ingester))
        XCTAssertEqual(keys.authenticate(["X-API-Key": ingest, "Authorization": "Bearer \(readOnly)"], requiring: .read),
                       .invalid("Authorization and X-API-Key carry different keys"))
        guard case .invalid = keys.authenticate(HTTPHeaders([("X-API-Key", ingest), ("X-API-Key", ingest)]), requiring: .read) else {
            return XCTFail("repeated headers are invalid")
        }
        guard case .authenticated(let boss) = keys.authenticate(["X-API-Key": admin], requiring: .simulate) else { return XCTFail("admin") }
        XCTAssertEqual(boss.tenant, "ops")
    }

    func testAHandMadeKeyWithoutTheIdPrefixIsFoundByItsHash() throws {
        let keys = try APIKeys(entries: [APIKeyEntry(id: "legacy", sha256: APIKeys.hash("correct horse battery staple"), tenant: "acme", scopes: [.read])])
        guard case .authenticated(let principal) = keys.authenticate(key: "correct horse battery staple") else { return XCTFail("hand-made key") }
        XCTAssertEqual(principal.keyId, "legacy")
        XCTAssertEqual(keys.authenticate(key: "correct horse battery"), .invalid(APIKeys.invalidKeyDetail))
    }

    func testAuthorizeThrowsProblemsWithWWWAuthenticate() throws {
        let (keys, ingest, readOnly, _) = try store()
        let auth = APIAuth.keys(keys)
        func request(_ headers: HTTPHeaders) -> HTTPRequest { HTTPRequest(method: .post, target: "/v1/telemetry", headers: headers) }

        XCTAssertEqual(try auth.authorize(request(["X-API-Key": ingest]), requiring: .ingest).tenant, "acme")
        do {
            _ = try auth.authorize(request([:]), requiring: .ingest)
            XCTFail("no key must throw")
        } catch {
            XCTAssertEqual(error.status.code, 401)
            XCTAssertEqual(error.headers["WWW-Authenticate"], #"Bearer realm="twinstream""#)
            let body = HTTPResponse.from(error: error, requestID: "r1").bodyBytes
            XCTAssertTrue(String(decoding: body, as: UTF8.self).contains(#""code":"missingCredentials""#))
        }
        do {
            _ = try auth.authorize(request(["Authorization": "Bearer tsk_nope_nope"]), requiring: .ingest)
            XCTFail("a bad key must throw")
        } catch {
            XCTAssertEqual(error.status.code, 401)
            XCTAssertEqual(error.headers["WWW-Authenticate"], #"Bearer realm="twinstream", error="invalid_token""#)
        }
        do {
            _ = try auth.authorize(request(["X-API-Key": readOnly]), requiring: .ingest)
            XCTFail("a key without the scope must throw")
        } catch {
            XCTAssertEqual(error.status.code, 403)
            XCTAssertEqual(error.headers["WWW-Authenticate"], #"Bearer realm="twinstream", error="insufficient_scope", scope="ingest""#)
        }
        let open = APIAuth.disabled(tenant: "local")
        XCTAssertEqual(try open.authorize(request([:]), requiring: .admin), APIPrincipal(keyId: "auth-disabled", tenant: "local", scopes: Set(APIScope.allCases)))
    }

    // MARK: Configuration

    func testEnvironmentUnsetFileDisabledAuthAndConflicts() throws {
        let collector = LineCollector()
        let logger = Logger(service: "test", sink: collector.sink)

        guard case .keys(let none) = try APIAuth.fromEnvironment(EnvironmentReader([:]), defaultTenant: "default", logger: logger) else {
            return XCTFail("unset file means keys")
        }
        XCTAssertTrue(none.entries.isEmpty)
        XCTAssertTrue(collector.objects().contains { ($0["level"] as? String) == "warning" && ($0["msg"] as? String ?? "").contains("API_KEYS_FILE is not set") })

        guard case .disabled(let tenant) = try APIAuth.fromEnvironment(EnvironmentReader(["AUTH_DISABLED": "true"]), defaultTenant: "local", logger: logger) else {
            return XCTFail("AUTH_DISABLED=true")
        }
        XCTAssertEqual(tenant, "local")

        XCTAssertThrowsError(try APIAuth.fromEnvironment(EnvironmentReader(["AUTH_DISABLED": "true", "API_KEYS_FILE": "/k.json"]), defaultTenant: "d", logger: logger)) {
            XCTAssertEqual(($0 as? ConfigurationError)?.code, .conflict)
        }

        let dir = try tempDir()
        let path = dir + "/keys.json"
        try Data(#"[{"id":"a","sha256":"\#(hashA)","tenant":"acme","scopes":["reed"]}]"#.utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try APIAuth.fromEnvironment(EnvironmentReader(["API_KEYS_FILE": path]), defaultTenant: "d", logger: logger)) {
            XCTAssertEqual(($0 as? APIKeysError)?.field, "scopes")
        }
        try Data("[]".utf8).write(to: URL(fileURLWithPath: path))
        _ = try APIAuth.fromEnvironment(EnvironmentReader(["API_KEYS_FILE": path]), defaultTenant: "d", logger: logger)
        XCTAssertTrue(collector.objects().contains { ($0["msg"] as? String ?? "").contains("has no keys") })
    }

    // MARK: Editing the file

    func testAddingKeysCreatesTheFileAppendsAndKeepsOtherFields() throws {
        let dir = try tempDir()
        let path = dir + "/sub/keys.json"
        let first = try APIKeysFile.addKey(tenant: "acme", scopes: [.ingest], to: path)
        var info = stat()
        XCTAssertEqual(stat(path, &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o644)
        guard case .authenticated = try APIKeys.load(path: path).authenticate(key: first.key) else { return XCTFail("first key") }

        // An operator's own field survives later edits.
        var text = try String(contentsOfFile: path, encoding: .utf8)
        text = text.replacingOccurrences(of: #""tenant":"acme""#, with: #""tenant":"acme","note":"gateway 7""#)
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        let second = try APIKeysFile.addKey(tenant: "beta", scopes: [.read, .write], to: path)
        let keys = try APIKeys.load(path: path)
        XCTAssertEqual(keys.entries.map(\.id), [first.entry.id, second.entry.id])
        XCTAssertTrue(try String(contentsOfFile: path, encoding: .utf8).contains("gateway 7"))
        XCTAssertFalse(try String(contentsOfFile: path, encoding: .utf8).contains(second.key), "the key itself is never stored")

        XCTAssertTrue(try APIKeysFile.remove(id: first.entry.id, from: path))
        XCTAssertFalse(try APIKeysFile.remove(id: "nobody", from: path))
        XCTAssertEqual(try APIKeys.load(path: path).entries.map(\.id), [second.entry.id])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/sub"), ["keys.json"], "no temporary file is left behind")
    }

    func testAMalformedFileIsNeverOverwritten() throws {
        let path = try tempDir() + "/keys.json"
        let broken = Data(#"[{"id":"a"}"#.utf8)
        try broken.write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try APIKeysFile.addKey(tenant: "acme", scopes: [.read], to: path))
        XCTAssertEqual(FileManager.default.contents(atPath: path), broken)
    }
}
