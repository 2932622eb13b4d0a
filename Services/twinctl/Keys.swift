import Contracts
import Foundation
import ServiceKit

/// `twinctl keys add|list|remove`: manage the API keys file (`--file`, else `$API_KEYS_FILE`,
/// else `./api-keys.json`). `add` prints the new key once on stdout — only its SHA-256 is stored.
func runKeys(_ args: Arguments) throws {
    let path = args.string("file") ?? ProcessInfo.processInfo.environment["API_KEYS_FILE"].flatMap { $0.isEmpty ? nil : $0 } ?? "api-keys.json"
    switch args.positionals.dropFirst().first {
    case "add":
        guard let tenant = args.string("tenant") else { throw UsageError("keys add needs --tenant T") }
        guard TenantID.isValid(tenant) else { throw UsageError("--tenant must be 1-64 letters, digits, _ or -, got '\(tenant)'") }
        guard let scopeList = args.string("scopes") else {
            throw UsageError("keys add needs --scopes, a comma-separated list of \(APIScope.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let scopes: Set<APIScope>
        switch APIScope.parseList(scopeList) {
        case .success(let parsed) where !parsed.isEmpty: scopes = parsed
        case .success: throw UsageError("--scopes lists no scope")
        case .failure(let unknown): throw UsageError("--scopes: \(unknown)")
        }
        let (key, entry) = try APIKeysFile.addKey(tenant: tenant, scopes: scopes, to: path)
        printNow(key)
        printError("added key \(entry.id) for tenant \(entry.tenant) with scopes \(entry.scopes.sorted().map(\.rawValue).joined(separator: ",")) to \(path); the key is shown only this once")
    case "list":
        guard FileManager.default.fileExists(atPath: path) else {
            printError("\(path) does not exist: no keys")
            return
        }
        let keys = try APIKeys.load(path: path)
        printNow("ID            TENANT            SCOPES")
        for entry in keys.entries {
            printNow("\(entry.id.padding(toLength: 13, withPad: " ", startingAt: 0)) \(entry.tenant.padding(toLength: 17, withPad: " ", startingAt: 0)) \(entry.scopes.sorted().map(\.rawValue).joined(separator: ","))")
        }
    case "remove":
        guard let id = args.positionals.dropFirst(2).first ?? args.string("id") else { throw UsageError("keys remove needs the key id") }
        guard try APIKeysFile.remove(id: id, from: path) else { throw UsageError("no key with id '\(id)' in \(path)") }
        printError("removed key \(id) from \(path); services pick the change up when restarted")
    default:
        throw UsageError("keys expects add, list or remove")
    }
}
