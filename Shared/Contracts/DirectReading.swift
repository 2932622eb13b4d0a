import JSON

/// Typed reads for the contracts' direct readers (`TelemetryEnvelope.readDirectly`,
/// `RawReading.readDirectly`): each returns the value a well-formed document has there, or
/// throws `NotDirectlyReadable`, which sends the document down the general path (the JSON tree
/// and `init(json:)`), where its problem is named.
struct NotDirectlyReadable: Error {}

extension JSONMemberReader {
    /// A string.
    mutating func requireString() throws -> String {
        guard let value = try readString() else { throw NotDirectlyReadable() }
        return value
    }

    /// A string, or nil for `null` (as `Fields.optionalString` reads it).
    mutating func requireOptionalString() throws -> String? {
        if nextValueIsString() { return try requireString() }
        guard try readValue().isNull else { throw NotDirectlyReadable() }
        return nil
    }

    /// An RFC 3339 time as ms since the epoch, parsed in place.
    mutating func requireTime() throws -> Int64 {
        guard let ms = try readStringBytes()?.withBytes({ Timestamp.parse(bytes: $0) }) else { throw NotDirectlyReadable() }
        return ms
    }

    /// An integer that fits in 64 bits (as `Fields.int` reads it).
    mutating func requireInt64() throws -> Int64 {
        guard case .number(let n) = try readValue(), let i = n.int64Value else { throw NotDirectlyReadable() }
        return i
    }

    /// `true` or `false`.
    mutating func requireBool() throws -> Bool {
        guard case .bool(let b) = try readValue() else { throw NotDirectlyReadable() }
        return b
    }

    /// An object.
    mutating func requireObject() throws -> JSONObject {
        guard let value = try readObject() else { throw NotDirectlyReadable() }
        return value
    }

    /// An object of strings (units), or empty for `null` when `nullable`.
    mutating func requireStringMap(nullable: Bool) throws -> [String: String] {
        let value = try readValue()
        if nullable, value.isNull { return [:] }
        guard case .object(let object) = value else { throw NotDirectlyReadable() }
        var map: [String: String] = [:]
        for (name, entry) in object {
            guard case .string(let s) = entry else { throw NotDirectlyReadable() }
            map[name] = s
        }
        return map
    }
}

/// True when every value is a number, boolean or string: what a reading's `values` may hold.
func areScalars(_ values: JSONObject) -> Bool {
    values.allSatisfy { _, value in
        switch value {
        case .number, .bool, .string: true
        default: false
        }
    }
}
