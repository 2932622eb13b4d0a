import Contracts
import Foundation
import JSON

/// A partition's twins as the state-updater checkpoints them: every record, and the offset of the
/// last `twin.state.v1` message those records already reflect (restore reads the topic after it).
public struct Checkpoint: Sendable {
    public var partition: Int32
    public var stateOffset: Int64
    public var twins: [String: TwinRecord]

    public init(partition: Int32, stateOffset: Int64, twins: [String: TwinRecord]) {
        self.partition = partition
        self.stateOffset = stateOffset
        self.twins = twins
    }

    static let magic: [UInt8] = Array("TSCK".utf8)
    static let formatVersion: UInt8 = 1

    /// The binary form: magic, format, partition, state offset, count, records, then an FNV-1a
    /// checksum of everything before it. Binary because restoring a million twins from JSON would
    /// spend most of its time parsing.
    public func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: 64 + twins.count * 256)
        w.bytes(Self.magic)
        w.byte(Self.formatVersion)
        w.int(Int64(partition))
        w.int(stateOffset)
        w.uint(UInt64(twins.count))
        for (key, record) in twins { Self.write(record, key: key, to: &w) }
        w.fixed64(fnv1a(w.buffer))
        return w.buffer
    }

    public init(bytes: [UInt8]) throws(CheckpointError) {
        guard bytes.count >= 8 + Self.magic.count + 1 else { throw .corrupt("file too short") }
        let body = bytes[..<(bytes.count - 8)]
        var trailer = ByteReader(bytes[(bytes.count - 8)...])
        guard (try? trailer.fixed64()) == fnv1a(body) else { throw .corrupt("checksum mismatch") }
        var r = ByteReader(body)
        do {
            guard try r.bytes(Self.magic.count).elementsEqual(Self.magic) else { throw CheckpointError.corrupt("not a checkpoint file") }
            let format = try r.byte()
            guard format == Self.formatVersion else { throw CheckpointError.corrupt("unsupported format \(format)") }
            partition = Int32(truncatingIfNeeded: try r.int())
            stateOffset = try r.int()
            let count = Int(try r.uint())
            var twins: [String: TwinRecord] = [:]
            twins.reserveCapacity(count)
            for _ in 0..<count {
                let (key, record) = try Self.readRecord(&r)
                twins[key] = record
            }
            self.twins = twins
        } catch let error as CheckpointError {
            throw error
        } catch {
            throw .corrupt("\(error)")
        }
    }

    static func write(_ record: TwinRecord, key: String, to w: inout ByteWriter) {
        w.string(key)
        w.optionalString(record.model)
        w.int(record.version)
        w.int(record.updatedAt)
        w.byte((record.created ? 1 : 0) | (record.decommissioned ? 2 : 0))
        w.int(record.telemetryOffset)
        w.int(record.commandOffset)
        w.uint(UInt64(record.recent.count))
        for id in record.recent { w.fixed64(id) }
        // Event ids once per record: the properties a reading set share one.
        var ids: [String] = []
        var indexOf: [String: Int] = [:]
        for slot in record.properties where indexOf[slot.eventId] == nil {
            indexOf[slot.eventId] = ids.count
            ids.append(slot.eventId)
        }
        w.uint(UInt64(ids.count))
        for id in ids { w.string(id) }
        w.uint(UInt64(record.properties.count))
        for slot in record.properties {
            w.string(slot.name)
            w.json(slot.value)
            w.int(slot.eventTime)
            w.int(slot.ingestTime)
            w.uint(UInt64(indexOf[slot.eventId]!))
        }
        let x = record.extras
        if x == TwinRecord.Extras() {
            w.byte(0)
        } else {
            w.byte(1)
            w.json(.object(x.metadata)); w.json(.object(x.desired)); w.json(.object(x.parameters))
            w.uint(UInt64(x.relationships.count))
            for rel in x.relationships { w.string(rel.name); w.string(rel.target) }
        }
    }

    static func readRecord(_ r: inout ByteReader) throws -> (String, TwinRecord) {
        let key = try r.string()
        var record = TwinRecord(model: try r.optionalString())
        record.version = try r.int()
        record.updatedAt = try r.int()
        let flags = try r.byte()
        record.created = flags & 1 != 0
        record.decommissioned = flags & 2 != 0
        record.telemetryOffset = try r.int()
        record.commandOffset = try r.int()
        let recentCount = try r.count(limit: 1 << 16)
        record.recent = try (0..<recentCount).map { _ in try r.fixed64() }
        let idCount = try r.count(limit: 1 << 20)
        let ids = try (0..<idCount).map { _ in try r.string() }
        let propertyCount = try r.count(limit: 1 << 20)
        record.properties.reserveCapacity(propertyCount)
        for _ in 0..<propertyCount {
            let name = try r.string()
            let value = try r.json()
            let eventTime = try r.int()
            let ingestTime = try r.int()
            let index = try r.count(limit: ids.count - 1)
            record.properties.append(.init(name: name, value: value, eventTime: eventTime, ingestTime: ingestTime, eventId: ids[index]))
        }
        if try r.byte() == 1 {
            var x = TwinRecord.Extras()
            x.metadata = try r.json().objectValue ?? [:]
            x.desired = try r.json().objectValue ?? [:]
            x.parameters = try r.json().objectValue ?? [:]
            let n = try r.count(limit: 1 << 20)
            x.relationships = try (0..<n).map { _ in TwinState.Relationship(name: try r.string(), target: try r.string()) }
            record.extras = x
        }
        return (key, record)
    }
}

public enum CheckpointError: Error, Sendable, CustomStringConvertible {
    case corrupt(String)
    case io(String)
    public var description: String {
        switch self {
        case .corrupt(let m): "corrupt checkpoint: \(m)"
        case .io(let m): "checkpoint I/O: \(m)"
        }
    }
}

/// Checkpoint files in one directory, one per partition, written atomically: a temporary file is
/// written and fsynced, renamed over the old one, and the directory fsynced.
public struct CheckpointDirectory: Sendable {
    public let path: String

    public init(path: String) throws(CheckpointError) {
        self.path = path
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw .io("cannot create \(path): \(error.localizedDescription)")
        }
    }

    public func file(_ partition: Int32) -> String { "\(path)/partition-\(partition).ckpt" }

    /// Writes the checkpoint; returns its size in bytes.
    @discardableResult
    public func write(_ checkpoint: Checkpoint) throws(CheckpointError) -> Int {
        let bytes = checkpoint.encoded()
        let target = file(checkpoint.partition)
        let temp = target + ".tmp"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .io("cannot open \(temp): \(String(cString: strerror(errno)))") }
        var written = 0
        let ok = bytes.withUnsafeBytes { buffer -> Bool in
            while written < buffer.count {
                let n = Foundation.write(fd, buffer.baseAddress! + written, buffer.count - written)
                if n < 0 { if errno == EINTR { continue }; return false }
                written += n
            }
            return fsync(fd) == 0
        }
        close(fd)
        guard ok else { unlink(temp); throw .io("cannot write \(temp): \(String(cString: strerror(errno)))") }
        guard rename(temp, target) == 0 else { throw .io("cannot rename \(temp): \(String(cString: strerror(errno)))") }
        let dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 { _ = fsync(dir); close(dir) }
        return bytes.count
    }

    /// The partition's checkpoint, nil when there is none.
    public func read(_ partition: Int32) throws(CheckpointError) -> Checkpoint? {
        let target = file(partition)
        guard FileManager.default.fileExists(atPath: target) else { return nil }
        guard let data = FileManager.default.contents(atPath: target) else { throw .io("cannot read \(target)") }
        return try Checkpoint(bytes: Array(data))
    }
}

func fnv1a(_ bytes: some Collection<UInt8>) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in bytes {
        h ^= UInt64(b)
        h &*= 0x0000_0100_0000_01b3
    }
    return h
}

/// Little-endian varints (zig-zag for signed), strings with a length prefix, JSON values tagged.
struct ByteWriter {
    var buffer: [UInt8] = []
    init(capacity: Int) { buffer.reserveCapacity(capacity) }
    mutating func byte(_ b: UInt8) { buffer.append(b) }
    mutating func bytes(_ b: [UInt8]) { buffer.append(contentsOf: b) }
    mutating func uint(_ value: UInt64) {
        var v = value
        while v >= 0x80 { buffer.append(UInt8(v & 0x7f) | 0x80); v >>= 7 }
        buffer.append(UInt8(v))
    }
    mutating func int(_ value: Int64) { uint(UInt64(bitPattern: (value << 1) ^ (value >> 63))) }
    mutating func fixed64(_ value: UInt64) { for i in 0..<8 { buffer.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(i)))) } }
    mutating func string(_ s: String) {
        var s = s
        s.withUTF8 { u in uint(UInt64(u.count)); buffer.append(contentsOf: u) }
    }
    mutating func optionalString(_ s: String?) {
        if let s { byte(1); string(s) } else { byte(0) }
    }
    mutating func json(_ value: JSON) {
        switch value {
        case .null: byte(0)
        case .bool(let b): byte(b ? 2 : 1)
        case .number(let n):
            if let i = n.int64Value { byte(3); int(i) } else if n.isInteger { byte(6); bytes(value.serialized()); byte(0) } else { byte(4); fixed64(n.doubleValue.bitPattern) }
        case .string(let s): byte(5); string(s)
        case .array, .object:
            let text = value.serialized()
            byte(7); uint(UInt64(text.count)); bytes(text)
        }
    }
}

struct ByteReader {
    let data: ArraySlice<UInt8>
    var position: Int
    init(_ data: ArraySlice<UInt8>) { self.data = data; position = data.startIndex }

    struct Truncated: Error, CustomStringConvertible { var description: String { "record truncated or malformed" } }

    mutating func byte() throws -> UInt8 {
        guard position < data.endIndex else { throw Truncated() }
        defer { position += 1 }
        return data[position]
    }
    mutating func bytes(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, data.endIndex - position >= n else { throw Truncated() }
        defer { position += n }
        return data[position..<(position + n)]
    }
    mutating func uint() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let b = try byte()
            guard shift < 64 else { throw Truncated() }
            result |= UInt64(b & 0x7f) << shift
            if b < 0x80 { return result }
            shift += 7
        }
    }
    mutating func int() throws -> Int64 {
        let u = try uint()
        return Int64(bitPattern: (u >> 1) ^ (0 &- (u & 1)))
    }
    mutating func count(limit: Int) throws -> Int {
        let n = try uint()
        guard n <= UInt64(max(limit, 0)) else { throw Truncated() }
        return Int(n)
    }
    mutating func fixed64() throws -> UInt64 {
        let b = try bytes(8)
        var v: UInt64 = 0
        for (i, byte) in b.enumerated() { v |= UInt64(byte) << (8 * UInt64(i)) }
        return v
    }
    mutating func string() throws -> String {
        let n = try count(limit: data.endIndex - position)
        return String(decoding: try bytes(n), as: UTF8.self)
    }
    mutating func optionalString() throws -> String? { try byte() == 1 ? try string() : nil }
    mutating func json() throws -> JSON {
        switch try byte() {
        case 0: return .null
        case 1: return .bool(false)
        case 2: return .bool(true)
        case 3: return .number(JSONNumber(try int()))
        case 4: return .number(JSONNumber(Double(bitPattern: try fixed64())))
        case 5: return .string(try string())
        case 6:
            var text: [UInt8] = []
            while case let b = try byte(), b != 0 { text.append(b) }
            return try JSON(parsing: text)
        case 7:
            let n = try count(limit: data.endIndex - position)
            return try JSON(parsing: Array(try bytes(n)))
        default: throw Truncated()
        }
    }
}
