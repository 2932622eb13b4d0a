extension JSON {
    /// Applies a JSON Merge Patch (RFC 7396) to `self`: an object patch merges member by member,
    /// `null` removes a member, anything else replaces the target.
    public func mergePatched(with patch: JSON) -> JSON {
        guard case .object(let changes) = patch else { return patch }
        var result = objectValue ?? [:]
        for (key, value) in changes {
            if value.isNull {
                _ = result.removeValue(forKey: key)
            } else {
                result[key] = (result[key] ?? .null).mergePatched(with: value)
            }
        }
        return .object(result)
    }
}
