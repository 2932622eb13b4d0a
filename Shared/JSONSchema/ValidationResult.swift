import JSON

/// One reason an instance is invalid, in the spirit of the JSON Schema "basic" output unit.
public struct ValidationError: Sendable, Hashable, CustomStringConvertible {
    /// Where in the instance (e.g. `/values/temperature`).
    public var instanceLocation: JSONPointer
    /// The evaluation path through the schema, including `$ref` hops (e.g. `/properties/temperature/maximum`).
    public var keywordLocation: JSONPointer
    /// The keyword's absolute location: resource URI + `#` + pointer within that resource
    /// (e.g. `https://twinstream.invalid/pump.json#/properties/temperature/maximum`).
    public var absoluteKeywordLocation: String?
    /// The keyword that failed (`maximum`, `required`, ...; empty for a `false` schema).
    public var keyword: String
    /// Human explanation, e.g. `7.5 is greater than the maximum 5`.
    public var message: String

    /// Creates an error (mostly for tests; the validator builds these).
    public init(instanceLocation: JSONPointer, keywordLocation: JSONPointer, absoluteKeywordLocation: String?,
                keyword: String, message: String) {
        self.instanceLocation = instanceLocation
        self.keywordLocation = keywordLocation
        self.absoluteKeywordLocation = absoluteKeywordLocation
        self.keyword = keyword
        self.message = message
    }

    /// `instanceLocation: message (keywordLocation)`; the root instance shows as `/`.
    public var description: String {
        let where_ = instanceLocation.isRoot ? "/" : instanceLocation.description
        return "\(where_): \(message) (at \(keywordLocation.isRoot ? "/" : keywordLocation.description))"
    }

    /// The error as a JSON object (`instanceLocation`, `keywordLocation`, `absoluteKeywordLocation`,
    /// `keyword`, `error`), for dead-letter reasons and HTTP responses.
    public var json: JSON {
        var o: JSONObject = ["instanceLocation": .string(instanceLocation.description),
                             "keywordLocation": .string(keywordLocation.description)]
        if let absoluteKeywordLocation { o["absoluteKeywordLocation"] = .string(absoluteKeywordLocation) }
        o["keyword"] = .string(keyword)
        o["error"] = .string(message)
        return .object(o)
    }
}

/// The outcome of `CompiledSchema.validate`: valid, or every error found.
public struct ValidationResult: Sendable, Hashable {
    /// True when the instance is valid.
    public var isValid: Bool
    /// Every error, in evaluation order (empty when valid). Errors from subschemas that did not
    /// decide the outcome (a failed `anyOf` branch when another branch passed) are not included.
    public var errors: [ValidationError]

    /// Creates a result.
    public init(isValid: Bool, errors: [ValidationError]) {
        self.isValid = isValid
        self.errors = errors
    }
}
