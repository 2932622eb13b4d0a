import Contracts
import Foundation
import HTTP
import JSON

#if canImport(Glibc)
import Glibc
#endif

// API keys for the services that take requests from outside (ingestor, query-api).
//
// A key is `tsk_<id>_<secret>`: the id finds the entry, the secret is 32 random bytes in hex.
// The keys file (`API_KEYS_FILE`) never holds a key, only the SHA-256 of the whole key text:
//
//     [
//       {"id": "3f9a1c2b7d4e", "sha256": "<64 lowercase hex>", "tenant": "acme", "scopes": ["ingest", "read"]}
//     ]
//
// `twinctl keys add` generates a key, prints it once and appends its entry.

/// What an API key may do. `admin` grants every scope.
public enum APIScope: String, Sendable, CaseIterable, Comparable {
    /// Read twins, history, simulations, alerts.
    case read
    /// Create, patch and delete twins (commands).
    case write
    /// Send telemetry (`POST /v1/telemetry`).
    case ingest
    /// Ask for simulations and calibrations.
    case simulate
    /// Everything above.
    case admin

    /// Orders scopes as declared (for stable output).
    public static func < (a: APIScope, b: APIScope) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }

    /// Parses `read,write` (comma-separated, spaces allowed); nil names the first unknown word.
    public static func parseList(_ text: String) -> Result<Set<APIScope>, UnknownScope> {
        var scopes = Set<APIScope>()
        for word in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !word.isEmpty {
            guard let scope = APIScope(rawValue: word.lowercased()) else { return .failure(UnknownScope(name: word)) }
            scopes.insert(scope)
        }
        return .success(scopes)
    }

    /// A scope name that is not one of `APIScope.allCases`.
    public struct UnknownScope: Error, Sendable, CustomStringConvertible {
        public var name: String
        public var description: String {
            "unknown scope '\(name)'; expected one of \(APIScope.allCases.map(\.rawValue).joined(separator: ", "))"
        }
    }
}

/// One entry of the keys file: the hash of a key and what it grants.
public struct APIKeyEntry: Sendable, Equatable {
    /// Public identifier of the key (the `<id>` in `tsk_<id>_<secret>`); safe to log.
    public var id: String
    /// Lowercase hex SHA-256 of the whole key text.
    public var sha256: String
    /// The tenant every request with this key acts for.
    public var tenant: String
    /// What the key may do.
    public var scopes: Set<APIScope>

    public init(id: String, sha256: String, tenant: String, scopes: Set<APIScope>) {
        self.id = id
        self.sha256 = sha256
        self.tenant = tenant
        self.scopes = scopes
    }

    /// The entry as the keys file holds it (scopes in declaration order).
    public var json: JSON {
        .object(JSONObject([
            ("id", .string(id)), ("sha256", .string(sha256)), ("tenant", .string(tenant)),
            ("scopes", .array(scopes.sorted().map { .string($0.rawValue) })),
        ]))
    }
}

/// Who a request acts as once its key checked out.
public struct APIPrincipal: Sendable, Equatable {
    /// The key's id (for logs), or `auth-disabled` when authentication is off.
    public var keyId: String
    /// The tenant the request acts for.
    public var tenant: String
    /// The key's scopes.
    public var scopes: Set<APIScope>

    public init(keyId: String, tenant: String, scopes: Set<APIScope>) {
        self.keyId = keyId
        self.tenant = tenant
        self.scopes = scopes
    }

    /// Whether the principal may act with `scope` (`admin` grants every scope).
    public func has(_ scope: APIScope) -> Bool { scopes.contains(scope) || scopes.contains(.admin) }
}

/// The outcome of checking a request's key.
public enum APIAuthentication: Sendable, Equatable {
    /// A known key with the required scope.
    case authenticated(APIPrincipal)
    /// No key was sent (401); the text says how to send one.
    case missing(String)
    /// A key was sent but is not valid (401).
    case invalid(String)
    /// A valid key without the required scope (403).
    case forbidden(APIPrincipal, required: APIScope)
}

/// A keys file the service cannot start with: which file, which entry, which field, and why.
public struct APIKeysError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file (or `<memory>`).
    public var file: String
    /// Zero-based index of the offending entry, nil for the file as a whole.
    public var index: Int?
    /// The offending field of that entry, if any.
    public var field: String?
    /// What is wrong and what was expected.
    public var message: String

    public init(file: String, index: Int? = nil, field: String? = nil, message: String) {
        self.file = file
        self.index = index
        self.field = field
        self.message = message
    }

    /// E.g. `API keys file /etc/keys.json: entry 2, field "scopes": unknown scope 'wrte'; expected one of ...`.
    public var description: String {
        var text = "API keys file \(file)"
        if let index { text += ": entry \(index)" }
        if let field { text += index == nil ? ": field \"\(field)\"" : ", field \"\(field)\"" }
        return text + ": " + message
    }
}

/// The API keys a service accepts, loaded once at start-up. Looking a key up hashes it and
/// compares hashes in constant time; an unknown id costs the same comparison.
public struct APIKeys: Sendable {
    /// Every key `tsk_<id>_<secret>` starts with this.
    public static let prefix = "tsk_"

    /// The entries, in file order.
    public let entries: [APIKeyEntry]
    private let indexById: [String: Int]

    /// Keys from already-validated entries; a repeated id throws.
    public init(entries: [APIKeyEntry], file: String = "<memory>") throws(APIKeysError) {
        var index: [String: Int] = [:]
        for (i, entry) in entries.enumerated() {
            guard index[entry.id] == nil else {
                throw APIKeysError(file: file, index: i, field: "id", message: "id '\(entry.id)' is already used by entry \(index[entry.id]!)")
            }
            index[entry.id] = i
        }
        self.entries = entries
        indexById = index
    }

    /// No keys: every request is answered 401.
    public static let none = try! APIKeys(entries: [])

    // MARK: Loading

    /// Reads and validates the keys file at `path`. An empty file or `[]` means no keys.
    public static func load(path: String) throws(APIKeysError) -> APIKeys {
        guard let data = FileManager.default.contents(atPath: path) else {
            let reason = FileManager.default.fileExists(atPath: path) ? "cannot be read (permissions?)" : "does not exist"
            throw APIKeysError(file: path, message: "file \(reason); create it with `twinctl keys add --file \(path) ...`")
        }
        return try parse(Array(data), file: path)
    }

    /// Parses and validates a keys file's bytes; `file` names it in errors.
    public static func parse(_ bytes: [UInt8], file: String = "<memory>") throws(APIKeysError) -> APIKeys {
        let documents = try parseDocuments(bytes, file: file)
        var entries: [APIKeyEntry] = []
        for (index, item) in documents.enumerated() {
            entries.append(try entry(item, index: index, file: file))
        }
        return try APIKeys(entries: entries, file: file)
    }

    /// The file's top-level array (empty for an empty file).
    static func parseDocuments(_ bytes: [UInt8], file: String) throws(APIKeysError) -> [JSON] {
        if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) { return [] }
        let json: JSON
        do {
            json = try JSON(parsing: bytes)
        } catch let error as JSONError {
            throw APIKeysError(file: file, message: "not valid JSON: \(error.message) at byte \(error.offset)")
        } catch {
            throw APIKeysError(file: file, message: "not valid JSON: \(error)")
        }
        guard case .array(let items) = json else {
            throw APIKeysError(file: file, message: "expected a JSON array of {\"id\", \"sha256\", \"tenant\", \"scopes\"} objects, found \(json.typeName)")
        }
        return items
    }

    private static func entry(_ item: JSON, index: Int, file: String) throws(APIKeysError) -> APIKeyEntry {
        func fail(_ field: String?, _ message: String) -> APIKeysError {
            APIKeysError(file: file, index: index, field: field, message: message)
        }
        guard case .object(let object) = item else { throw fail(nil, "expected an object, found \(item.typeName)") }
        func string(_ name: String) throws(APIKeysError) -> String {
            guard let value = object[name] else { throw fail(name, "required field is missing") }
            guard case .string(let text) = value else { throw fail(name, "expected a string, found \(value.typeName)") }
            return text
        }
        let id = try string("id")
        guard isValidKeyId(id) else { throw fail("id", "'\(id)' is not 1-64 letters, digits or '-'") }
        let hash = try string("sha256").lowercased()
        guard hash.utf8.count == 64, hash.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }) else {
            throw fail("sha256", "expected 64 hex digits (the SHA-256 of the key), found \(hash.utf8.count) characters")
        }
        let tenant = try string("tenant")
        guard TenantID.isValid(tenant) else { throw fail("tenant", "'\(tenant)' is not 1-64 letters, digits, '_' or '-'") }
        guard let value = object["scopes"] else { throw fail("scopes", "required field is missing") }
        guard case .array(let names) = value else { throw fail("scopes", "expected an array of scope names, found \(value.typeName)") }
        var scopes = Set<APIScope>()
        for name in names {
            guard case .string(let text) = name else { throw fail("scopes", "expected scope names as strings, found \(name.typeName)") }
            guard let scope = APIScope(rawValue: text) else { throw fail("scopes", APIScope.UnknownScope(name: text).description) }
            scopes.insert(scope)
        }
        guard !scopes.isEmpty else {
            throw fail("scopes", "a key needs at least one of \(APIScope.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return APIKeyEntry(id: id, sha256: hash, tenant: tenant, scopes: scopes)
    }

    /// Key ids: 1-64 letters, digits and `-` (no `_`, which separates id and secret in a key).
    public static func isValidKeyId(_ id: String) -> Bool {
        let utf8 = id.utf8
        return (1...64).contains(utf8.count) && utf8.allSatisfy { c in
            (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c == 45
        }
    }

    // MARK: Checking keys

    /// What a client with an unknown key is told (where valid keys come from).
    public static let invalidKeyDetail = "the API key is not valid here: use one from `twinctl keys add` in this service's keys file (read at start-up: restart after adding), or the key `twinctl up` printed"

    /// Looks `key` up: `.authenticated` with the key's scopes, or `.invalid`.
    public func authenticate(key: String) -> APIAuthentication {
        guard !entries.isEmpty else {
            return .invalid("no API keys are configured on this service (API_KEYS_FILE)")
        }
        let presented = Array(APIKeys.hash(key).utf8)
        // The id says which entry to compare with; a key without one (or with an unknown one) is
        // compared with every entry, so hand-made keys work and the timing says nothing about ids.
        let candidates: [Int] = APIKeys.keyId(of: key).flatMap { indexById[$0] }.map { [$0] } ?? Array(entries.indices)
        var match: Int?
        for index in candidates where APIKeys.constantTimeEqual(presented, Array(entries[index].sha256.utf8)) {
            match = match ?? index
        }
        guard let match else { return .invalid(APIKeys.invalidKeyDetail) }
        let entry = entries[match]
        return .authenticated(APIPrincipal(keyId: entry.id, tenant: entry.tenant, scopes: entry.scopes))
    }

    /// Finds the key in `headers` (see `APIAuth.presentedKey(in:)`) and checks it and `scope`.
    public func authenticate(_ headers: HTTPHeaders, requiring scope: APIScope) -> APIAuthentication {
        switch APIAuth.presentedKey(in: headers) {
        case .failure(let failure):
            return failure.outcome
        case .success(let key):
            let outcome = authenticate(key: key)
            if case .authenticated(let principal) = outcome, !principal.has(scope) {
                return .forbidden(principal, required: scope)
            }
            return outcome
        }
    }

    /// The `<id>` of a `tsk_<id>_<secret>` key, nil for any other shape.
    public static func keyId(of key: String) -> String? {
        guard key.hasPrefix(prefix) else { return nil }
        let rest = key.utf8.dropFirst(prefix.utf8.count)
        guard let separator = rest.firstIndex(of: UInt8(ascii: "_")) else { return nil }
        let id = String(decoding: rest[rest.startIndex..<separator], as: UTF8.self)
        guard isValidKeyId(id), rest.index(after: separator) < rest.endIndex else { return nil }
        return id
    }

    /// Lowercase hex SHA-256 of the key text: what the keys file stores.
    public static func hash(_ key: String) -> String { SHA256.hex(key) }

    /// Compares two byte strings without an early exit (only the lengths leak).
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in a.indices { difference |= a[i] ^ b[i] }
        return difference == 0
    }

    // MARK: Making keys

    /// A new random key for `tenant` with `scopes`, and its file entry. `existingIds` are avoided.
    public static func generate(tenant: String, scopes: Set<APIScope>, existingIds: Set<String> = []) -> (key: String, entry: APIKeyEntry) {
        var generator = SystemRandomNumberGenerator()  // getrandom(2): cryptographically secure
        var id: String
        repeat {
            id = hexString((0..<6).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
        } while existingIds.contains(id)
        let secret = hexString((0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
        let key = "\(prefix)\(id)_\(secret)"
        return (key, APIKeyEntry(id: id, sha256: hash(key), tenant: tenant, scopes: scopes))
    }
}

// MARK: - The keys file on disk

/// Editing a keys file: every change validates the whole file first (a malformed file is never
/// overwritten), keeps unknown fields of existing entries, and replaces the file atomically
/// (temporary file in the same folder, fsync, rename) under an exclusive lock on the folder.
public enum APIKeysFile {
    /// Appends `entry` to the file at `path`, creating it (and its folder) when missing.
    public static func append(_ entry: APIKeyEntry, to path: String) throws {
        try edit(path) { items in
            items.append(entry.json)
            return true
        }
    }

    /// Generates a key for `tenant` and `scopes`, appends its entry to `path` and returns the key.
    public static func addKey(tenant: String, scopes: Set<APIScope>, to path: String) throws -> (key: String, entry: APIKeyEntry) {
        var made: (key: String, entry: APIKeyEntry)?
        try edit(path) { items in
            let ids = Set(items.compactMap { $0["id"]?.stringValue })
            let generated = APIKeys.generate(tenant: tenant, scopes: scopes, existingIds: ids)
            items.append(generated.entry.json)
            made = generated
            return true
        }
        return made!
    }

    /// Removes the entry with `id`; false when there is none (the file is left untouched).
    @discardableResult
    public static func remove(id: String, from path: String) throws -> Bool {
        var removed = false
        try edit(path) { items in
            let before = items.count
            items.removeAll { $0["id"]?.stringValue == id }
            removed = items.count != before
            return removed
        }
        return removed
    }

    /// The bytes of a keys file holding `items`: a JSON array with one entry per line.
    public static func encode(_ items: [JSON]) -> [UInt8] {
        guard !items.isEmpty else { return Array("[]\n".utf8) }
        var out = Array("[\n".utf8)
        for (i, item) in items.enumerated() {
            out += Array("  ".utf8) + item.serialized()
            out += Array((i + 1 < items.count ? ",\n" : "\n").utf8)
        }
        out += Array("]\n".utf8)
        return out
    }

    /// Runs `change` on the file's entries under the folder lock and writes the result when it
    /// returns true. The file is validated before and after the change.
    private static func edit(_ path: String, _ change: (inout [JSON]) throws -> Bool) throws {
        let url = URL(fileURLWithPath: path)
        let folder = url.deletingLastPathComponent().path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let lock = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard lock >= 0 else { throw APIKeysError(file: path, message: "cannot open folder \(folder): \(String(cString: strerror(errno)))") }
        defer { close(lock) }
        guard flock(lock, LOCK_EX) == 0 else { throw APIKeysError(file: path, message: "cannot lock folder \(folder): \(String(cString: strerror(errno)))") }
        defer { flock(lock, LOCK_UN) }

        var items: [JSON] = []
        var mode: mode_t = 0o644  // the file holds hashes only; services in containers must read it
        if FileManager.default.fileExists(atPath: path) {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw APIKeysError(file: path, message: "file cannot be read (permissions?)")
            }
            _ = try APIKeys.parse(Array(data), file: path)
            items = try APIKeys.parseDocuments(Array(data), file: path)
            var info = stat()
            if stat(path, &info) == 0 { mode = info.st_mode & 0o7777 }
        }
        guard try change(&items) else { return }
        let bytes = encode(items)
        _ = try APIKeys.parse(bytes, file: path)

        let temporary = folder + "/." + url.lastPathComponent + ".tmp-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw APIKeysError(file: path, message: "cannot create \(temporary): \(String(cString: strerror(errno)))") }
        var written = 0
        let ok = bytes.withUnsafeBytes { buffer -> Bool in
            while written < buffer.count {
                let n = write(fd, buffer.baseAddress! + written, buffer.count - written)
                if n < 0 { if errno == EINTR { continue }; return false }
                written += n
            }
            return fsync(fd) == 0
        }
        _ = fchmod(fd, mode)  // open's mode is filtered by the umask
        close(fd)
        guard ok, rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw APIKeysError(file: path, message: "cannot write: \(reason)")
        }
    }
}

// MARK: - Authentication for a service

/// How a service checks requests: against a keys file, or — for a local stack only — not at all.
public enum APIAuth: Sendable {
    /// Requests need a key from this set.
    case keys(APIKeys)
    /// Requests need a key from the keys file, reloaded when it changes and on SIGHUP (run the
    /// watcher, `reloader`, beside the service).
    case watched(APIKeysWatcher)
    /// Every request acts as `tenant` with every scope (`AUTH_DISABLED=true`).
    case disabled(tenant: String)

    /// The realm named in `WWW-Authenticate`.
    public static let realm = "twinstream"

    /// Reads `API_KEYS_FILE` and `AUTH_DISABLED` and loads the keys, logging what is in effect.
    /// Unset `API_KEYS_FILE` (without `AUTH_DISABLED`) or an empty file means every request is
    /// answered 401, with a warning at start-up. Setting both is a configuration error. The file
    /// is watched (`API_KEYS_RELOAD_INTERVAL`, SIGHUP): add `reloader` to the service's group.
    public static func fromEnvironment(_ environment: EnvironmentReader, defaultTenant: String, logger: Logger,
                                       metrics: MetricsRegistry? = nil) throws -> APIAuth {
        let path = environment.optionalString(
            "API_KEYS_FILE",
            doc: "JSON array of API key entries {id, sha256, tenant, scopes} (create with `twinctl keys add`). Unset: every API request is answered 401 unless AUTH_DISABLED=true.")
        let disabled = try environment.bool(
            "AUTH_DISABLED", default: false,
            doc: "Local stacks only: accept API requests without a key, as DEFAULT_TENANT with every scope. Not allowed together with API_KEYS_FILE.")
        if disabled {
            if let path {
                throw ConfigurationError(code: .conflict, variable: "AUTH_DISABLED", value: "true", expected: "API_KEYS_FILE=\(path) (unset one of them)")
            }
            guard TenantID.isValid(defaultTenant) else {
                throw ConfigurationError(code: .invalidValue, variable: "DEFAULT_TENANT", value: defaultTenant, expected: "1-64 letters, digits, _ or -")
            }
            logger.warning("AUTH_DISABLED=true: API requests need no key and act as tenant '\(defaultTenant)' with every scope; for a local stack only")
            return .disabled(tenant: defaultTenant)
        }
        guard let path else {
            logger.warning("API_KEYS_FILE is not set: every API request is answered 401; create keys with `twinctl keys add` (or set AUTH_DISABLED=true on a local stack)")
            return .keys(.none)
        }
        let interval = try environment.duration("API_KEYS_RELOAD_INTERVAL", default: .seconds(5), range: .milliseconds(100)...(.seconds(3600)),
                                                doc: "How often the keys file is checked for changes (it is also reloaded on SIGHUP).")
        let watcher = try APIKeysWatcher(path: path, interval: interval, logger: logger, metrics: metrics)
        let keys = watcher.keys
        if keys.entries.isEmpty {
            logger.warning("API keys file has no keys: every API request is answered 401", ["file": .string(path)])
        } else {
            logger.info("API keys loaded", ["file": .string(path), "keys": .int(keys.entries.count),
                                            "tenants": .int(Set(keys.entries.map(\.tenant)).count)])
        }
        return .watched(watcher)
    }

    /// The service that reloads a watched keys file; nil when there is nothing to watch.
    public var reloader: (any Service)? {
        if case .watched(let watcher) = self { return watcher }
        return nil
    }

    /// Checks the key the request carries against `scope`.
    public func authenticate(_ headers: HTTPHeaders, requiring scope: APIScope) -> APIAuthentication {
        switch self {
        case .keys(let keys):
            return keys.authenticate(headers, requiring: scope)
        case .watched(let watcher):
            return watcher.keys.authenticate(headers, requiring: scope)
        case .disabled(let tenant):
            return .authenticated(APIPrincipal(keyId: "auth-disabled", tenant: tenant, scopes: Set(APIScope.allCases)))
        }
    }

    /// The principal of `request` if its key is valid and has `scope`; otherwise throws the
    /// `HTTPError` to answer with: 401 (with `WWW-Authenticate: Bearer ...`) or 403. Inside a
    /// route handler, `let who = try auth.authorize(request, requiring: .read)` is all it takes.
    public func authorize(_ request: HTTPRequest, requiring scope: APIScope) throws(HTTPError) -> APIPrincipal {
        let outcome = authenticate(request.headers, requiring: scope)
        if case .authenticated(let principal) = outcome { return principal }
        throw APIAuth.error(for: outcome)!
    }

    /// The 401/403 error for a failed outcome; nil for `.authenticated`.
    public static func error(for outcome: APIAuthentication) -> HTTPError? {
        switch outcome {
        case .authenticated:
            return nil
        case .missing(let detail):
            return HTTPError(.unauthorized, code: .init("missingCredentials"), detail: detail,
                             headers: ["WWW-Authenticate": "Bearer realm=\"\(realm)\""])
        case .invalid(let detail):
            return HTTPError(.unauthorized, code: .init("invalidCredentials"), detail: detail,
                             headers: ["WWW-Authenticate": "Bearer realm=\"\(realm)\", error=\"invalid_token\""])
        case .forbidden(_, let scope):
            return HTTPError(.forbidden, code: .init("insufficientScope"), detail: "the API key lacks the '\(scope.rawValue)' scope: use a key that has it (`twinctl keys add --scopes \(scope.rawValue)`)",
                             headers: ["WWW-Authenticate": "Bearer realm=\"\(realm)\", error=\"insufficient_scope\", scope=\"\(scope.rawValue)\""])
        }
    }

    /// The key a request presents, from `Authorization: Bearer <key>` or `X-API-Key: <key>`.
    /// Sending both is fine when they agree; repeated or disagreeing headers are invalid, and a
    /// request with neither (or only another Authorization scheme) is missing credentials.
    public static func presentedKey(in headers: HTTPHeaders) -> Result<String, APIAuthFailure> {
        let authorization = headers.values(for: "Authorization")
        let apiKey = headers.values(for: "X-API-Key")
        guard authorization.count <= 1, apiKey.count <= 1 else {
            return .failure(APIAuthFailure(.invalid("send one Authorization or X-API-Key header, not several")))
        }
        var bearer: String?
        var otherScheme: String?
        if let value = authorization.first?.trimmingCharacters(in: .whitespaces) {
            let parts = value.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
            if let scheme = parts.first, scheme.lowercased() == "bearer" {
                let token = parts.count > 1 ? parts[1].trimmingCharacters(in: .whitespaces) : ""
                guard !token.isEmpty else { return .failure(APIAuthFailure(.invalid("Authorization: Bearer carries no key"))) }
                bearer = token
            } else {
                otherScheme = parts.first.map(String.init) ?? ""
            }
        }
        let headerKey = apiKey.first?.trimmingCharacters(in: .whitespaces)
        if let headerKey, headerKey.isEmpty { return .failure(APIAuthFailure(.invalid("X-API-Key is empty"))) }
        switch (bearer, headerKey) {
        case (let a?, let b?) where a != b:
            return .failure(APIAuthFailure(.invalid("Authorization and X-API-Key carry different keys")))
        case (let key?, _), (nil, let key?):
            return .success(key)
        case (nil, nil):
            let hint = otherScheme.map { "the Authorization scheme '\($0)' is not supported; " } ?? ""
            return .failure(APIAuthFailure(.missing(hint + "an API key is required: send Authorization: Bearer <key> or X-API-Key: <key> (`twinctl up` prints one; `twinctl keys add` makes one)")))
        }
    }
}

/// A request whose key could not even be looked up (carried as an error by `presentedKey`).
public struct APIAuthFailure: Error, Sendable, Equatable {
    /// `.missing` or `.invalid`.
    public var outcome: APIAuthentication
    public init(_ outcome: APIAuthentication) { self.outcome = outcome }
}
