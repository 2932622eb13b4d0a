/// SHA-256 (FIPS 180-4). Used for deterministic event ids and API-key hashes; the platform has
/// no crypto library, and this one is small enough to read and is tested against the NIST vectors.
public struct SHA256: Sendable {
    private var state: (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32) =
        (0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19)
    /// The unprocessed tail of the message: `buffered` (< 64) bytes of a block kept inline, so a
    /// hasher never allocates.
    private var block: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
    private var buffered = 0
    private var length: UInt64 = 0

    public init() {}

    /// Adds bytes to the message.
    public mutating func update(_ bytes: some Sequence<UInt8>) {
        let done: Void? = bytes.withContiguousStorageIfAvailable { update(UnsafeRawBufferPointer($0)) }
        if done == nil { update(Array(bytes)) }
    }

    /// Adds bytes to the message: whole 64-byte blocks straight from `bytes`, the rest buffered.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        length &+= UInt64(bytes.count)
        var offset = 0
        if buffered > 0 {
            let take = min(64 - buffered, bytes.count)
            appendToBlock(UnsafeRawBufferPointer(rebasing: bytes[0..<take]))
            offset = take
            guard buffered == 64 else { return }
            compressBlock()
        }
        while bytes.count - offset >= 64 {
            compress(UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + 64)]))
            offset += 64
        }
        if offset < bytes.count { appendToBlock(UnsafeRawBufferPointer(rebasing: bytes[offset...])) }
    }

    /// Adds a string's UTF-8 bytes.
    public mutating func update(_ string: String) {
        var string = string
        string.withUTF8 { update(UnsafeRawBufferPointer($0)) }
    }

    /// The 32-byte digest; the hasher should not be used afterwards.
    public mutating func finalize() -> [UInt8] {
        withDigest { Array($0) }
    }

    /// Lower-case hex of the digest's first `bytes` bytes (at most 32), made without an
    /// intermediate array; the hasher should not be used afterwards.
    public mutating func finalizeHex(prefix bytes: Int = 32) -> String {
        withDigest { hexString($0.prefix(min(bytes, 32))) }
    }

    /// The same hex written over `out` (twice the prefix's length, at most 64 bytes), for a
    /// caller that puts it inside a larger buffer; the hasher should not be used afterwards.
    public mutating func finalizeHex(prefix bytes: Int = 32, into out: UnsafeMutableBufferPointer<UInt8>) {
        withDigest { digest in
            let n = writeHex(digest.prefix(min(bytes, 32)), to: out)
            precondition(n == out.count, "finalizeHex(prefix:into:) needs room for exactly the hex digits")
        }
    }

    /// Pads the message, compresses the last block and lends the 32-byte digest to `body`.
    private mutating func withDigest<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        let bitLength = length &* 8
        appendToBlock(0x80)
        if buffered > 56 {
            while buffered < 64 { appendToBlock(0) }
            compressBlock()
        }
        while buffered < 56 { appendToBlock(0) }
        for shift in stride(from: 56, through: 0, by: -8) { appendToBlock(UInt8(truncatingIfNeeded: bitLength >> UInt64(shift))) }
        compressBlock()
        var digest = (state.0.bigEndian, state.1.bigEndian, state.2.bigEndian, state.3.bigEndian,
                      state.4.bigEndian, state.5.bigEndian, state.6.bigEndian, state.7.bigEndian)
        return withUnsafeBytes(of: &digest) { body($0) }
    }

    private mutating func appendToBlock(_ bytes: UnsafeRawBufferPointer) {
        let at = buffered
        withUnsafeMutableBytes(of: &block) { $0.baseAddress!.advanced(by: at).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
        buffered += bytes.count
    }

    private mutating func appendToBlock(_ byte: UInt8) {
        let at = buffered
        withUnsafeMutableBytes(of: &block) { $0[at] = byte }
        buffered += 1
    }

    private mutating func compressBlock() {
        var copy = block
        withUnsafeBytes(of: &copy) { compress($0) }
        buffered = 0
    }

    /// The digest of `bytes`.
    public static func hash(_ bytes: some Sequence<UInt8>) -> [UInt8] {
        var hasher = SHA256()
        hasher.update(bytes)
        return hasher.finalize()
    }

    /// Lower-case hex of the digest of `string`'s UTF-8 bytes.
    public static func hex(_ string: String) -> String { hexString(hash(string.utf8)) }

    private static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    /// One 64-byte block; the message schedule lives on the stack. Rounds go eight at a time
    /// with the working variables renamed instead of shifted (the shuffle of eight values per
    /// round was a third of the work), and Ch and Maj in their three-operation forms.
    private mutating func compress(_ block: UnsafeRawBufferPointer) {
        var (a, b, c, d, e, f, g, h) = state
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { w in
            for i in 0..<16 {
                w[i] = UInt32(bigEndian: block.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self))
            }
            for i in 16..<64 {
                let w15 = w[i - 15], w2 = w[i - 2]
                let s0 = rotr(w15, 7) ^ rotr(w15, 18) ^ (w15 &>> 3)
                let s1 = rotr(w2, 17) ^ rotr(w2, 19) ^ (w2 &>> 10)
                w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
            }
            Self.k.withUnsafeBufferPointer { k in
                var i = 0
                while i < 64 {
                    round(a, b, c, &d, e, f, g, &h, k[i] &+ w[i])
                    round(h, a, b, &c, d, e, f, &g, k[i + 1] &+ w[i + 1])
                    round(g, h, a, &b, c, d, e, &f, k[i + 2] &+ w[i + 2])
                    round(f, g, h, &a, b, c, d, &e, k[i + 3] &+ w[i + 3])
                    round(e, f, g, &h, a, b, c, &d, k[i + 4] &+ w[i + 4])
                    round(d, e, f, &g, h, a, b, &c, k[i + 5] &+ w[i + 5])
                    round(c, d, e, &f, g, h, a, &b, k[i + 6] &+ w[i + 6])
                    round(b, c, d, &e, f, g, h, &a, k[i + 7] &+ w[i + 7])
                    i += 8
                }
            }
        }
        state = (state.0 &+ a, state.1 &+ b, state.2 &+ c, state.3 &+ d, state.4 &+ e, state.5 &+ f, state.6 &+ g, state.7 &+ h)
    }

    /// One round: `d` and `h` take the values the next round knows as `e` and `a`.
    @inline(__always)
    private func round(_ a: UInt32, _ b: UInt32, _ c: UInt32, _ d: inout UInt32,
                       _ e: UInt32, _ f: UInt32, _ g: UInt32, _ h: inout UInt32, _ kw: UInt32) {
        let t1 = h &+ (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) &+ (g ^ (e & (f ^ g))) &+ kw
        let t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) &+ ((a & b) | (c & (a | b)))
        d = d &+ t1
        h = t1 &+ t2
    }

    /// Masking shifts, so a rotation is one instruction.
    @inline(__always) private func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x &>> n) | (x &<< (32 &- n)) }
}

/// Lower-case hex of `bytes`.
public func hexString(_ bytes: some Collection<UInt8>) -> String {
    String(unsafeUninitializedCapacity: bytes.count * 2) { writeHex(bytes, to: $0) }
}

/// Writes the lower-case hex of `bytes` to the start of `out` (room for twice their count) and
/// returns how many bytes it wrote.
@inline(__always)
func writeHex(_ bytes: some Collection<UInt8>, to out: UnsafeMutableBufferPointer<UInt8>) -> Int {
    var i = 0
    for b in bytes {
        out[i] = hexDigit(b >> 4)
        out[i + 1] = hexDigit(b & 15)
        i += 2
    }
    return i
}

@inline(__always) private func hexDigit(_ v: UInt8) -> UInt8 { v < 10 ? 48 + v : 87 + v }
