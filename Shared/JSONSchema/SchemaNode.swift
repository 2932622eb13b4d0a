import JSON

/// One compiled subschema. Nodes form a graph (refs may be cyclic), so every node is owned by
/// its `CompiledSchema` (`CompiledSchema.nodes`) and nodes point at each other through
/// `NodeRef` (unowned(unsafe)): no retain cycles, and no reference counting on the hot path.
///
/// `@unchecked Sendable`: nodes are mutated only while the compiler builds them, before the
/// `CompiledSchema` that owns them is returned; afterwards they are read-only.
final class SchemaNode: @unchecked Sendable {
    enum Kind { case alwaysValid, alwaysInvalid, keywords }

    // Written only while compiling; `@exclusivity(unchecked)` drops the dynamic exclusivity
    // bookkeeping (a thread-local access set) that every read of a class `var` would otherwise pay.
    @exclusivity(unchecked) var kind: Kind = .keywords
    /// Compiled keywords, unevaluated* last. Held in a raw buffer so evaluation reads them in place:
    /// no enum copies and no exclusivity bookkeeping on the hot path. Written once by the compiler.
    @exclusivity(unchecked) private(set) var keywords = UnsafeMutableBufferPointer<Keyword>(start: nil, count: 0)

    func setKeywords(_ list: [Keyword]) {
        let buffer = UnsafeMutableBufferPointer<Keyword>.allocate(capacity: list.count)
        _ = buffer.initialize(from: list)
        keywords = buffer
    }

    deinit {
        keywords.deinitialize()
        keywords.deallocate()
    }
    /// Absolute location of this subschema: resource URI + `#` + JSON pointer within the resource.
    @exclusivity(unchecked) var absoluteLocation: String
    /// The schema resource (nearest `$id` or document root) this node belongs to, for `$dynamicRef` scoping.
    @exclusivity(unchecked) unowned(unsafe) var resource: SchemaResource
    /// Has `unevaluatedProperties` / `unevaluatedItems`: needs annotations from in-place applicators.
    @exclusivity(unchecked) var collectsProperties = false
    @exclusivity(unchecked) var collectsItems = false
    /// The node's own `$dynamicAnchor` name, if any (decides whether a `$dynamicRef` is dynamic).
    var dynamicAnchor: String?

    init(absoluteLocation: String, resource: SchemaResource) {
        self.absoluteLocation = absoluteLocation
        self.resource = resource
    }
}

/// A schema resource: the unit of `$dynamicRef` scope.
final class SchemaResource: @unchecked Sendable {
    let uri: String
    /// `$dynamicAnchor` name → node, for anchors whose nearest resource is this one.
    @exclusivity(unchecked) var dynamicAnchors: [String: NodeRef] = [:]
    init(uri: String) { self.uri = uri }
}

/// A non-owning reference to a node (the owning `CompiledSchema` keeps all nodes alive).
struct NodeRef: @unchecked Sendable {
    unowned(unsafe) let node: SchemaNode
    init(_ node: SchemaNode) { self.node = node }
}

/// JSON Schema type names as a bit set, so `type` is one AND.
struct TypeMask: OptionSet, Sendable {
    let rawValue: UInt8
    static let null = TypeMask(rawValue: 1)
    static let boolean = TypeMask(rawValue: 2)
    static let object = TypeMask(rawValue: 4)
    static let array = TypeMask(rawValue: 8)
    static let number = TypeMask(rawValue: 16)
    static let string = TypeMask(rawValue: 32)
    static let integer = TypeMask(rawValue: 64)

    static func named(_ name: String) -> TypeMask? {
        switch name {
        case "null": return .null
        case "boolean": return .boolean
        case "object": return .object
        case "array": return .array
        case "number": return .number
        case "string": return .string
        case "integer": return .integer
        default: return nil
        }
    }

    var names: [String] {
        var out: [String] = []
        let all: [(TypeMask, String)] = [(.object, "object"), (.array, "array"), (.string, "string"), (.number, "number"),
                                          (.integer, "integer"), (.boolean, "boolean"), (.null, "null")]
        for (m, n) in all where contains(m) { out.append(n) }
        return out
    }
}

/// Property lookup for `properties`: a linear scan for the usual handful of keys, a hash map beyond.
final class PropertyTable: @unchecked Sendable {
    @exclusivity(unchecked) var names: [String] = []
    @exclusivity(unchecked) var nodes: [NodeRef] = []
    @exclusivity(unchecked) var index: [String: Int]? = nil

    func finish() {
        if names.count > 12 {
            var idx: [String: Int] = [:]
            for (i, n) in names.enumerated() where idx[n] == nil { idx[n] = i }
            index = idx
        }
    }

    @inline(__always)
    func lookup(_ key: String) -> Int? {
        if let index {
            // Dictionary lookup uses Swift string equality (canonical equivalence); confirm bytes.
            guard let i = index[key] else { return nil }
            return JSON.utf8Equal(names[i], key) ? i : slowLookup(key)
        }
        return slowLookup(key)
    }

    @inline(__always)
    func slowLookup(_ key: String) -> Int? {
        let count = key.utf8.count
        for i in names.indices where names[i].utf8.count == count && JSON.utf8Equal(names[i], key) { return i }
        return nil
    }
}

/// `properties` + `patternProperties` + `additionalProperties` evaluated in one pass over the instance.
/// A class so that copying the `Keyword` that holds it is one retain, not one per array.
final class ObjectMembers: @unchecked Sendable {
    @exclusivity(unchecked) var properties: PropertyTable?
    @exclusivity(unchecked) var patterns: [(regex: ECMARegex, node: NodeRef)] = []
    @exclusivity(unchecked) var additional: NodeRef?
}

/// `$dynamicRef` target information.
struct DynamicRefTarget: @unchecked Sendable {
    let staticTarget: NodeRef
    /// Anchor name when the static target carries a matching `$dynamicAnchor` (then resolution is dynamic).
    let dynamicName: String?
}

/// One compiled keyword. An enum (not protocol existentials) so evaluation is a jump table;
/// payloads are trivial values or a single reference, so reading a keyword costs at most one retain.
enum Keyword: @unchecked Sendable {
    case type(TypeMask)
    case const(JSON)
    case enumeration([JSON])
    case minimum(JSONNumber)
    case exclusiveMinimum(JSONNumber)
    case maximum(JSONNumber)
    case exclusiveMaximum(JSONNumber)
    case multipleOf(JSONNumber)
    case minLength(Int)
    case maxLength(Int)
    case pattern(ECMARegex)
    case format(FormatKind, name: String)
    case minItems(Int)
    case maxItems(Int)
    case uniqueItems
    case minProperties(Int)
    case maxProperties(Int)
    case required([String])
    case dependentRequired([(String, [String])])
    case ref(NodeRef)
    case dynamicRef(DynamicRefTarget)
    case allOf([NodeRef])
    case anyOf([NodeRef])
    case oneOf([NodeRef])
    case not(NodeRef)
    case conditional(ifNode: NodeRef, then: NodeRef?, else: NodeRef?)
    case dependentSchemas([(String, NodeRef)])
    case items(prefix: [NodeRef], rest: NodeRef?)
    case contains(NodeRef, min: Int, max: Int?)
    case objectMembers(ObjectMembers)
    case propertyNames(NodeRef)
    case unevaluatedItems(NodeRef)
    case unevaluatedProperties(NodeRef)
}
