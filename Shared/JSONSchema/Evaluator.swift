import JSON

/// A set of small non-negative integers (object member or array element positions) for
/// annotation collection: inline for the first 64, spilling to an array beyond.
struct BitSet {
    var low: UInt64 = 0
    /// Words for positions 64 and up; nil until needed, so empty sets cost no reference counting.
    var high: [UInt64]? = nil

    @inline(__always)
    mutating func insert(_ i: Int) {
        if i < 64 { low |= 1 << UInt64(i); return }
        let w = i / 64 - 1
        var words = high ?? []
        high = nil
        while words.count <= w { words.append(0) }
        words[w] |= 1 << UInt64(i % 64)
        high = words
    }

    @inline(__always)
    func contains(_ i: Int) -> Bool {
        if i < 64 { return (low >> UInt64(i)) & 1 == 1 }
        guard let high else { return false }
        let w = i / 64 - 1
        return w < high.count && (high[w] >> UInt64(i % 64)) & 1 == 1
    }

    mutating func insert(range: Range<Int>) {
        for i in range { insert(i) }
    }

    mutating func formUnion(_ other: BitSet) {
        low |= other.low
        if let otherHigh = other.high {
            var words = high ?? []
            high = nil
            while words.count < otherHigh.count { words.append(0) }
            for i in otherHigh.indices { words[i] |= otherHigh[i] }
            high = words
        }
    }
}

/// Which members/elements of the current instance some subschema evaluated successfully, for
/// `unevaluatedProperties` / `unevaluatedItems`. Positions index the instance's object entries
/// or array elements, so no strings are hashed.
struct Annotations {
    var properties = BitSet()
    var items = BitSet()

    mutating func merge(_ other: Annotations) {
        properties.formUnion(other.properties)
        items.formUnion(other.items)
    }
}

/// One step into a child location, built into a path token only when errors are being recorded.
enum Step {
    case none
    case key(String)
    case index(Int)

    var token: String? {
        switch self {
        case .none: return nil
        case .key(let k): return k
        case .index(let i): return String(i)
        }
    }
}

/// Walks the node graph for one instance. In `fast` mode it stops at the first failure and
/// records nothing; otherwise it evaluates everything and records located errors.
struct Evaluator {
    var fast: Bool
    let tracksScope: Bool
    let maxDepth: Int
    let maxSteps: Int
    var errors: [ValidationError] = []
    var instancePath: [String] = []
    var keywordPath: [String] = []
    /// Keyword-path length at entry to the current node (its tokens after that are relative to the node).
    var nodeKeywordBase = 0
    /// Dynamic scope: resources entered, outermost first (only maintained when a `$dynamicRef` needs it).
    var scope: [NodeResourceRef] = []
    /// `$ref` targets being evaluated and the instance depth they started at: a target re-entered at
    /// the same depth is an infinite loop (`{"$ref": "#"}`).
    var refStack: [(ObjectIdentifier, Int)] = []
    var instanceDepth = 0
    var depth = 0
    var steps = 0
    var abortReason: String?

    init(fast: Bool, tracksScope: Bool, maxDepth: Int, maxSteps: Int) {
        self.fast = fast
        self.tracksScope = tracksScope
        self.maxDepth = maxDepth
        self.maxSteps = maxSteps
    }

    // MARK: Error recording

    /// Records an error at the current instance location for `keyword` of `node`.
    mutating func report(_ node: SchemaNode, _ keyword: String, _ message: @autoclosure () -> String,
                         extra: Step = .none, instance: Step = .none) {
        guard !fast else { return }
        var kwTokens = keywordPath
        if !keyword.isEmpty { kwTokens.append(keyword) }
        if let t = extra.token { kwTokens.append(t) }
        var instTokens = instancePath
        if let t = instance.token { instTokens.append(t) }
        let relative = JSONPointer(tokens: Array(kwTokens[min(nodeKeywordBase, kwTokens.count)...]))
        errors.append(ValidationError(instanceLocation: JSONPointer(tokens: instTokens),
                                      keywordLocation: JSONPointer(tokens: kwTokens),
                                      absoluteKeywordLocation: node.absoluteLocation + relative.description,
                                      keyword: keyword, message: message()))
    }

    mutating func abort(_ reason: String) {
        if abortReason == nil { abortReason = reason }
    }

    // MARK: Nodes

    /// Evaluates `node` against `instance`. When `collect` is set, the annotations of a successful
    /// evaluation are merged into `out`.
    mutating func validate(_ node: SchemaNode, _ instance: JSON, _ out: inout Annotations, collect: Bool) -> Bool {
        switch node.kind {
        case .alwaysValid:
            return true
        case .alwaysInvalid:
            let savedBase = nodeKeywordBase
            nodeKeywordBase = keywordPath.count  // the false schema itself is the failing location
            report(node, "", "no value is allowed here (the schema is false)")
            nodeKeywordBase = savedBase
            return false
        case .keywords:
            break
        }
        if abortReason != nil { return false }
        depth += 1
        steps += 1
        defer { depth -= 1 }
        if depth > maxDepth {
            abort("evaluation exceeded the maximum depth of \(maxDepth) nested subschemas")
            return false
        }
        if steps > maxSteps {
            abort("evaluation exceeded the budget of \(maxSteps) subschema evaluations")
            return false
        }
        var pushedScope = false
        if tracksScope, scope.last?.resource !== node.resource {
            scope.append(NodeResourceRef(resource: node.resource))
            pushedScope = true
        }
        let savedBase = nodeKeywordBase
        nodeKeywordBase = keywordPath.count
        defer {
            nodeKeywordBase = savedBase
            if pushedScope { scope.removeLast() }
        }

        var needAnnotations = collect
        if node.collectsProperties, case .object = instance { needAnnotations = true }
        if node.collectsItems, case .array = instance { needAnnotations = true }
        var local = Annotations()
        var valid = true
        let keywords = node.keywords
        for i in 0..<keywords.count {
            if !evaluate(keywords.baseAddress! + i, node, instance, &local, needAnnotations) {
                valid = false
                if fast { break }
            }
        }
        if valid && collect { out.merge(local) }
        return valid
    }

    /// Evaluates a child node, maintaining paths in full mode.
    @inline(__always)
    mutating func descend(_ child: NodeRef, _ instance: JSON, _ keyword: String, extra: Step = .none,
                          at step: Step = .none, _ ann: inout Annotations, collect: Bool) -> Bool {
        let movesInstance: Bool
        if case .none = step { movesInstance = false } else { movesInstance = true }
        if movesInstance { instanceDepth += 1 }
        defer { if movesInstance { instanceDepth -= 1 } }
        if fast {
            return validate(child.node, instance, &ann, collect: collect)
        }
        keywordPath.append(keyword)
        if let t = extra.token { keywordPath.append(t) }
        if let t = step.token { instancePath.append(t) }
        let ok = validate(child.node, instance, &ann, collect: collect)
        if step.token != nil { instancePath.removeLast() }
        if extra.token != nil { keywordPath.removeLast() }
        keywordPath.removeLast()
        return ok
    }

    /// Evaluates a child whose failure is expected and not itself an error (`not`, `if`, `contains`).
    @inline(__always)
    mutating func quietly(_ child: NodeRef, _ instance: JSON, at step: Step = .none, _ ann: inout Annotations,
                          collect: Bool) -> Bool {
        let saved = fast
        fast = true
        defer { fast = saved }
        return descend(child, instance, "", at: step, &ann, collect: collect)
    }

    /// Follows a `$ref`/`$dynamicRef`, failing on a loop that makes no progress through the instance.
    mutating func follow(_ target: NodeRef, _ instance: JSON, _ keyword: String, from node: SchemaNode,
                         _ ann: inout Annotations, collect: Bool) -> Bool {
        let id = ObjectIdentifier(target.node)
        for (other, atDepth) in refStack.reversed() {
            if atDepth != instanceDepth { break }
            if other == id {
                report(node, keyword, "infinite reference loop: \(target.node.absoluteLocation) is re-entered without consuming the instance")
                abort("infinite reference loop at \(target.node.absoluteLocation)")
                return false
            }
        }
        refStack.append((id, instanceDepth))
        defer { refStack.removeLast() }
        return descend(target, instance, keyword, &ann, collect: collect)
    }

    // MARK: Keywords

    /// Evaluates one keyword. Takes a pointer into the node's keyword array so the (multi-payload)
    /// enum is not copied per evaluation; the node outlives the call.
    mutating func evaluate(_ keyword: UnsafePointer<Keyword>, _ node: SchemaNode, _ instance: JSON, _ ann: inout Annotations, _ collect: Bool) -> Bool {
        switch keyword.pointee {
        case .type(let mask):
            if Evaluator.matches(mask, instance) { return true }
            let names = mask.names
            report(node, "type", "\(Evaluator.brief(instance)) is not of type \(names.count == 1 ? "\"\(names[0])\"" : names.map { "\"\($0)\"" }.joined(separator: ", "))")
            return false

        case .const(let expected):
            if instance == expected { return true }
            report(node, "const", "\(Evaluator.brief(instance)) is not equal to the constant \(Evaluator.brief(expected))")
            return false

        case .enumeration(let values):
            for v in values where v == instance { return true }
            report(node, "enum", "\(Evaluator.brief(instance)) is not one of \(Evaluator.brief(.array(values)))")
            return false

        case .minimum(let limit):
            guard case .number(let n) = instance, n < limit else { return true }
            report(node, "minimum", "\(n) is less than the minimum \(limit)")
            return false
        case .exclusiveMinimum(let limit):
            guard case .number(let n) = instance, !(limit < n) else { return true }
            report(node, "exclusiveMinimum", "\(n) is not greater than the exclusive minimum \(limit)")
            return false
        case .maximum(let limit):
            guard case .number(let n) = instance, limit < n else { return true }
            report(node, "maximum", "\(n) is greater than the maximum \(limit)")
            return false
        case .exclusiveMaximum(let limit):
            guard case .number(let n) = instance, !(n < limit) else { return true }
            report(node, "exclusiveMaximum", "\(n) is not less than the exclusive maximum \(limit)")
            return false
        case .multipleOf(let divisor):
            guard case .number(let n) = instance, !NumberMath.isMultiple(n, of: divisor) else { return true }
            report(node, "multipleOf", "\(n) is not a multiple of \(divisor)")
            return false

        case .minLength(let limit):
            guard case .string(let s) = instance else { return true }
            if s.utf8.count / 4 >= limit { return true }  // a code point is at most 4 bytes (division: `limit` may be huge)
            let length = Evaluator.codePointCount(s)
            if length >= limit { return true }
            report(node, "minLength", "\(Evaluator.brief(instance)) is shorter than \(limit) characters (\(length))")
            return false
        case .maxLength(let limit):
            guard case .string(let s) = instance, s.utf8.count > limit else { return true }
            let length = Evaluator.codePointCount(s)
            if length <= limit { return true }
            report(node, "maxLength", "\(Evaluator.brief(instance)) is longer than \(limit) characters (\(length))")
            return false
        case .pattern(let regex):
            guard case .string(let s) = instance else { return true }
            switch regex.matches(s) {
            case .some(true): return true
            case .some(false):
                report(node, "pattern", "\(Evaluator.brief(instance)) does not match the pattern \"\(regex.pattern)\"")
            case .none:
                report(node, "pattern", "the pattern \"\(regex.pattern)\" was too expensive to evaluate against \(Evaluator.brief(instance))")
            }
            return false
        case .format(let kind, let name):
            guard case .string(let s) = instance, !FormatChecker.check(kind, s) else { return true }
            report(node, "format", "\(Evaluator.brief(instance)) is not a valid \"\(name)\"")
            return false

        case .minItems(let limit):
            guard case .array(let a) = instance, a.count < limit else { return true }
            report(node, "minItems", "the array has \(a.count) items, fewer than the minimum \(limit)")
            return false
        case .maxItems(let limit):
            guard case .array(let a) = instance, a.count > limit else { return true }
            report(node, "maxItems", "the array has \(a.count) items, more than the maximum \(limit)")
            return false
        case .uniqueItems:
            guard case .array(let a) = instance, let (i, j) = Evaluator.firstDuplicate(a) else { return true }
            report(node, "uniqueItems", "items at index \(i) and \(j) are equal")
            return false

        case .minProperties(let limit):
            guard case .object(let o) = instance, o.count < limit else { return true }
            report(node, "minProperties", "the object has \(o.count) properties, fewer than the minimum \(limit)")
            return false
        case .maxProperties(let limit):
            guard case .object(let o) = instance, o.count > limit else { return true }
            report(node, "maxProperties", "the object has \(o.count) properties, more than the maximum \(limit)")
            return false
        case .required(let names):
            guard case .object(let o) = instance else { return true }
            var ok = true
            for name in names where o.firstIndex(forKey: name) == nil {
                ok = false
                if fast { return false }
                report(node, "required", "required property \"\(name)\" is missing")
            }
            return ok
        case .dependentRequired(let deps):
            guard case .object(let o) = instance else { return true }
            var ok = true
            for (trigger, names) in deps where o.firstIndex(forKey: trigger) != nil {
                for name in names where o.firstIndex(forKey: name) == nil {
                    ok = false
                    if fast { return false }
                    report(node, "dependentRequired", "property \"\(name)\" is required when \"\(trigger)\" is present", extra: .key(trigger))
                }
            }
            return ok

        case .ref(let target):
            return follow(target, instance, "$ref", from: node, &ann, collect: collect)
        case .dynamicRef(let info):
            var target = info.staticTarget
            if let name = info.dynamicName {
                for entry in scope {
                    if let n = entry.resource.dynamicAnchors[name] { target = n; break }
                }
            }
            return follow(target, instance, "$dynamicRef", from: node, &ann, collect: collect)

        case .allOf(let children):
            var ok = true
            for (i, c) in children.enumerated() {
                if !descend(c, instance, "allOf", extra: .index(i), &ann, collect: collect) {
                    ok = false
                    if fast { return false }
                }
            }
            return ok
        case .anyOf(let children):
            let mark = errors.count
            var ok = false
            for (i, c) in children.enumerated() {
                var branch = Annotations()
                if descend(c, instance, "anyOf", extra: .index(i), &branch, collect: collect) {
                    ok = true
                    if collect { ann.merge(branch) } else { break }
                }
            }
            if ok {
                if errors.count > mark { errors.removeSubrange(mark...) }
                return true
            }
            report(node, "anyOf", "\(Evaluator.brief(instance)) does not match any of the \(children.count) schemas in anyOf")
            return false
        case .oneOf(let children):
            let mark = errors.count
            var matched: [Int] = []
            for (i, c) in children.enumerated() {
                var branch = Annotations()
                if descend(c, instance, "oneOf", extra: .index(i), &branch, collect: collect) {
                    matched.append(i)
                    if matched.count == 1 && collect { ann.merge(branch) }
                    if matched.count > 1 { break }
                }
            }
            if matched.count == 1 {
                if errors.count > mark { errors.removeSubrange(mark...) }
                return true
            }
            if matched.isEmpty {
                report(node, "oneOf", "\(Evaluator.brief(instance)) does not match any of the \(children.count) schemas in oneOf")
            } else {
                if errors.count > mark { errors.removeSubrange(mark...) }
                report(node, "oneOf", "\(Evaluator.brief(instance)) matches more than one schema in oneOf (indexes \(matched[0]) and \(matched[1]))")
            }
            return false
        case .not(let child):
            var scratch = Annotations()
            guard quietly(child, instance, &scratch, collect: false) else { return true }
            report(node, "not", "\(Evaluator.brief(instance)) must not match the schema in \"not\"")
            return false
        case .conditional(let ifNode, let thenNode, let elseNode):
            var conditionAnnotations = Annotations()
            if quietly(ifNode, instance, &conditionAnnotations, collect: collect) {
                if collect { ann.merge(conditionAnnotations) }
                guard let thenNode else { return true }
                return descend(thenNode, instance, "then", &ann, collect: collect)
            }
            guard let elseNode else { return true }
            return descend(elseNode, instance, "else", &ann, collect: collect)
        case .dependentSchemas(let deps):
            guard case .object(let o) = instance else { return true }
            var ok = true
            for (trigger, child) in deps where o.firstIndex(forKey: trigger) != nil {
                if !descend(child, instance, "dependentSchemas", extra: .key(trigger), &ann, collect: collect) {
                    ok = false
                    if fast { return false }
                }
            }
            return ok

        case .items(let prefix, let rest):
            guard case .array(let a) = instance else { return true }
            var ok = true
            var scratch = Annotations()
            let prefixCount = min(prefix.count, a.count)
            for i in 0..<prefixCount {
                if !descend(prefix[i], a[i], "prefixItems", extra: .index(i), at: .index(i), &scratch, collect: false) {
                    ok = false
                    if fast { return false }
                }
            }
            if collect { ann.items.insert(range: 0..<prefixCount) }
            if let rest, a.count > prefix.count {
                for i in prefix.count..<a.count {
                    if !descend(rest, a[i], "items", at: .index(i), &scratch, collect: false) {
                        ok = false
                        if fast { return false }
                    }
                }
                if collect { ann.items.insert(range: prefix.count..<a.count) }
            }
            return ok
        case .contains(let child, let minimum, let maximum):
            guard case .array(let a) = instance else { return true }
            var count = 0
            var scratch = Annotations()
            for (i, element) in a.enumerated() where quietly(child, element, at: .index(i), &scratch, collect: false) {
                count += 1
                if collect { ann.items.insert(i) }
            }
            if count < minimum {
                report(node, "contains", minimum == 1 ? "the array does not contain an item matching the \"contains\" schema"
                                                      : "the array contains \(count) matching items, fewer than minContains \(minimum)")
                return false
            }
            if let maximum, count > maximum {
                report(node, "contains", "the array contains \(count) matching items, more than maxContains \(maximum)")
                return false
            }
            return true
        case .objectMembers(let members):
            guard case .object(let o) = instance else { return true }
            return evaluateMembers(members, node, o, &ann, collect)
        case .propertyNames(let child):
            guard case .object(let o) = instance else { return true }
            var ok = true
            var scratch = Annotations()
            for (key, _) in o {
                if !descend(child, .string(key), "propertyNames", &scratch, collect: false) {
                    ok = false
                    if fast { return false }
                    report(node, "propertyNames", "property name \"\(key)\" is not valid")
                }
            }
            return ok
        case .unevaluatedItems(let child):
            guard case .array(let a) = instance else { return true }
            var ok = true
            var scratch = Annotations()
            for (i, element) in a.enumerated() where !ann.items.contains(i) {
                if !descend(child, element, "unevaluatedItems", at: .index(i), &scratch, collect: false) {
                    ok = false
                    if fast { return false }
                    if child.node.kind == .alwaysInvalid { replaceLast(node, "unevaluatedItems", "item at index \(i) is not allowed (unevaluatedItems)") }
                }
            }
            if ok && collect { ann.items.insert(range: 0..<a.count) }
            return ok
        case .unevaluatedProperties(let child):
            guard case .object(let o) = instance else { return true }
            var ok = true
            var scratch = Annotations()
            for i in 0..<o.count where !ann.properties.contains(i) {
                let (key, value) = o[i]
                if !descend(child, value, "unevaluatedProperties", at: .key(key), &scratch, collect: false) {
                    ok = false
                    if fast { return false }
                    if child.node.kind == .alwaysInvalid { replaceLast(node, "unevaluatedProperties", "property \"\(key)\" is not allowed (unevaluatedProperties)") }
                }
            }
            if ok && collect { ann.properties.insert(range: 0..<o.count) }
            return ok
        }
    }

    /// Rewrites the generic "false schema" error just recorded into a keyword-specific message.
    mutating func replaceLast(_ node: SchemaNode, _ keyword: String, _ message: String) {
        guard !fast, !errors.isEmpty else { return }
        errors[errors.count - 1].keyword = keyword
        errors[errors.count - 1].message = message
    }

    /// `properties`, `patternProperties` and `additionalProperties` in one pass over the members.
    mutating func evaluateMembers(_ m: ObjectMembers, _ node: SchemaNode, _ o: JSONObject, _ ann: inout Annotations,
                                  _ collect: Bool) -> Bool {
        var ok = true
        var scratch = Annotations()
        // Hoisted once per object: reading class-held arrays inside the loop would retain them per member.
        let table = m.properties
        let patterns = m.patterns
        let additional = m.additional
        return o.withUnsafeEntries { entries in
        for i in 0..<entries.count {
            let key = entries[i].key
            let value = entries[i].value
            var matched = false
            if let table, let p = table.lookup(key) {
                matched = true
                let child = table.nodes[p]
                if !descend(child, value, "properties", extra: .key(key), at: .key(key), &scratch, collect: false) {
                    ok = false
                    if fast { return false }
                    if child.node.kind == .alwaysInvalid { replaceLast(node, "properties", "property \"\(key)\" is not allowed") }
                }
            }
            if !patterns.isEmpty {
                for (regex, child) in patterns where regex.matches(key) == true {
                    matched = true
                    if !descend(child, value, "patternProperties", extra: .key(regex.pattern), at: .key(key), &scratch, collect: false) {
                        ok = false
                        if fast { return false }
                        if child.node.kind == .alwaysInvalid {
                            replaceLast(node, "patternProperties", "property \"\(key)\" is not allowed (matches \"\(regex.pattern)\")")
                        }
                    }
                }
            }
            if !matched, let additional {
                matched = true
                if !descend(additional, value, "additionalProperties", at: .key(key), &scratch, collect: false) {
                    ok = false
                    if fast { return false }
                    if additional.node.kind == .alwaysInvalid {
                        replaceLast(node, "additionalProperties", "additional property \"\(key)\" is not allowed")
                    }
                }
            }
            if matched && collect { ann.properties.insert(i) }
        }
        return ok
        }
    }

    // MARK: Helpers

    @inline(__always)
    static func matches(_ mask: TypeMask, _ instance: JSON) -> Bool {
        switch instance {
        case .null: return mask.contains(.null)
        case .bool: return mask.contains(.boolean)
        case .string: return mask.contains(.string)
        case .array: return mask.contains(.array)
        case .object: return mask.contains(.object)
        case .number(let n):
            return mask.contains(.number) || (mask.contains(.integer) && n.isInteger)
        }
    }

    /// Unicode code points (what JSON Schema lengths count), not grapheme clusters or UTF-16 units.
    static func codePointCount(_ s: String) -> Int {
        var n = 0
        for b in s.utf8 where b & 0xC0 != 0x80 { n += 1 }
        return n
    }

    static func firstDuplicate(_ a: [JSON]) -> (Int, Int)? {
        if a.count < 2 { return nil }
        if a.count <= 16 {
            for i in 0..<a.count {
                for j in (i + 1)..<a.count where a[i] == a[j] { return (i, j) }
            }
            return nil
        }
        var seen: [JSON: Int] = [:]
        for (j, v) in a.enumerated() {
            if let i = seen[v] { return (i, j) }
            seen[v] = j
        }
        return nil
    }

    /// A short rendering of a value for messages (long values are cut).
    static func brief(_ v: JSON) -> String {
        let text = v.description
        if text.count <= 60 { return text }
        return String(text.prefix(57)) + "..."
    }
}

/// A non-owning reference to a resource (the compiled schema owns them).
struct NodeResourceRef {
    unowned(unsafe) let resource: SchemaResource
}
