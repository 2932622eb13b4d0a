import Foundation
import JSON

/// Where `$ref`s to other documents are found. Never touches the network: documents are either
/// registered in memory or read from a local directory that stands in for a URI prefix
/// (e.g. `http://localhost:1234/` → the test suite's `remotes/`, or
/// `https://json-schema.org/draft/2020-12/` → a local copy of the meta-schemas).
///
/// A value type: configure it, then pass it in `JSONSchemaOptions`; compilation only reads it.
public struct SchemaRegistry: Sendable {
    var documents: [String: JSON] = [:]
    var prefixes: [(prefix: String, directory: String)] = []

    /// An empty registry.
    public init() {}

    /// Registers a schema document under `uri` (fragment ignored). The document's own `$id`
    /// (if any) is honoured too, once it is referenced.
    public mutating func register(_ document: JSON, uri: String) {
        documents[SchemaRegistry.normalize(uri)] = document
    }

    /// Serves URIs starting with `prefix` from files under `directory`: `prefix + "a/b.json"` →
    /// `directory/a/b.json`; when that file does not exist, `.json` is appended (meta-schema URIs
    /// such as `.../meta/core` have no extension).
    public mutating func mapPrefix(_ prefix: String, toDirectory directory: String) {
        prefixes.append((prefix, directory))
    }

    /// The 2020-12 meta-schemas from a local directory laid out like
    /// `json-schema-meta/draft2020-12/` (`schema.json`, `meta/*.json`).
    public mutating func mapMetaschemas(directory: String) {
        mapPrefix("https://json-schema.org/draft/2020-12/", toDirectory: directory)
    }

    static func normalize(_ uri: String) -> String {
        var u = URIReference(uri)
        u.fragment = nil
        return u.description
    }

    /// Finds the document for an absolute URI without fragment. Throws `.loadFailed` if a mapped
    /// file exists but does not parse; returns nil if nothing provides the URI.
    func document(for uri: String) throws -> JSON? {
        if let d = documents[uri] { return d }
        for (prefix, directory) in prefixes where uri.hasPrefix(prefix) {
            let relative = String(uri.dropFirst(prefix.count))
            guard !relative.split(separator: "/").contains("..") else { continue }  // stay inside the directory
            let base = (directory.hasSuffix("/") ? directory : directory + "/") + relative
            for path in [base, base + ".json"] {
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue,
                      let data = FileManager.default.contents(atPath: path) else { continue }
                do {
                    return try JSON(parsing: data)
                } catch {
                    throw JSONSchemaError(code: .loadFailed, location: uri, message: "cannot parse \(path): \(error)")
                }
            }
        }
        return nil
    }
}
