/// A parsed RFC 3986 URI reference, just enough for JSON Schema base-URI resolution:
/// `$id` and `$ref` values are resolved against the base URI of the enclosing resource.
///
/// Parsing is permissive about characters (the format validators check strictness); it only
/// splits components and resolves per RFC 3986 section 5.2, including dot-segment removal.
public struct URIReference: Sendable, Hashable, CustomStringConvertible {
    /// Scheme without `:`, lowercased; nil for relative references.
    public var scheme: String?
    /// Authority without `//`; nil when absent (distinct from empty, as in `file:///x`).
    public var authority: String?
    /// Path (may be empty).
    public var path: String
    /// Query without `?`; nil when absent.
    public var query: String?
    /// Fragment without `#`; nil when absent (distinct from empty `#`).
    public var fragment: String?

    /// Splits a URI reference into components (RFC 3986 appendix B).
    public init(_ text: String) {
        var rest = Substring(text)
        if let hash = rest.firstIndex(of: "#") {
            fragment = String(rest[rest.index(after: hash)...])
            rest = rest[..<hash]
        }
        if let q = rest.firstIndex(of: "?") {
            query = String(rest[rest.index(after: q)...])
            rest = rest[..<q]
        }
        // A scheme is ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) before the first ':' that comes before any '/'.
        if let colon = rest.firstIndex(of: ":"), let first = rest.first, first.isASCII, first.isLetter {
            let candidate = rest[..<colon]
            if candidate.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "+" || $0 == "-" || $0 == ".") }) {
                scheme = candidate.lowercased()
                rest = rest[rest.index(after: colon)...]
            }
        }
        if rest.hasPrefix("//") {
            rest = rest.dropFirst(2)
            let slash = rest.firstIndex(of: "/") ?? rest.endIndex
            authority = String(rest[..<slash])
            rest = rest[slash...]
        }
        path = String(rest)
    }

    /// Builds from components.
    public init(scheme: String?, authority: String?, path: String, query: String?, fragment: String?) {
        self.scheme = scheme
        self.authority = authority
        self.path = path
        self.query = query
        self.fragment = fragment
    }

    /// True when there is a scheme (an absolute URI, possibly with a fragment).
    public var isAbsolute: Bool { scheme != nil }

    /// Recomposes the reference (RFC 3986 section 5.3).
    public var description: String {
        var s = ""
        if let scheme { s += scheme; s += ":" }
        if let authority { s += "//"; s += authority }
        s += path
        if let query { s += "?"; s += query }
        if let fragment { s += "#"; s += fragment }
        return s
    }

    /// The reference without its fragment (the resource a `$ref` points into).
    public var withoutFragment: URIReference {
        var u = self
        u.fragment = nil
        return u
    }

    /// Resolves `self` (a reference) against `base` (RFC 3986 section 5.2.2).
    public func resolved(against base: URIReference) -> URIReference {
        var t = URIReference(scheme: nil, authority: nil, path: "", query: nil, fragment: fragment)
        if let scheme {
            t.scheme = scheme
            t.authority = authority
            t.path = URIReference.removeDotSegments(path)
            t.query = query
        } else {
            if authority != nil {
                t.authority = authority
                t.path = URIReference.removeDotSegments(path)
                t.query = query
            } else {
                if path.isEmpty {
                    t.path = base.path
                    t.query = query ?? base.query
                } else {
                    if path.hasPrefix("/") {
                        t.path = URIReference.removeDotSegments(path)
                    } else {
                        t.path = URIReference.removeDotSegments(URIReference.merge(base: base, path))
                    }
                    t.query = query
                }
                t.authority = base.authority
            }
            t.scheme = base.scheme
        }
        return t
    }

    static func merge(base: URIReference, _ path: String) -> String {
        if base.authority != nil && base.path.isEmpty { return "/" + path }
        if let slash = base.path.lastIndex(of: "/") { return String(base.path[...slash]) + path }
        return path
    }

    /// RFC 3986 section 5.2.4.
    static func removeDotSegments(_ path: String) -> String {
        guard path.contains(".") else { return path }
        var input = Substring(path)
        var output: [Substring] = []
        var absolute = false
        if input.hasPrefix("/") { absolute = true }
        let segments = input.split(separator: "/", omittingEmptySubsequences: false)
        input = ""
        var result: [Substring] = []
        for (i, seg) in segments.enumerated() {
            if i == 0 && absolute { continue }  // leading empty segment of an absolute path
            let isLast = i == segments.count - 1
            if seg == "." {
                if isLast { result.append("") }
            } else if seg == ".." {
                if !result.isEmpty { result.removeLast() }
                if isLast { result.append("") }
            } else {
                result.append(seg)
            }
        }
        output = result
        return (absolute ? "/" : "") + output.joined(separator: "/")
    }
}
