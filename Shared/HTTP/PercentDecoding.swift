/// Percent-decoding for paths (strict) and query strings (lenient, "+" as space).
enum PercentDecoding {
    @inline(__always)
    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case 0x30...0x39: return byte - 0x30
        case 0x41...0x46: return byte - 0x41 + 10
        case 0x61...0x66: return byte - 0x61 + 10
        default: return nil
        }
    }

    /// Decodes one path segment. Bad escapes, decoded NUL and invalid UTF-8 are errors:
    /// ambiguous paths are rejected rather than guessed at.
    static func decodePathSegment(_ bytes: UnsafeBufferPointer<UInt8>) -> String? {
        var needsWork = false
        for byte in bytes where byte == 0x25 || byte >= 0x80 {
            needsWork = true
            break
        }
        if !needsWork { return String(decoding: bytes, as: UTF8.self) }
        var decoded: [UInt8] = []
        decoded.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte == 0x25 {
                guard index + 2 < bytes.count, let high = hexValue(bytes[index + 1]), let low = hexValue(bytes[index + 2]) else { return nil }
                let value = high << 4 | low
                if value == 0 { return nil }
                decoded.append(value)
                index += 3
            } else {
                decoded.append(byte)
                index += 1
            }
        }
        return String(validating: decoded, as: UTF8.self)
    }

    /// Decodes a query component: "+" is a space, bad escapes are kept literally (browsers
    /// and curl send such queries, and refusing them helps nobody), invalid UTF-8 is repaired.
    static func decodeQueryComponent(_ text: Substring) -> String {
        let utf8 = text.utf8
        if !utf8.contains(where: { $0 == 0x25 || $0 == 0x2B }) { return String(text) }
        var decoded: [UInt8] = []
        decoded.reserveCapacity(utf8.count)
        var index = utf8.startIndex
        while index != utf8.endIndex {
            let byte = utf8[index]
            if byte == 0x2B {
                decoded.append(0x20)
                index = utf8.index(after: index)
            } else if byte == 0x25,
                      let first = utf8.index(index, offsetBy: 1, limitedBy: utf8.endIndex), first != utf8.endIndex,
                      let second = utf8.index(first, offsetBy: 1, limitedBy: utf8.endIndex), second != utf8.endIndex,
                      let high = hexValue(utf8[first]), let low = hexValue(utf8[second]) {
                decoded.append(high << 4 | low)
                index = utf8.index(after: second)
            } else {
                decoded.append(byte)
                index = utf8.index(after: index)
            }
        }
        return String(decoding: decoded, as: UTF8.self)
    }
}
