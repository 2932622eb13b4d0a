/// A slice of a Monte Carlo shard's accumulator small enough for one Kafka message: the
/// histogram cells `cells` (cell = series · points + point) of one sample range, in a compact
/// binary form, plus — in the piece whose cells start at 0 — the shard's totals (samples,
/// crossings, redraws). A coordinator merges pieces straight into its accumulator
/// (`MonteCarloAccumulator.merge(_:)`), so it never holds more than that one accumulator however
/// many shards there are; merging every piece of every shard equals the unsharded accumulator
/// exactly (integer counts, exact minimum and maximum).
///
/// Binary layout of `bytes`, per cell in order: unsigned LEB128 varints `under`, `over`; the
/// minimum and maximum as 8-byte little-endian IEEE bit patterns; varint `first` (index of the
/// first non-zero bin, or `bins` when every bin is empty), and unless empty, varint `length`
/// followed by `length` varint counts of bins `first ..< first + length`.
public struct MonteCarloPiece: Sendable, Equatable {
    /// The request's accumulator fingerprint (pieces of another request are refused).
    public var fingerprint: String
    /// The shard's sample range.
    public var samples: Range<Int>
    /// The histogram cells this piece holds.
    public var cells: Range<Int>
    /// Threshold crossings and redraws over the shard's samples (counted once: in the piece whose
    /// cells start at 0).
    public var crossings: Int
    public var redraws: Int
    /// The encoded cells.
    public var bytes: [UInt8]

    /// Makes a piece (decoders use it; producers cut pieces with `MonteCarloAccumulator.pieces`).
    public init(fingerprint: String, samples: Range<Int>, cells: Range<Int>, crossings: Int, redraws: Int, bytes: [UInt8]) {
        self.fingerprint = fingerprint
        self.samples = samples
        self.cells = cells
        self.crossings = crossings
        self.redraws = redraws
        self.bytes = bytes
    }

    /// Whether this piece carries the shard's totals.
    public var carriesTotals: Bool { cells.lowerBound == 0 }
}

extension MonteCarloAccumulator {
    /// Histogram cells (series × grid points).
    public var cellCount: Int { lo.count }

    /// Cuts this accumulator (one shard: exactly one covered sample range) into pieces whose
    /// `bytes` stay within `maxBytes` each (a single cell is never split; one cell is at most a
    /// few bytes per bin). Throws `invalid_request` when the accumulator covers no single range.
    public func pieces(maxBytes: Int) throws(SimulationError) -> [MonteCarloPiece] {
        guard covered.count == 1, let samples = covered.first else {
            throw SimulationError(.invalidRequest, "only an accumulator of one contiguous sample range is cut into pieces")
        }
        var pieces: [MonteCarloPiece] = []
        var bytes: [UInt8] = []
        bytes.reserveCapacity(min(maxBytes, 1 << 20))
        var first = 0
        var cell: [UInt8] = []
        cell.reserveCapacity(16 + 3 * bins)
        func emit(upTo end: Int) {
            pieces.append(MonteCarloPiece(fingerprint: fingerprint, samples: samples, cells: first..<end,
                                          crossings: first == 0 ? crossings : 0, redraws: first == 0 ? redraws : 0, bytes: bytes))
            bytes.removeAll(keepingCapacity: true)
            first = end
        }
        for c in 0..<cellCount {
            cell.removeAll(keepingCapacity: true)
            encodeCell(c, into: &cell)
            if !bytes.isEmpty && bytes.count + cell.count > maxBytes { emit(upTo: c) }
            bytes.append(contentsOf: cell)
        }
        emit(upTo: cellCount)
        return pieces
    }

    private func encodeCell(_ c: Int, into out: inout [UInt8]) {
        Varint.append(UInt64(under[c]), to: &out)
        Varint.append(UInt64(over[c]), to: &out)
        for x in [minimum[c].bitPattern, maximum[c].bitPattern] {
            for b in 0..<8 { out.append(UInt8(truncatingIfNeeded: x >> (8 * UInt64(b)))) }
        }
        let base = c * bins
        var k0 = 0
        while k0 < bins && counts[base + k0] == 0 { k0 += 1 }
        Varint.append(UInt64(k0), to: &out)
        guard k0 < bins else { return }
        var k1 = bins
        while counts[base + k1 - 1] == 0 { k1 -= 1 }
        Varint.append(UInt64(k1 - k0), to: &out)
        for k in k0..<k1 { Varint.append(UInt64(counts[base + k]), to: &out) }
    }

    /// Adds a piece of another accumulator of the same request. The piece carrying the totals
    /// also adds the shard's sample range (refused when it overlaps one already merged, as
    /// `merge` refuses overlapping accumulators); the caller merges every other piece once (a
    /// coordinator de-duplicates by shard and piece). Throws `incompatible_shards` for another
    /// request's piece, bytes that do not decode to the piece's cells, or overlapping ranges.
    public mutating func merge(_ piece: MonteCarloPiece) throws(SimulationError) {
        guard piece.fingerprint == fingerprint else {
            throw SimulationError(.incompatibleShards, "a piece of another Monte Carlo request cannot be merged")
        }
        guard piece.cells.lowerBound >= 0, piece.cells.upperBound <= cellCount, piece.samples.lowerBound >= 0,
              piece.samples.upperBound <= totalSamples else {
            throw SimulationError(.incompatibleShards, "piece cells \(piece.cells) or samples \(piece.samples) outside the accumulator")
        }
        if piece.carriesTotals {
            for a in covered where a.overlaps(piece.samples) {
                throw SimulationError(.incompatibleShards, "sample ranges \(a) and \(piece.samples) overlap")
            }
        }
        // Decode into scratch first: a malformed piece must leave the accumulator untouched.
        var reader = Varint.Reader(piece.bytes)
        var decoded: [(c: Int, under: UInt32, over: UInt32, min: Double, max: Double, first: Int, start: Int, end: Int)] = []
        decoded.reserveCapacity(piece.cells.count)
        var scratch: [UInt32] = []
        let limit = UInt64(piece.samples.count)  // no cell counts more samples than the shard ran
        for c in piece.cells {
            guard let u = reader.next(), let o = reader.next(), let lo = reader.fixed64(), let hi = reader.fixed64(), let k0 = reader.next(),
                  u <= limit, o <= limit, let under = UInt32(exactly: u), let over = UInt32(exactly: o), k0 <= UInt64(bins) else {
                throw SimulationError(.incompatibleShards, "piece bytes do not decode at cell \(c)")
            }
            let start = scratch.count
            if k0 < UInt64(bins) {
                guard let n = reader.next(), n >= 1, k0 + n <= UInt64(bins) else {
                    throw SimulationError(.incompatibleShards, "piece bytes do not decode at cell \(c)")
                }
                for _ in 0..<Int(n) {
                    guard let x = reader.next(), x <= limit, let v = UInt32(exactly: x) else {
                        throw SimulationError(.incompatibleShards, "piece bytes do not decode at cell \(c)")
                    }
                    scratch.append(v)
                }
            }
            decoded.append((c, under, over, Double(bitPattern: lo), Double(bitPattern: hi), Int(k0), start, scratch.count))
        }
        guard reader.atEnd else { throw SimulationError(.incompatibleShards, "piece bytes run past its \(piece.cells.count) cells") }
        for d in decoded {
            under[d.c] &+= d.under
            over[d.c] &+= d.over
            minimum[d.c] = Swift.min(minimum[d.c], d.min)
            maximum[d.c] = Swift.max(maximum[d.c], d.max)
            let base = d.c * bins + d.first
            for k in d.start..<d.end { counts[base + k - d.start] &+= scratch[k] }
        }
        if piece.carriesTotals {
            crossings += piece.crossings
            redraws += piece.redraws
            sampleCount += piece.samples.count
            var ranges = (covered + [piece.samples]).sorted { $0.lowerBound < $1.lowerBound }
            var merged: [Range<Int>] = []
            for r in ranges {
                if let last = merged.last, last.upperBound == r.lowerBound { merged[merged.count - 1] = last.lowerBound..<r.upperBound } else { merged.append(r) }
            }
            ranges = merged
            covered = ranges
        }
    }
}

/// Unsigned LEB128 varints (7 bits a byte, low first), for compact integer streams.
enum Varint {
    static func append(_ value: UInt64, to out: inout [UInt8]) {
        var x = value
        while x >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: x) | 0x80)
            x >>= 7
        }
        out.append(UInt8(x))
    }

    /// Reads varints and fixed 8-byte values from a byte array; nil past the end or on overflow.
    struct Reader {
        let bytes: [UInt8]
        var position = 0
        init(_ bytes: [UInt8]) { self.bytes = bytes }

        var atEnd: Bool { position == bytes.count }

        mutating func next() -> UInt64? {
            var result: UInt64 = 0, shift: UInt64 = 0
            while position < bytes.count, shift < 64 {
                let b = bytes[position]
                position += 1
                result |= UInt64(b & 0x7f) << shift
                if b < 0x80 { return result }
                shift += 7
            }
            return nil
        }

        mutating func fixed64() -> UInt64? {
            guard position + 8 <= bytes.count else { return nil }
            var x: UInt64 = 0
            for b in 0..<8 { x |= UInt64(bytes[position + b]) << (8 * UInt64(b)) }
            position += 8
            return x
        }
    }
}
