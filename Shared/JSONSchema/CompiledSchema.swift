import JSON

/// A schema compiled into a graph of nodes with every reference resolved. Immutable and
/// `Sendable`: compile once at start-up, validate from any number of threads.
public final class CompiledSchema: Sendable {
    /// Every node and resource; the graph's internal references are unowned, so this array is what keeps them alive.
    let nodes: [SchemaNode]
    let resources: [SchemaResource]
    let root: NodeRef
    let tracksDynamicScope: Bool
    let maxDepth: Int
    let maxSteps: Int
    /// Absolute URI of the root schema resource.
    public let rootURI: String

    /// Compiles `schema` (see `JSONSchema.compile`).
    public init(compiling schema: JSON, options: JSONSchemaOptions = JSONSchemaOptions()) throws {
        let compiler = SchemaCompiler(options: options)
        let doc = try compiler.indexDocument(schema, retrievalURI: options.baseURI)
        let rootNode = compiler.node(at: SchemaLocation(doc: doc, pointer: []))
        try compiler.compileAll()
        nodes = compiler.allNodes
        resources = compiler.allResources
        root = NodeRef(rootNode)
        tracksDynamicScope = compiler.usesDynamicScope
        maxDepth = options.maxEvaluationDepth
        maxSteps = options.maxEvaluationSteps
        rootURI = rootNode.resource.uri
    }

    /// Validates and reports every error with instance and keyword locations.
    public func validate(_ instance: JSON) -> ValidationResult {
        var evaluator = Evaluator(fast: false, tracksScope: tracksDynamicScope, maxDepth: maxDepth, maxSteps: maxSteps)
        var annotations = Annotations()
        var valid = withExtendedLifetime(self) {
            evaluator.validate(root.node, instance, &annotations, collect: false)
        }
        if let reason = evaluator.abortReason {
            valid = false
            evaluator.errors.append(ValidationError(instanceLocation: JSONPointer(), keywordLocation: JSONPointer(),
                                                    absoluteKeywordLocation: nil, keyword: "", message: reason))
        }
        return ValidationResult(isValid: valid, errors: valid ? [] : evaluator.errors)
    }

    /// Fast yes/no: stops at the first failing keyword and builds no error messages or paths.
    public func isValid(_ instance: JSON) -> Bool {
        var evaluator = Evaluator(fast: true, tracksScope: tracksDynamicScope, maxDepth: maxDepth, maxSteps: maxSteps)
        var annotations = Annotations()
        let valid = withExtendedLifetime(self) {
            evaluator.validate(root.node, instance, &annotations, collect: false)
        }
        return valid && evaluator.abortReason == nil
    }
}
