/// The one error type of the JSON module: what went wrong, where (byte offset), and a message
/// an operator can act on, e.g. `expected ',' or '}' at offset 17`.
///
/// Parsing stops at the first error, so a single offset is always meaningful.
public struct JSONError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Machine-readable classification, stable across releases so callers (dead-letter
    /// reasons, metrics) can switch on it without parsing messages.
    public enum Code: String, Sendable, Hashable, CaseIterable {
        /// The input ended in the middle of a value (or was empty).
        case unexpectedEndOfInput
        /// A byte that cannot start or continue the current construct.
        case unexpectedCharacter
        /// A number that breaks the RFC 8259 grammar (leading zero, missing digits...).
        case invalidNumber
        /// A number too large in magnitude for a `Double` that is not a plain integer literal (e.g. `1e400`).
        case numberOutOfRange
        /// A backslash escape that RFC 8259 does not define, or a malformed `\u` escape.
        case invalidEscape
        /// A `\u` escape naming an unpaired UTF-16 surrogate.
        case invalidUnicodeEscape
        /// A raw control character (below U+0020) inside a string.
        case controlCharacterInString
        /// Bytes that are not well-formed UTF-8.
        case invalidUTF8
        /// Arrays/objects nested deeper than `JSONParseOptions.maxDepth`.
        case depthLimitExceeded
        /// Non-whitespace bytes after the top-level value.
        case trailingData
        /// A JSON Pointer string that does not follow RFC 6901.
        case invalidPointer
    }

    /// What kind of failure this is.
    public var code: Code
    /// Byte offset into the input where the problem was detected (0-based).
    public var offset: Int
    /// Human-readable explanation, already containing the offset.
    public var message: String

    /// Creates an error; `message` should describe the expectation, the offset is appended by callers.
    public init(code: Code, offset: Int, message: String) {
        self.code = code
        self.offset = offset
        self.message = message
    }

    /// The message, so `"\(error)"` in logs reads naturally.
    public var description: String { message }
}
