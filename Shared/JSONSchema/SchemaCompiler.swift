import JSON

/// Options for compiling and validating a schema.
public struct JSONSchemaOptions: Sendable {
    /// Treat `format` as an assertion (invalid formats fail validation). Off by default, as the
    /// 2020-12 spec says; a meta-schema that requires the format-assertion vocabulary turns it on too.
    public var formatAssertion: Bool
    /// Where referenced documents come from (never the network).
    public var registry: SchemaRegistry
    /// Base URI of a root schema without `$id`; relative refs resolve against it.
    public var baseURI: String
    /// Maximum nesting of subschema evaluations; deeper evaluation fails with an error instead of
    /// exhausting the thread stack (hostile instances against recursive schemas).
    public var maxEvaluationDepth: Int
    /// Upper bound on subschema evaluations per validation; guards against exponential schemas
    /// (nested `anyOf` over recursive refs). Exceeding it makes the instance invalid.
    public var maxEvaluationSteps: Int
    /// Step budget of one regex match (see `ECMARegex.stepLimit`).
    public var regexStepLimit: Int

    /// Defaults: annotation-only `format`, empty registry, depth 512, 10 million steps.
    public init(formatAssertion: Bool = false, registry: SchemaRegistry = SchemaRegistry(),
                baseURI: String = "https://twinstream.invalid/schema.json",
                maxEvaluationDepth: Int = 512, maxEvaluationSteps: Int = 10_000_000, regexStepLimit: Int = 1_000_000) {
        self.formatAssertion = formatAssertion
        self.registry = registry
        self.baseURI = baseURI
        self.maxEvaluationDepth = maxEvaluationDepth
        self.maxEvaluationSteps = maxEvaluationSteps
        self.regexStepLimit = regexStepLimit
    }
}

/// Namespace for the entry point, so call sites read `JSONSchema.compile(schema)`.
public enum JSONSchema {
    /// Compiles a draft 2020-12 schema once; validate many instances with the result.
    /// Throws `JSONSchemaError` for malformed keywords, unresolvable refs, bad regexes.
    public static func compile(_ schema: JSON, options: JSONSchemaOptions = JSONSchemaOptions()) throws -> CompiledSchema {
        try CompiledSchema(compiling: schema, options: options)
    }
}

/// Vocabularies a schema resource uses (from its meta-schema's `$vocabulary`).
struct Vocabularies: OptionSet, Hashable {
    let rawValue: UInt8
    static let applicator = Vocabularies(rawValue: 1)
    static let validation = Vocabularies(rawValue: 2)
    static let unevaluated = Vocabularies(rawValue: 4)
    static let formatAssertion = Vocabularies(rawValue: 8)
    static let standard: Vocabularies = [.applicator, .validation, .unevaluated]

    static let uris: [String: Vocabularies] = [
        "https://json-schema.org/draft/2020-12/vocab/core": [],
        "https://json-schema.org/draft/2020-12/vocab/applicator": .applicator,
        "https://json-schema.org/draft/2020-12/vocab/unevaluated": .unevaluated,
        "https://json-schema.org/draft/2020-12/vocab/validation": .validation,
        "https://json-schema.org/draft/2020-12/vocab/meta-data": [],
        "https://json-schema.org/draft/2020-12/vocab/format-annotation": [],
        "https://json-schema.org/draft/2020-12/vocab/format-assertion": .formatAssertion,
        "https://json-schema.org/draft/2020-12/vocab/content": [],
    ]
}

/// A location in a loaded document: document number + JSON pointer tokens from its root.
struct SchemaLocation: Hashable {
    var doc: Int
    var pointer: [String]
}

/// Lexical context of a subschema: its base URI, resource and vocabularies.
struct LexicalContext {
    var base: URIReference
    var resourceURI: String
    /// Pointer tokens from the resource root to the subschema (for absolute locations).
    var relative: [String]
    var vocabularies: Vocabularies
}

/// Builds the node graph. Work is driven by a queue, not recursion, so deeply nested or
/// heavily cross-referenced schemas cannot overflow the stack while compiling.
final class SchemaCompiler {
    let options: JSONSchemaOptions
    var documents: [JSON] = []
    var resources: [String: SchemaLocation] = [:]
    var anchors: [String: SchemaLocation] = [:]
    var dynamicAnchorLocations: [String: [String: SchemaLocation]] = [:]
    var contexts: [SchemaLocation: LexicalContext] = [:]
    var nodes: [SchemaLocation: SchemaNode] = [:]
    var allNodes: [SchemaNode] = []
    var resourceObjects: [String: SchemaResource] = [:]
    var allResources: [SchemaResource] = []
    var pending: [(SchemaNode, SchemaLocation)] = []
    var usesDynamicScope = false
    var vocabularyInProgress: Set<String> = []

    static let metaschemaURI = "https://json-schema.org/draft/2020-12/schema"

    init(options: JSONSchemaOptions) { self.options = options }

    // MARK: Indexing

    /// Indexes every subschema of a document: resources (`$id`), anchors and lexical contexts.
    @discardableResult
    func indexDocument(_ json: JSON, retrievalURI: String) throws -> Int {
        let doc = documents.count
        documents.append(json)
        let base = URIReference(retrievalURI).withoutFragment
        let ctx = LexicalContext(base: base, resourceURI: base.description, relative: [], vocabularies: .standard)
        if resources[ctx.resourceURI] == nil { resources[ctx.resourceURI] = SchemaLocation(doc: doc, pointer: []) }
        try walk(json, SchemaLocation(doc: doc, pointer: []), parent: ctx, isDocumentRoot: true)
        return doc
    }

    static let schemaMapKeywords = ["$defs", "definitions", "properties", "patternProperties", "dependentSchemas"]
    static let schemaArrayKeywords = ["allOf", "anyOf", "oneOf", "prefixItems"]
    static let schemaKeywords = ["items", "contains", "additionalProperties", "propertyNames", "not", "if", "then", "else",
                                 "unevaluatedItems", "unevaluatedProperties", "contentSchema"]

    func walk(_ json: JSON, _ loc: SchemaLocation, parent: LexicalContext, isDocumentRoot: Bool) throws {
        guard case .object(let o) = json else {
            contexts[loc] = parent
            return
        }
        var ctx = parent
        if case .string(let id)? = o["$id"] {
            var uri = URIReference(id).resolved(against: parent.base)
            uri.fragment = nil
            ctx.base = uri
            ctx.resourceURI = uri.description
            ctx.relative = []
            if resources[ctx.resourceURI] == nil { resources[ctx.resourceURI] = loc }
        }
        if ctx.relative.isEmpty, case .string(let metaschema)? = o["$schema"] {
            ctx.vocabularies = try vocabularies(forMetaschema: metaschema)
        }
        if case .string(let anchor)? = o["$anchor"] {
            anchors[ctx.resourceURI + "#" + anchor] = loc
        }
        if case .string(let anchor)? = o["$dynamicAnchor"] {
            if anchors[ctx.resourceURI + "#" + anchor] == nil { anchors[ctx.resourceURI + "#" + anchor] = loc }
            dynamicAnchorLocations[ctx.resourceURI, default: [:]][anchor] = loc
        }
        contexts[loc] = ctx
        for (key, value) in o {
            if SchemaCompiler.schemaKeywords.contains(key) {
                var child = ctx
                child.relative.append(key)
                try walk(value, SchemaLocation(doc: loc.doc, pointer: loc.pointer + [key]), parent: child, isDocumentRoot: false)
            } else if SchemaCompiler.schemaArrayKeywords.contains(key), case .array(let items) = value {
                for (i, item) in items.enumerated() {
                    var child = ctx
                    child.relative += [key, String(i)]
                    try walk(item, SchemaLocation(doc: loc.doc, pointer: loc.pointer + [key, String(i)]), parent: child, isDocumentRoot: false)
                }
            } else if SchemaCompiler.schemaMapKeywords.contains(key), case .object(let members) = value {
                for (name, item) in members {
                    var child = ctx
                    child.relative += [key, name]
                    try walk(item, SchemaLocation(doc: loc.doc, pointer: loc.pointer + [key, name]), parent: child, isDocumentRoot: false)
                }
            }
        }
    }

    /// Reads the vocabularies a meta-schema declares. The standard 2020-12 meta-schema is known
    /// without loading it; an unknown required vocabulary is an error (the spec says to refuse).
    func vocabularies(forMetaschema text: String) throws -> Vocabularies {
        let uri = URIReference(text).withoutFragment.description
        if uri == SchemaCompiler.metaschemaURI { return .standard }
        guard !vocabularyInProgress.contains(uri) else { return .standard }
        vocabularyInProgress.insert(uri)
        defer { vocabularyInProgress.remove(uri) }
        guard let loc = try locateResource(uri), case .object(let meta)? = JSONPointer(tokens: loc.pointer).resolve(in: documents[loc.doc]),
              case .object(let declared)? = meta["$vocabulary"] else {
            return .standard  // unknown or vocabulary-less meta-schema: assume the standard vocabularies
        }
        var result: Vocabularies = []
        for (vocabulary, required) in declared {
            if let known = Vocabularies.uris[vocabulary] {
                result.formUnion(known)
            } else if required == .bool(true) {
                throw JSONSchemaError(code: .unsupportedVocabulary, location: uri,
                                      message: "meta-schema \(uri) requires unsupported vocabulary \(vocabulary)")
            }
        }
        return result
    }

    /// Finds (loading through the registry if needed) the root location of a resource.
    func locateResource(_ uri: String) throws -> SchemaLocation? {
        if let loc = resources[uri] { return loc }
        guard let document = try options.registry.document(for: uri) else { return nil }
        try indexDocument(document, retrievalURI: uri)
        return resources[uri]
    }

    // MARK: Reference resolution

    func resolveReference(_ reference: String, from ctx: LexicalContext, at loc: SchemaLocation, keyword: String) throws -> SchemaLocation {
        let target = URIReference(reference).resolved(against: ctx.base)
        let resourceURI = target.withoutFragment.description
        func unresolved(_ why: String) -> JSONSchemaError {
            JSONSchemaError(code: .unresolvedReference, location: absoluteLocation(ctx) + "/" + keyword,
                            message: "cannot resolve \(keyword) \"\(reference)\" (\(target)): \(why)")
        }
        guard let root = try locateResource(resourceURI) else { throw unresolved("no document registered for \(resourceURI)") }
        let fragment = target.fragment ?? ""
        if fragment.isEmpty { return root }
        if fragment.hasPrefix("/") {
            guard let decoded = fragment.removingPercentEncodingJSON,
                  let pointer = try? JSONPointer(parsing: decoded) else { throw unresolved("invalid JSON pointer fragment") }
            let loc = SchemaLocation(doc: root.doc, pointer: root.pointer + pointer.tokens)
            guard JSONPointer(tokens: loc.pointer).resolve(in: documents[loc.doc]) != nil else { throw unresolved("pointer does not exist") }
            return loc
        }
        guard let anchor = anchors[resourceURI + "#" + fragment] else { throw unresolved("no anchor \"\(fragment)\"") }
        return anchor
    }

    // MARK: Nodes

    func context(for loc: SchemaLocation) -> LexicalContext {
        if let ctx = contexts[loc] { return ctx }
        // A ref into a place the index did not visit (e.g. inside an unknown keyword): inherit from
        // the nearest indexed ancestor.
        var k = loc.pointer.count
        while k > 0 {
            k -= 1
            if var ctx = contexts[SchemaLocation(doc: loc.doc, pointer: Array(loc.pointer[..<k]))] {
                ctx.relative += loc.pointer[k...]
                return ctx
            }
        }
        return contexts[SchemaLocation(doc: loc.doc, pointer: [])]!
    }

    func absoluteLocation(_ ctx: LexicalContext) -> String {
        ctx.resourceURI + "#" + JSONPointer(tokens: ctx.relative).description
    }

    func resource(_ uri: String) -> SchemaResource {
        if let r = resourceObjects[uri] { return r }
        let r = SchemaResource(uri: uri)
        resourceObjects[uri] = r
        allResources.append(r)
        // Dynamic anchors of every resource that can be entered must exist as nodes before
        // validation starts (nodes are immutable then).
        for (name, loc) in dynamicAnchorLocations[uri] ?? [:] {
            r.dynamicAnchors[name] = NodeRef(node(at: loc))
        }
        return r
    }

    /// The node for a location, created (and queued for compilation) on first use.
    func node(at loc: SchemaLocation) -> SchemaNode {
        if let n = nodes[loc] { return n }
        let ctx = context(for: loc)
        let r = resource(ctx.resourceURI)
        if let n = nodes[loc] { return n }  // created while registering the resource's dynamic anchors
        let n = SchemaNode(absoluteLocation: absoluteLocation(ctx), resource: r)
        nodes[loc] = n
        allNodes.append(n)
        pending.append((n, loc))
        return n
    }

    func compileAll() throws {
        while let (node, loc) = pending.popLast() {
            try compile(node, at: loc)
        }
    }

    func invalid(_ ctx: LexicalContext, _ keyword: String, _ message: String) -> JSONSchemaError {
        JSONSchemaError(code: .invalidKeyword, location: absoluteLocation(ctx) + "/" + keyword, message: message)
    }

    func compile(_ node: SchemaNode, at loc: SchemaLocation) throws {
        guard let json = JSONPointer(tokens: loc.pointer).resolve(in: documents[loc.doc]) else {
            throw JSONSchemaError(code: .unresolvedReference, location: node.absoluteLocation, message: "schema location does not exist")
        }
        let ctx = context(for: loc)
        switch json {
        case .bool(true): node.kind = .alwaysValid; return
        case .bool(false): node.kind = .alwaysInvalid; return
        case .object: break
        default:
            throw JSONSchemaError(code: .invalidKeyword, location: node.absoluteLocation,
                                  message: "a schema must be an object or a boolean, found \(json.typeName)")
        }
        guard case .object(let o) = json else { return }
        let vocab = ctx.vocabularies
        let asserting = vocab.contains(.validation)
        let applying = vocab.contains(.applicator)

        func child(_ tokens: String...) -> NodeRef {
            NodeRef(self.node(at: SchemaLocation(doc: loc.doc, pointer: loc.pointer + tokens)))
        }
        func nonNegativeInt(_ key: String, _ value: JSON) throws -> Int {
            guard case .number(let n) = value, n.isInteger, n.doubleValue >= 0 else {
                throw invalid(ctx, key, "\(key) must be a non-negative integer")
            }
            return n.int64Value.map { Int(clamping: $0) } ?? Int.max
        }
        func number(_ key: String, _ value: JSON) throws -> JSONNumber {
            guard case .number(let n) = value else { throw invalid(ctx, key, "\(key) must be a number") }
            return n
        }
        func schemaArray(_ key: String, _ value: JSON) throws -> [NodeRef] {
            guard case .array(let a) = value, !a.isEmpty else { throw invalid(ctx, key, "\(key) must be a non-empty array of schemas") }
            return a.indices.map { child(key, String($0)) }
        }

        var keywords: [Keyword] = []
        var trailing: [Keyword] = []
        let members = ObjectMembers()
        var membersIndex: Int?
        var itemsIndex: Int?
        var prefix: [NodeRef] = []
        var rest: NodeRef?

        if case .string(let anchor)? = o["$dynamicAnchor"] { node.dynamicAnchor = anchor }

        for (key, value) in o {
            switch key {
            case "$ref":
                guard case .string(let ref) = value else { throw invalid(ctx, key, "$ref must be a string") }
                let target = try resolveReference(ref, from: ctx, at: loc, keyword: key)
                keywords.append(.ref(NodeRef(self.node(at: target))))
            case "$dynamicRef":
                guard case .string(let ref) = value else { throw invalid(ctx, key, "$dynamicRef must be a string") }
                let target = try resolveReference(ref, from: ctx, at: loc, keyword: key)
                var dynamicName: String?
                if let fragment = URIReference(ref).fragment, !fragment.isEmpty, !fragment.hasPrefix("/"),
                   case .string(let anchor)? = JSONPointer(tokens: target.pointer).resolve(in: documents[target.doc])?["$dynamicAnchor"],
                   anchor == fragment {
                    dynamicName = fragment
                    usesDynamicScope = true
                }
                keywords.append(.dynamicRef(DynamicRefTarget(staticTarget: NodeRef(self.node(at: target)), dynamicName: dynamicName)))

            // Applicator vocabulary
            case "allOf" where applying: keywords.append(.allOf(try schemaArray(key, value)))
            case "anyOf" where applying: keywords.append(.anyOf(try schemaArray(key, value)))
            case "oneOf" where applying: keywords.append(.oneOf(try schemaArray(key, value)))
            case "not" where applying: keywords.append(.not(child(key)))
            case "if" where applying:
                keywords.append(.conditional(ifNode: child("if"), then: o["then"] != nil ? child("then") : nil,
                                             else: o["else"] != nil ? child("else") : nil))
            case "dependentSchemas" where applying:
                guard case .object(let m) = value else { throw invalid(ctx, key, "dependentSchemas must be an object") }
                keywords.append(.dependentSchemas(m.map { ($0.key, child(key, $0.key)) }))
            case "prefixItems" where applying:
                prefix = try schemaArray(key, value)
                if itemsIndex == nil { itemsIndex = keywords.count; keywords.append(.uniqueItems) }  // placeholder
            case "items" where applying:
                rest = child(key)
                if itemsIndex == nil { itemsIndex = keywords.count; keywords.append(.uniqueItems) }  // placeholder
            case "contains" where applying:
                var minimum = 1
                var maximum: Int?
                if asserting {
                    if let v = o["minContains"] { minimum = try nonNegativeInt("minContains", v) }
                    if let v = o["maxContains"] { maximum = try nonNegativeInt("maxContains", v) }
                }
                keywords.append(.contains(child(key), min: minimum, max: maximum))
            case "properties" where applying:
                guard case .object(let m) = value else { throw invalid(ctx, key, "properties must be an object") }
                let table = PropertyTable()
                for (name, _) in m { table.names.append(name); table.nodes.append(child(key, name)) }
                table.finish()
                members.properties = table
                if membersIndex == nil { membersIndex = keywords.count; keywords.append(.uniqueItems) }  // placeholder
            case "patternProperties" where applying:
                guard case .object(let m) = value else { throw invalid(ctx, key, "patternProperties must be an object") }
                for (pattern, _) in m {
                    members.patterns.append((try regex(pattern, ctx, key), child(key, pattern)))
                }
                if membersIndex == nil { membersIndex = keywords.count; keywords.append(.uniqueItems) }
            case "additionalProperties" where applying:
                members.additional = child(key)
                if membersIndex == nil { membersIndex = keywords.count; keywords.append(.uniqueItems) }
            case "propertyNames" where applying: keywords.append(.propertyNames(child(key)))

            // Unevaluated vocabulary: evaluated last, after every annotation is known.
            case "unevaluatedItems" where vocab.contains(.unevaluated):
                trailing.append(.unevaluatedItems(child(key)))
                node.collectsItems = true
            case "unevaluatedProperties" where vocab.contains(.unevaluated):
                trailing.append(.unevaluatedProperties(child(key)))
                node.collectsProperties = true

            // Validation vocabulary
            case "type" where asserting:
                var mask: TypeMask = []
                let names: [JSON]
                if case .array(let a) = value { names = a } else { names = [value] }
                for n in names {
                    guard case .string(let s) = n, let m = TypeMask.named(s) else { throw invalid(ctx, key, "unknown type \(n)") }
                    mask.formUnion(m)
                }
                keywords.append(.type(mask))
            case "const" where asserting: keywords.append(.const(value))
            case "enum" where asserting:
                guard case .array(let a) = value else { throw invalid(ctx, key, "enum must be an array") }
                keywords.append(.enumeration(a))
            case "multipleOf" where asserting:
                let n = try number(key, value)
                guard n.doubleValue > 0 else { throw invalid(ctx, key, "multipleOf must be greater than 0") }
                keywords.append(.multipleOf(n))
            case "maximum" where asserting: keywords.append(.maximum(try number(key, value)))
            case "exclusiveMaximum" where asserting: keywords.append(.exclusiveMaximum(try number(key, value)))
            case "minimum" where asserting: keywords.append(.minimum(try number(key, value)))
            case "exclusiveMinimum" where asserting: keywords.append(.exclusiveMinimum(try number(key, value)))
            case "maxLength" where asserting: keywords.append(.maxLength(try nonNegativeInt(key, value)))
            case "minLength" where asserting: keywords.append(.minLength(try nonNegativeInt(key, value)))
            case "pattern" where asserting:
                guard case .string(let p) = value else { throw invalid(ctx, key, "pattern must be a string") }
                keywords.append(.pattern(try regex(p, ctx, key)))
            case "maxItems" where asserting: keywords.append(.maxItems(try nonNegativeInt(key, value)))
            case "minItems" where asserting: keywords.append(.minItems(try nonNegativeInt(key, value)))
            case "uniqueItems" where asserting:
                guard case .bool(let b) = value else { throw invalid(ctx, key, "uniqueItems must be a boolean") }
                if b { keywords.append(.uniqueItems) }
            case "maxProperties" where asserting: keywords.append(.maxProperties(try nonNegativeInt(key, value)))
            case "minProperties" where asserting: keywords.append(.minProperties(try nonNegativeInt(key, value)))
            case "required" where asserting:
                guard case .array(let a) = value else { throw invalid(ctx, key, "required must be an array of strings") }
                let names = try a.map { (n: JSON) -> String in
                    guard case .string(let s) = n else { throw invalid(ctx, key, "required must be an array of strings") }
                    return s
                }
                if !names.isEmpty { keywords.append(.required(names)) }
            case "dependentRequired" where asserting:
                guard case .object(let m) = value else { throw invalid(ctx, key, "dependentRequired must be an object") }
                let deps = try m.map { (entry) -> (String, [String]) in
                    guard case .array(let a) = entry.value else { throw invalid(ctx, key, "dependentRequired values must be arrays") }
                    return (entry.key, try a.map {
                        guard case .string(let s) = $0 else { throw invalid(ctx, key, "dependentRequired values must be strings") }
                        return s
                    })
                }
                keywords.append(.dependentRequired(deps))

            case "format":
                guard options.formatAssertion || vocab.contains(.formatAssertion), case .string(let name) = value,
                      let kind = FormatKind(rawValue: name) else { break }
                keywords.append(.format(kind, name: name))
            default:
                break  // unknown keywords and annotations ($comment, title, default, content*...) do not validate
            }
        }
        if let i = membersIndex { keywords[i] = .objectMembers(members) }
        if let i = itemsIndex { keywords[i] = .items(prefix: prefix, rest: rest) }
        node.setKeywords(keywords + trailing)
    }

    func regex(_ pattern: String, _ ctx: LexicalContext, _ key: String) throws -> ECMARegex {
        do {
            var r = try ECMARegex(pattern)
            r.stepLimit = options.regexStepLimit
            return r
        } catch var e as JSONSchemaError {
            e.location = absoluteLocation(ctx) + "/" + key
            throw e
        }
    }
}

extension String {
    /// Percent-decodes a URI fragment (`%25` → `%`); nil on malformed escapes or invalid UTF-8.
    var removingPercentEncodingJSON: String? {
        guard contains("%") else { return self }
        var bytes: [UInt8] = []
        var it = utf8.makeIterator()
        while let b = it.next() {
            if b == UInt8(ascii: "%") {
                guard let h = it.next(), let l = it.next(), let hv = hexNibble(h), let lv = hexNibble(l) else { return nil }
                bytes.append(hv << 4 | lv)
            } else {
                bytes.append(b)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }
}

func hexNibble(_ b: UInt8) -> UInt8? {
    switch b {
    case 48...57: return b - 48
    case 65...70: return b - 55
    case 97...102: return b - 87
    default: return nil
    }
}
