import JSON

/// Why a document does not satisfy a contract: machine-readable, so it can be a dead-letter reason.
public struct ContractError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Stable reason code, e.g. `invalid_json`, `missing_field`, `wrong_type`, `invalid_value`.
    public var code: String
    /// JSON pointer of the offending value inside the document (`""` is the whole document).
    public var pointer: String
    public var message: String
    public var expected: String?
    public var actual: String?

    public init(code: String, pointer: String, message: String, expected: String? = nil, actual: String? = nil) {
        self.code = code
        self.pointer = pointer
        self.message = message
        self.expected = expected
        self.actual = actual
    }

    public var description: String { "\(code) at '\(pointer)': \(message)" }

    /// Writes the reason as the `{code, pointer, message, expected?, actual?}` object contracts carry.
    public func write(to w: inout JSONWriter) {
        w.beginObject()
        w.field("code", code); w.field("pointer", pointer); w.field("message", message)
        if let expected { w.field("expected", expected) }
        if let actual { w.field("actual", actual) }
        w.endObject()
    }

    /// Reads a reason object written by `write(to:)`; `pointer` locates it in its document.
    public init(json: JSON, pointer: String) throws(ContractError) {
        let f = try Fields(json, pointer: pointer)
        self.init(code: try f.string("code"), pointer: try f.string("pointer"), message: try f.string("message"),
                  expected: try f.optionalString("expected"), actual: try f.optionalString("actual"))
    }

    static func missing(_ pointer: String, _ field: String) -> ContractError {
        ContractError(code: "missing_field", pointer: pointer, message: "required field '\(field)' is missing", expected: field)
    }

    static func wrongType(_ pointer: String, expected: String, actual: JSON) -> ContractError {
        ContractError(code: "wrong_type", pointer: pointer, message: "expected \(expected), found \(actual.typeName)",
                      expected: expected, actual: actual.typeName)
    }

    static func invalidJSON(_ error: JSONError) -> ContractError {
        ContractError(code: "invalid_json", pointer: "", message: error.message, actual: "byte \(error.offset)")
    }
}

/// Field access that reports a `ContractError` with the field's pointer.
struct Fields {
    let object: JSONObject
    let pointer: String

    init(_ json: JSON, pointer: String = "") throws(ContractError) {
        guard case .object(let object) = json else { throw .wrongType(pointer, expected: "object", actual: json) }
        self.object = object
        self.pointer = pointer
    }

    func path(_ key: String) -> String {
        // JSONPointer.escape returns a key without `~` or `/` as it is (Foundation's replacing
        // copied every key twice: a third of the query view's cost per state document).
        pointer + "/" + JSONPointer.escape(key)
    }

    func string(_ key: String) throws(ContractError) -> String {
        guard let value = object[key], !value.isNull else { throw .missing(path(key), key) }
        guard case .string(let s) = value else { throw .wrongType(path(key), expected: "string", actual: value) }
        return s
    }

    func optionalString(_ key: String) throws(ContractError) -> String? {
        guard let value = object[key], !value.isNull else { return nil }
        guard case .string(let s) = value else { throw .wrongType(path(key), expected: "string", actual: value) }
        return s
    }

    func int(_ key: String) throws(ContractError) -> Int64 {
        guard let value = object[key], !value.isNull else { throw .missing(path(key), key) }
        guard case .number(let n) = value, let i = n.int64Value else { throw .wrongType(path(key), expected: "integer", actual: value) }
        return i
    }

    func optionalInt(_ key: String) throws(ContractError) -> Int64? {
        guard let value = object[key], !value.isNull else { return nil }
        guard case .number(let n) = value, let i = n.int64Value else { throw .wrongType(path(key), expected: "integer", actual: value) }
        return i
    }

    func double(_ key: String) throws(ContractError) -> Double {
        guard let value = object[key], !value.isNull else { throw .missing(path(key), key) }
        guard case .number(let n) = value else { throw .wrongType(path(key), expected: "number", actual: value) }
        return n.doubleValue
    }

    func optionalDouble(_ key: String) throws(ContractError) -> Double? {
        guard let value = object[key], !value.isNull else { return nil }
        guard case .number(let n) = value else { throw .wrongType(path(key), expected: "number", actual: value) }
        return n.doubleValue
    }

    func optionalTime(_ key: String) throws(ContractError) -> Int64? {
        guard let value = object[key], !value.isNull else { return nil }
        return try time(key)
    }

    func object(_ key: String) throws(ContractError) -> JSONObject {
        guard let value = object[key], !value.isNull else { throw .missing(path(key), key) }
        guard case .object(let o) = value else { throw .wrongType(path(key), expected: "object", actual: value) }
        return o
    }

    func bool(_ key: String) throws(ContractError) -> Bool {
        guard let value = object[key], !value.isNull else { throw .missing(path(key), key) }
        guard case .bool(let b) = value else { throw .wrongType(path(key), expected: "boolean", actual: value) }
        return b
    }

    func optionalObject(_ key: String) throws(ContractError) -> JSONObject? {
        guard let value = object[key], !value.isNull else { return nil }
        guard case .object(let o) = value else { throw .wrongType(path(key), expected: "object", actual: value) }
        return o
    }

    func time(_ key: String) throws(ContractError) -> Int64 {
        let text = try string(key)
        guard let ms = Timestamp.parse(text) else {
            throw ContractError(code: "invalid_timestamp", pointer: path(key), message: "'\(text)' is not an RFC 3339 date-time",
                                expected: "RFC 3339 date-time", actual: text)
        }
        return ms
    }
}

/// Parses bytes as JSON, mapping syntax errors to `invalid_json`.
public func parseDocument(_ bytes: [UInt8]) throws(ContractError) -> JSON {
    do {
        return try JSON(parsing: bytes)
    } catch let error as JSONError {
        throw .invalidJSON(error)
    } catch {
        throw ContractError(code: "invalid_json", pointer: "", message: "\(error)")
    }
}

/// A contract document: decoded from JSON, checked, and so from a message's bytes too.
public protocol ContractDocument {
    init(json: JSON) throws(ContractError)
}

extension ContractDocument {
    /// Parses `bytes` (syntax errors become `invalid_json`) and decodes the document; unknown
    /// fields are ignored (readers accept additive minors).
    public init(bytes: [UInt8]) throws(ContractError) {
        try self.init(json: parseDocument(bytes))
    }
}
