// TwinQuery: the pure read-side logic — the filter language (`TwinFilter`), its compiled
// evaluation over `FilterableTwin`s, relationship filters, sorting and paging with opaque cursors
// (`TwinListQuery`), freshness (`Freshness`) and the bounded property history (`PropertyHistory`).
// No HTTP, no Kafka: the views and the query API build on it, and map `QueryError` to a 400.

/// The one error type of this module: a request the caller must change. `parameter` names the
/// query parameter at fault (`filter`, `sort`, `cursor`, `limit`, `from`, `to`, `step`…); for
/// filter errors `position` is the 0-based offset (in Unicode scalars, which is the character
/// offset for ASCII) of the offending `token` in the filter text.
public struct QueryError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Machine-readable reasons.
    public enum Code: String, Sendable {
        case empty = "empty_filter"
        case tooLong = "filter_too_long"
        case tooDeep = "filter_too_deep"
        case tooManyTerms = "too_many_terms"
        case unexpectedToken = "unexpected_token"
        case unexpectedEnd = "unexpected_end"
        case unterminatedString = "unterminated_string"
        case invalidEscape = "invalid_escape"
        case unknownOperator = "unknown_operator"
        case unknownField = "unknown_field"
        case invalidValue = "invalid_value"
        case unsupportedOperator = "unsupported_operator"
        case invalidSort = "invalid_sort"
        case invalidCursor = "invalid_cursor"
        case invalidLimit = "invalid_limit"
        case invalidRange = "invalid_range"
    }

    public var code: Code
    public var message: String
    /// The query parameter at fault.
    public var parameter: String
    /// 0-based offset of `token` in the parameter's text (always set for `filter` errors).
    public var position: Int?
    /// The offending text (empty at the end of input).
    public var token: String?

    public init(_ code: Code, _ message: String, parameter: String, position: Int? = nil, token: String? = nil) {
        self.code = code
        self.message = message
        self.parameter = parameter
        self.position = position
        self.token = token
    }

    public var description: String {
        var text = "\(parameter): \(message)"
        if let position { text += " at \(position)" }
        if let token, !token.isEmpty { text += " ('\(token)')" }
        return text
    }
}

/// Filter errors are `QueryError`s with `parameter == "filter"` and a position.
public typealias FilterError = QueryError
