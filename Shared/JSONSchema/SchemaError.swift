/// The one error type of the JSONSchema module: a schema that cannot be compiled or loaded.
///
/// Validation failures are not errors (they are `ValidationError` values in a
/// `ValidationResult`); this type is for problems an operator must fix in the schema or its
/// registry, so it names the offending schema location.
public struct JSONSchemaError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Machine-readable classification.
    public enum Code: String, Sendable, Hashable {
        /// A keyword has a value of the wrong shape (e.g. `"minimum": "5"`).
        case invalidKeyword
        /// A `$ref`/`$dynamicRef` that no registered or loadable document provides.
        case unresolvedReference
        /// An `$id`, `$ref` or `$schema` that is not a valid URI reference.
        case invalidURI
        /// A `pattern`/`patternProperties` regex that is not valid ECMA-262.
        case invalidRegex
        /// The meta-schema requires a vocabulary this implementation does not know.
        case unsupportedVocabulary
        /// A document could not be read or parsed (registry loading).
        case loadFailed
    }

    /// What kind of failure this is.
    public var code: Code
    /// Where in the schema it happened (absolute URI with JSON pointer fragment when known).
    public var location: String
    /// Human-readable explanation.
    public var message: String

    /// Creates an error.
    public init(code: Code, location: String, message: String) {
        self.code = code
        self.location = location
        self.message = message
    }

    /// `message at location`, for logs.
    public var description: String { location.isEmpty ? message : "\(message) (at \(location))" }
}
