import Contracts
import Foundation
import JSON
import Kafka
import Models

/// `twinctl seed-twins`: publishes `--count` TwinState v1 documents straight to `twin.state.v1`,
/// as the state-updater would after a `create` command and one reading per twin — a large,
/// realistic view for the query API without running the pipeline (Benchmarks/query-api.sh).
///
/// Twin `i` (0-based) is `<prefix><i zero-padded to 6>`; its values (every numeric telemetry of
/// the model, uniform within the model's range), metadata and event id come from a SplitMix64
/// seeded with `--seed + i`, so a twin looks the same whatever `--count` or chunking. Event times
/// are within the last 2 s. With `--relate-every K`, every K-th twin gets a relationship to the
/// next seeded twin, if the model declares one whose target is the model itself.
func runSeedTwins(_ args: Arguments) async throws {
    let count = try args.int("count", default: 100_000)
    guard count >= 1 else { throw UsageError("--count must be at least 1") }
    let tenant = args.string("tenant") ?? "default"
    guard TenantID.isValid(tenant) else { throw UsageError("--tenant must be 1-64 letters, digits, _ or -, got '\(tenant)'") }
    let prefix = args.string("prefix") ?? "pump-"
    guard TwinID.isValid(seedTwinId(prefix: prefix, count - 1)) else {
        throw UsageError("--prefix '\(prefix)' does not make valid twin ids (letters, digits and . _ - :, at most 128)")
    }
    let relateEvery = try args.int("relate-every", default: 0)
    guard relateEvery >= 0 else { throw UsageError("--relate-every must be 0 (none) or positive") }
    let chunkSize = max(1, try args.int("chunk", default: 10_000))
    let seed = UInt64(truncatingIfNeeded: try args.int("seed", default: 42))
    let modelsDir = try LocalFiles.modelsDirectory(args).path
    let registry = try ModelRegistry(directory: modelsDir)
    let modelText = args.string("model") ?? "pump@1"
    guard let model = registry.model(referencedBy: modelText) else {
        throw UsageError("--model '\(modelText)' is not loaded from \(modelsDir) (have: \(registry.models.map(\.description).joined(separator: ", ")))")
    }

    // A relationship the seeded twins can have with each other: one whose target is this model.
    var relationship: TwinModel.Relationship?
    if relateEvery > 0 {
        relationship = model.relationships.first { $0.target.id == model.id && ($0.target.version ?? model.version) == model.version }
        if relationship == nil {
            let declared = model.relationships.map { "\($0.name) → \($0.target)" }.joined(separator: ", ")
            printError("seed-twins: \(model) declares no relationship to \(model.id) twins (\(declared.isEmpty ? "none" : declared)); --relate-every ignored")
        }
    }

    // `lz4` by default: the embedded broker keeps only ~5 MiB per partition, counted as stored
    // (compressed) bytes; 100,000 uncompressed documents of ~1 KB would not fit in 6 partitions.
    let compression = args.string("compression") ?? "lz4"
    let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: args.brokers, [
        "compression.type": compression, "linger.ms": "20",
    ]))
    let seeder = TwinSeeder(tenant: tenant, prefix: prefix, model: model, count: count, seed: seed,
                            relateEvery: relationship == nil ? 0 : relateEvery, relationship: relationship?.name)
    let start = ContinuousClock.now
    var published = 0, bytes = 0
    var perPartition: [Int32: Int] = [:]
    do {
        var next = 0
        while next < count {
            let end = min(count, next + chunkSize)
            let now = Timestamp.now
            let messages = (next..<end).map { seeder.message($0, now: now) }
            bytes += messages.reduce(0) { $0 + $1.value.count }
            for report in try await producer.sendAll(messages, queueFullTimeout: .seconds(60)) {
                perPartition[report.partition, default: 0] += 1
            }
            published += messages.count
            next = end
        }
    } catch {
        await producer.close()
        throw BenchFailure(description: "published \(published) of \(count) twins, then: \(error)")
    }
    let seconds = Double((ContinuousClock.now - start) / .milliseconds(1)) / 1000
    await producer.close()
    let partitions = perPartition.keys.sorted().map { "\($0):\(perPartition[$0]!)" }.joined(separator: " ")
    printNow("published \(published) twins to \(Topic.twinState.name) in \(String(format: "%.3f", seconds)) seconds: "
        + "\(Int(Double(published) / max(seconds, 0.001))) twins/s (tenant \(tenant), model \(model), ids \(seedTwinId(prefix: prefix, 0))…\(seedTwinId(prefix: prefix, count - 1)), "
        + "\(bytes / published) bytes per document, \(String(format: "%.1f", Double(bytes) / 1_048_576)) MiB\(compression == "none" ? "" : " before \(compression) compression"); per partition \(partitions))")
}

/// `<prefix><index zero-padded to 6 digits>`.
func seedTwinId(prefix: String, _ index: Int) -> String {
    let digits = String(index)
    return prefix + String(repeating: "0", count: max(0, 6 - digits.count)) + digits
}

/// Builds seeded twin-state messages; pure, so a twin's content depends only on its index.
struct TwinSeeder {
    let tenant: String
    let prefix: String
    let model: TwinModel
    let count: Int
    let seed: UInt64
    let relateEvery: Int
    let relationship: String?
    let numeric: [TwinModel.Telemetry]

    static let sites = ["north", "south", "east", "west"]

    init(tenant: String, prefix: String, model: TwinModel, count: Int, seed: UInt64, relateEvery: Int, relationship: String?) {
        self.tenant = tenant
        self.prefix = prefix
        self.model = model
        self.count = count
        self.seed = seed
        self.relateEvery = relateEvery
        self.relationship = relationship
        numeric = model.telemetry.filter { $0.type.isNumeric }
    }

    /// Twin `index` as the state-updater would have written it at `now`: created (version 1), then
    /// one reading of every numeric telemetry (version 2).
    func state(_ index: Int, now: Int64) -> TwinState {
        var rng = SplitMix64(seed: seed &+ UInt64(index))
        let twinId = seedTwinId(prefix: prefix, index)
        let eventTime = now - Int64(rng.next() % 2000)
        let ingestTime = eventTime + 5 + Int64(rng.next() % 45)
        let eventId = (0..<4).map { _ in hex64(rng.next()) }.joined()
        var properties: [(name: String, property: TwinState.Property)] = []
        for t in numeric {
            let lo = t.minimum ?? 0, hi = t.maximum ?? (lo + 100)
            let raw = lo + (hi - lo) * rng.nextUnit()
            let value: JSON = t.type == .integer ? .int(Int(raw.rounded())) : .double((raw * 100).rounded() / 100)
            properties.append((t.name, TwinState.Property(value: value, unit: t.unit, eventTime: eventTime,
                                                          ingestTime: ingestTime, eventId: eventId)))
        }
        properties.sort { $0.name < $1.name }
        let metadata: JSONObject = ["site": .string(Self.sites[index % Self.sites.count]), "line": .int(index % 8 + 1)]
        var relationships: [TwinState.Relationship] = []
        if let relationship, relateEvery > 0, index % relateEvery == 0, count > 1 {
            relationships.append(TwinState.Relationship(name: relationship, target: seedTwinId(prefix: prefix, (index + 1) % count)))
        }
        return TwinState(tenant: tenant, twinId: twinId, model: model.description, version: 2, updatedAt: ingestTime,
                         created: true, properties: properties, missing: model.missing { name in properties.contains { $0.name == name } },
                         metadata: metadata, relationships: relationships,
                         sync: TwinState.Sync(recent: [rng.next(), rng.next()]))
    }

    /// The `twin.state.v1` message of twin `index`: key `tenant/twinId`, the state-updater's headers.
    func message(_ index: Int, now: Int64) -> OutgoingMessage {
        let state = state(index, now: now)
        return OutgoingMessage(topic: Topic.twinState.name, key: state.key, value: state.encoded(), headers: [
            KafkaHeader(MessageHeader.contract, TwinState.contract), KafkaHeader(MessageHeader.tenant, tenant),
            KafkaHeader(MessageHeader.version, String(state.version)), KafkaHeader(MessageHeader.model, state.model ?? ""),
        ])
    }
}

/// 16 lowercase hex digits.
private func hex64(_ value: UInt64) -> String {
    let text = String(value, radix: 16)
    return String(repeating: "0", count: 16 - text.count) + text
}
