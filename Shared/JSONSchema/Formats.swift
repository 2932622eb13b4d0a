/// The `format` values this validator can assert; unknown formats are ignored, as the spec requires.
enum FormatKind: String, Sendable {
    case dateTime = "date-time", date, time, duration, email, idnEmail = "idn-email", hostname
    case idnHostname = "idn-hostname", ipv4, ipv6, uri, uriReference = "uri-reference", iri
    case iriReference = "iri-reference", uriTemplate = "uri-template", uuid, jsonPointer = "json-pointer"
    case relativeJSONPointer = "relative-json-pointer", regex
}

enum FormatChecker {
    static func check(_ kind: FormatKind, _ s: String) -> Bool { true }
}
