/// The one error type of the Models module: a model file, unit, expression or model reference
/// that cannot be used. It names what to fix: the file, the JSON pointer inside it and, for
/// expressions, the position in the expression text.
///
/// `description` reads `room.v1.json: /telemetry/temperature/unit: unknown unit "degX"`.
/// When a registry finds several problems it throws one error with code `.invalidModels` whose
/// `problems` lists each of them (and whose description has one line per problem).
public struct ModelError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Machine-readable classification.
    public enum Code: String, Sendable, Hashable {
        /// A unit symbol that is not in the unit table.
        case unknownUnit = "unknown_unit"
        /// A conversion between units of different dimensions (bar → degC).
        case incompatibleUnits = "incompatible_units"
        /// An expression that does not parse (see `position`).
        case expressionSyntax = "expression_syntax"
        /// An identifier in an expression that is not a declared name.
        case unknownIdentifier = "unknown_identifier"
        /// A model document that violates `model.schema.json` or a semantic rule.
        case invalidModel = "invalid_model"
        /// Several problems; see `problems`.
        case invalidModels = "invalid_models"
        /// A model file or directory that cannot be read or is not JSON.
        case loadFailed = "load_failed"
        /// A `id@version` text that is not well formed.
        case invalidModelRef = "invalid_model_ref"
        /// A reference to a model the registry does not hold.
        case unknownModel = "unknown_model"
        /// A twin-id prefix rule configuration string with bad syntax.
        case invalidPrefixRules = "invalid_prefix_rules"
    }

    /// What kind of failure this is.
    public var code: Code
    /// The model file name (not the full path), when the error is about a file.
    public var file: String?
    /// JSON pointer inside the file (`/telemetry/temperature/unit`), when known.
    public var pointer: String?
    /// Human-readable explanation, without the file and pointer.
    public var message: String
    /// 0-based offset in the expression text, for expression errors.
    public var position: Int?
    /// The individual problems of an `.invalidModels` error (empty otherwise).
    public var problems: [ModelError]

    /// Creates an error.
    public init(code: Code, file: String? = nil, pointer: String? = nil, message: String, position: Int? = nil,
                problems: [ModelError] = []) {
        self.code = code
        self.file = file
        self.pointer = pointer
        self.message = message
        self.position = position
        self.problems = problems
    }

    /// `file: pointer: message`, leaving out the parts that are unknown; one line per problem
    /// for `.invalidModels`.
    public var description: String {
        if !problems.isEmpty { return ([message] + problems.map(\.description)).joined(separator: "\n  ") }
        var parts: [String] = []
        if let file { parts.append(file) }
        if let pointer { parts.append(pointer.isEmpty ? "/" : pointer) }
        parts.append(message)
        return parts.joined(separator: ": ")
    }

    /// The same error located in a file at a pointer (keeps an already set file or pointer).
    func located(file: String?, pointer: String) -> ModelError {
        var e = self
        if e.file == nil { e.file = file }
        if e.pointer == nil { e.pointer = pointer }
        return e
    }
}
