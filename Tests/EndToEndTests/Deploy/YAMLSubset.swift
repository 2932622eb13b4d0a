import JSON

/// The block-style YAML the shipped manifests are written in, parsed into `JSON`: documents split
/// by `---`, block mappings and sequences (a `- key: value` item starts a mapping), one-line flow
/// sequences (`[a, "b"]`), `{}`, quoted and plain scalars, comments. Anything else — anchors, tags,
/// block scalars, multi-line flow collections — is refused with its line, so a manifest written
/// outside this subset fails the test loudly instead of being misread (kubernetes-validate reads
/// the real YAML; this is for the test's own checks).
enum YAMLSubset {
    struct Failure: Error, CustomStringConvertible {
        let line: Int
        let message: String
        var description: String { "line \(line): \(message)" }
    }

    private struct Line {
        let number: Int
        let indent: Int
        var text: String
    }

    /// Every document of `text`, empty ones skipped.
    static func documents(_ text: String) throws -> [JSON] {
        var documents: [[Line]] = [[]]
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if raw.hasPrefix("---") { documents.append([]); continue }
            let content = stripComment(String(raw))
            guard !content.trimmingCharacters(in: .whitespaces).isEmpty else { continue }
            let indent = content.prefix { $0 == " " }.count
            documents[documents.count - 1].append(Line(number: i + 1, indent: indent, text: String(content.dropFirst(indent))))
        }
        return try documents.filter { !$0.isEmpty }.map { lines in
            var parser = Parser(lines: lines)
            let value = try parser.node(indent: lines[0].indent)
            if parser.index < lines.count { throw Failure(line: lines[parser.index].number, message: "unexpected indentation") }
            return value
        }
    }

    /// The line without a trailing `# comment` (a `#` outside quotes, at the start or after a space).
    private static func stripComment(_ line: String) -> String {
        var quote: Character?
        var previous: Character = " "
        for (offset, c) in line.enumerated() {
            if let q = quote {
                if c == q { quote = nil }
            } else if c == "\"" || c == "'" {
                quote = c
            } else if c == "#" && previous == " " {
                return String(line.prefix(offset))
            }
            previous = c
        }
        return line
    }

    private struct Parser {
        var lines: [Line]
        var index = 0

        mutating func node(indent: Int) throws -> JSON {
            let line = lines[index]
            return line.text == "-" || line.text.hasPrefix("- ") ? try sequence(indent: line.indent) : try mapping(indent: line.indent)
        }

        mutating func sequence(indent: Int) throws -> JSON {
            var items: [JSON] = []
            while index < lines.count, lines[index].indent == indent, lines[index].text == "-" || lines[index].text.hasPrefix("- ") {
                let rest = lines[index].text == "-" ? "" : String(lines[index].text.dropFirst(2)).trimmingCharacters(in: .whitespaces)
                if rest.isEmpty {
                    index += 1
                    guard index < lines.count, lines[index].indent > indent else { items.append(.null); continue }
                    items.append(try node(indent: lines[index].indent))
                } else if Self.splitKey(rest) != nil {
                    // `- key: value`: a mapping whose keys sit two columns in.
                    lines[index] = Line(number: lines[index].number, indent: indent + 2, text: rest)
                    items.append(try mapping(indent: indent + 2))
                } else {
                    items.append(try Self.scalarOrFlow(rest, line: lines[index].number))
                    index += 1
                }
            }
            return .array(items)
        }

        mutating func mapping(indent: Int) throws -> JSON {
            var object = JSONObject()
            while index < lines.count, lines[index].indent == indent, !(lines[index].text == "-" || lines[index].text.hasPrefix("- ")) {
                let line = lines[index]
                guard let (key, value) = Self.splitKey(line.text) else { throw Failure(line: line.number, message: "expected `key: value`, found \(line.text)") }
                guard object[key] == nil else { throw Failure(line: line.number, message: "duplicate key \(key)") }
                index += 1
                if !value.isEmpty {
                    object[key] = try Self.scalarOrFlow(value, line: line.number)
                } else if index < lines.count, lines[index].indent > indent {
                    object[key] = try node(indent: lines[index].indent)
                } else if index < lines.count, lines[index].indent == indent, lines[index].text.hasPrefix("- ") {
                    object[key] = try sequence(indent: indent)  // a list at its key's indentation
                } else {
                    object[key] = .null
                }
            }
            return .object(object)
        }

        /// `key: value` or `key:` with a plain or quoted key; nil for anything else.
        static func splitKey(_ text: String) -> (String, String)? {
            if let first = text.first, first == "\"" || first == "'" {
                guard let close = text.dropFirst().firstIndex(of: first) else { return nil }
                let after = text[text.index(after: close)...]
                guard after.hasPrefix(":") else { return nil }
                return (String(text[text.index(after: text.startIndex)..<close]), after.dropFirst().trimmingCharacters(in: .whitespaces))
            }
            if text.hasSuffix(":"), !text.contains(": "), !text.contains(" ") { return (String(text.dropLast()), "") }
            guard let range = text.range(of: ": ") else { return nil }
            let key = String(text[..<range.lowerBound])
            guard !key.isEmpty, !key.contains(" "), !"[{".contains(key.first!) else { return nil }
            return (key, String(text[range.upperBound...]).trimmingCharacters(in: .whitespaces))
        }

        static func scalarOrFlow(_ text: String, line: Int) throws -> JSON {
            if text == "{}" { return .object(JSONObject()) }
            if text.hasPrefix("{") { throw Failure(line: line, message: "flow mappings other than {} are outside the subset") }
            if text.hasPrefix("[") {
                guard text.hasSuffix("]") else { throw Failure(line: line, message: "a flow sequence must end on its line") }
                let inner = text.dropFirst().dropLast()
                var items: [String] = [], current = "", quote: Character?
                for c in inner {
                    if let q = quote { if c == q { quote = nil }; current.append(c) } else if c == "\"" || c == "'" { quote = c; current.append(c) } else if c == "," { items.append(current); current = "" } else { current.append(c) }
                }
                if !current.trimmingCharacters(in: .whitespaces).isEmpty { items.append(current) }
                return .array(try items.map { try scalar($0.trimmingCharacters(in: .whitespaces), line: line) })
            }
            return try scalar(text, line: line)
        }

        static func scalar(_ text: String, line: Int) throws -> JSON {
            if let first = text.first, first == "\"" || first == "'" {
                guard text.count >= 2, text.last == first else { throw Failure(line: line, message: "unterminated string \(text)") }
                return .string(String(text.dropFirst().dropLast()))
            }
            if let c = text.first, "&*!|>%@`".contains(c) { throw Failure(line: line, message: "\(text): outside the YAML subset") }
            switch text {
            case "true": return .bool(true)
            case "false": return .bool(false)
            case "null", "~": return .null
            default: break
            }
            if let int = Int(text) { return .number(JSONNumber(int)) }
            return .string(text)
        }
    }
}
