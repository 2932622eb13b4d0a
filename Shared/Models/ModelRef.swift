/// A reference to a twin model: `pump@2` (id and version) or `pump` (the latest version).
public struct ModelRef: Sendable, Hashable, CustomStringConvertible {
    /// The model id (`pump`).
    public var id: String
    /// The version, nil for "the latest loaded version".
    public var version: Int?

    /// A reference from its parts.
    public init(id: String, version: Int? = nil) {
        self.id = id
        self.version = version
    }

    /// Parses `id` or `id@version`. The id is 1–64 characters of letters, digits and `_ - .`,
    /// starting with a letter; the version a positive decimal integer. Throws `ModelError`
    /// `.invalidModelRef` otherwise.
    public init(parsing text: String) throws(ModelError) {
        guard let ref = ModelRef.parse(text) else {
            throw ModelError(code: .invalidModelRef,
                             message: "\"\(text)\" is not a model reference; expected id or id@version, e.g. pump or pump@2")
        }
        self = ref
    }

    /// `id@version`, or `id` when the version is nil.
    public var description: String { version.map { "\(id)@\($0)" } ?? id }

    /// Parses without throwing (nil when malformed); the fast path for envelopes.
    public static func parse(_ text: String) -> ModelRef? {
        let utf8 = text.utf8
        guard let at = utf8.firstIndex(of: UInt8(ascii: "@")) else {
            return isValidId(text) ? ModelRef(id: text) : nil
        }
        let id = String(text[..<at])
        let versionText = text.utf8[utf8.index(after: at)...]
        guard isValidId(id), !versionText.isEmpty, versionText.count <= 9,
              versionText.allSatisfy({ $0 >= 48 && $0 <= 57 }), versionText.first != 48 else { return nil }
        var version = 0
        for digit in versionText { version = version * 10 + Int(digit - 48) }
        return ModelRef(id: id, version: version)
    }

    /// Whether `id` is a well-formed model id (the rule `model.schema.json` states for `id`).
    public static func isValidId(_ id: String) -> Bool {
        let utf8 = id.utf8
        guard let first = utf8.first, (1...64).contains(utf8.count), isLetter(first) else { return false }
        return utf8.allSatisfy { isLetter($0) || ($0 >= 48 && $0 <= 57) || $0 == 95 || $0 == 45 || $0 == 46 }
    }

    private static func isLetter(_ c: UInt8) -> Bool { (c >= 65 && c <= 90) || (c >= 97 && c <= 122) }
}
