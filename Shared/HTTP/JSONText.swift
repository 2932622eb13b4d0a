/// The minimal JSON writing this module needs (problem documents) without depending on the
/// platform's JSON module: string escaping per RFC 8259 §7 and number formatting.
public enum JSONText {
    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// Appends `text` as a quoted JSON string: quote, backslash and every control character
    /// are escaped; other characters are copied as UTF-8.
    public static func appendString(_ text: String, to output: inout [UInt8]) {
        output.append(0x22)
        for byte in text.utf8 {
            switch byte {
            case 0x22: output.append(0x5C); output.append(0x22)
            case 0x5C: output.append(0x5C); output.append(0x5C)
            case 0x0A: output.append(0x5C); output.append(0x6E)
            case 0x0D: output.append(0x5C); output.append(0x72)
            case 0x09: output.append(0x5C); output.append(0x74)
            case 0x08: output.append(0x5C); output.append(0x62)
            case 0x0C: output.append(0x5C); output.append(0x66)
            case 0x00..<0x20, 0x7F:
                output.append(contentsOf: [0x5C, 0x75, 0x30, 0x30])
                output.append(hexDigits[Int(byte >> 4)])
                output.append(hexDigits[Int(byte & 0x0F)])
            default:
                output.append(byte)
            }
        }
        output.append(0x22)
    }

    /// `text` as a quoted, escaped JSON string.
    public static func quoted(_ text: String) -> String {
        var output: [UInt8] = []
        appendString(text, to: &output)
        return String(decoding: output, as: UTF8.self)
    }

    /// Appends a number; NaN and infinities have no JSON form and become null.
    public static func appendNumber(_ value: Double, to output: inout [UInt8]) {
        guard value.isFinite else {
            output.append(contentsOf: Array("null".utf8))
            return
        }
        if value == value.rounded(), abs(value) < 1e15 {
            output.append(contentsOf: Array(String(Int64(value)).utf8))
        } else {
            output.append(contentsOf: Array("\(value)".utf8))
        }
    }
}

/// A value of an extension member in a problem document.
public enum ProblemValue: Sendable, Equatable {
    /// A JSON string.
    case string(String)
    /// A JSON integer.
    case int(Int)
    /// A JSON number (NaN and infinities are written as null).
    case double(Double)
    /// true or false.
    case bool(Bool)
    /// null.
    case null
    /// An array of strings.
    case strings([String])
    /// Already-serialized JSON (e.g. from the platform's JSON module), inserted verbatim;
    /// the caller guarantees it is valid JSON.
    case rawJSON([UInt8])

    func append(to output: inout [UInt8]) {
        switch self {
        case .string(let text): JSONText.appendString(text, to: &output)
        case .int(let value): output.append(contentsOf: Array(String(value).utf8))
        case .double(let value): JSONText.appendNumber(value, to: &output)
        case .bool(let value): output.append(contentsOf: Array((value ? "true" : "false").utf8))
        case .null: output.append(contentsOf: Array("null".utf8))
        case .strings(let values):
            output.append(0x5B)
            for (index, value) in values.enumerated() {
                if index > 0 { output.append(0x2C) }
                JSONText.appendString(value, to: &output)
            }
            output.append(0x5D)
        case .rawJSON(let bytes): output.append(contentsOf: bytes)
        }
    }
}

/// An RFC 9457 problem document (`application/problem+json`).
public struct ProblemDetails: Sendable {
    /// A URI identifying the problem type; "about:blank" means "see the status".
    public var type: String
    /// A short summary of the problem type; defaults to the status's reason phrase.
    public var title: String?
    /// The HTTP status (also sent as the response status).
    public var status: HTTPStatus
    /// An explanation specific to this occurrence.
    public var detail: String?
    /// A URI identifying this occurrence (e.g. the request path).
    public var instance: String?
    /// Extension members in order, e.g. `("requestId", .string(id))`. Names that clash with
    /// the standard members are skipped when writing.
    public var extensions: [(String, ProblemValue)]

    /// Creates a problem; the title defaults to the status's reason phrase.
    public init(status: HTTPStatus, title: String? = nil, detail: String? = nil,
                type: String = "about:blank", instance: String? = nil,
                extensions: [(String, ProblemValue)] = []) {
        self.type = type
        self.title = title ?? status.reasonPhrase
        self.status = status
        self.detail = detail
        self.instance = instance
        self.extensions = extensions
    }

    private static let reserved: Set<String> = ["type", "title", "status", "detail", "instance"]

    /// The document as compact JSON bytes.
    public func jsonBytes() -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(128)
        output.append(contentsOf: Array("{\"type\":".utf8))
        JSONText.appendString(type, to: &output)
        if let title {
            output.append(contentsOf: Array(",\"title\":".utf8))
            JSONText.appendString(title, to: &output)
        }
        output.append(contentsOf: Array(",\"status\":\(status.code)".utf8))
        if let detail {
            output.append(contentsOf: Array(",\"detail\":".utf8))
            JSONText.appendString(detail, to: &output)
        }
        if let instance {
            output.append(contentsOf: Array(",\"instance\":".utf8))
            JSONText.appendString(instance, to: &output)
        }
        var seen = Set<String>()
        for (name, value) in extensions where !Self.reserved.contains(name) && seen.insert(name).inserted {
            output.append(0x2C)
            JSONText.appendString(name, to: &output)
            output.append(0x3A)
            value.append(to: &output)
        }
        output.append(0x7D)
        return output
    }
}
