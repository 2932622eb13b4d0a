import CRdKafka
import Dispatch
import Foundation
import Synchronization

/// A partition assignment change, reported from inside the poll before any message of the new
/// assignment is returned (so a stage can restore state first) and after every message of the
/// revoked partitions was handed out and its batch finished.
public enum RebalanceEvent: Sendable, Equatable {
    case assigned([TopicPartition])
    case revoked([TopicPartition])
}

/// A consumer-group member with manual offset storage: offsets are stored only for messages the
/// caller says it has processed (`store`), and committed by librdkafka in the background, on
/// revocation and on close — at-least-once, never lose.
///
/// Every blocking librdkafka call (poll, commit, close) runs on the consumer's own serial queue.
/// Polling is pull-based: nothing is fetched into Swift until the caller asks for the next batch,
/// so a slow stage back-pressures the broker fetch instead of filling a buffer.
public final class KafkaConsumer: Sendable {
    public typealias RebalanceListener = @Sendable (RebalanceEvent) -> Void

    nonisolated(unsafe) private let rk: OpaquePointer
    private let context: Unmanaged<ClientContext>
    private let ctx: ConsumerContext
    private let queue = DispatchQueue(label: "twinstream.kafka.consumer")
    private let closed = Flag()
    /// Metric reads from other threads hold it; close waits them out before destroying the client.
    private let gate = HandleGate()
    private let reachability = BrokerReachability()
    public let groupId: String

    /// Settings the platform's at-least-once contract depends on; see ARCHITECTURE.md "Every service".
    public static let requiredProperties: [String: String] = [
        "enable.auto.offset.store": "false",
        "enable.partition.eof": "true",
    ]
    /// Defaults an operator may override through `KAFKA_*` variables.
    ///
    /// The prefetch limits: librdkafka 2.0 counts `queued.min.messages` against the one queue all
    /// partitions feed (not per partition, as documented), and once it is reached stops fetching
    /// for up to a second (librdkafka issue 2879; `fetch.queue.backoff.ms` arrived only in 2.2).
    /// A consumer that drains 100,000 messages (its default) in less than that sits idle for the
    /// rest, which caps a fast stage, a catch-up or a view replay at a few hundred thousand small
    /// messages a second. 250,000 buffers more of a 200-byte reading stream; the buffered payload
    /// stays bounded by `queued.max.messages.kbytes`, set here to librdkafka's own default, 64 MiB.
    public static let defaultProperties: [String: String] = [
        "enable.auto.commit": "true",
        "auto.commit.interval.ms": "1000",
        "auto.offset.reset": "earliest",
        "session.timeout.ms": "10000",
        "heartbeat.interval.ms": "1000",
        "queued.min.messages": "250000",
        "queued.max.messages.kbytes": "65536",
    ]

    /// Joins `groupId` and subscribes to `topics`. `onRebalance` runs on the poll queue.
    public init(configuration: KafkaConfiguration, groupId: String, topics: [String],
                onRebalance: RebalanceListener? = nil) throws {
        self.groupId = groupId
        let config = configuration.withDefaults(Self.defaultProperties)
            .with(Self.requiredProperties).with(["group.id": groupId])
        let conf = try config.makeNativeConfig(for: RD_KAFKA_CONSUMER)
        ctx = ConsumerContext(config, listener: onRebalance)
        context = ctx.install(on: conf)
        rd_kafka_conf_set_rebalance_cb(conf) { rk, err, partitions, opaque in
            guard let rk, let opaque else { return }
            let ctx = Unmanaged<ConsumerContext>.fromOpaque(opaque).takeUnretainedValue()
            ctx.rebalance(rk, err, partitions)
        }
        do {
            rk = try makeClient(RD_KAFKA_CONSUMER, conf)
        } catch {
            context.release()
            throw error
        }
        rd_kafka_poll_set_consumer(rk)
        let list = makePartitionList(topics.map { TopicPartition($0, -1) })  // RD_KAFKA_PARTITION_UA
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let err = rd_kafka_subscribe(rk, list)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            rd_kafka_destroy(rk)
            context.release()
            throw KafkaError(err, context: "subscribe to \(topics)")
        }
    }

    /// A consumer outside any group that reads `partitions` from their beginning: for readers that
    /// need every partition, such as a query replica materialising a full view, or a tail. It
    /// commits nothing; `store` and `commit` are no-ops for it.
    ///
    /// The assignment is made on the consumer's queue once the partitions' leaders are known (or
    /// two seconds passed): librdkafka 2.0 retries an offset lookup that found no leader only
    /// after a fixed 500 ms, which would otherwise delay every start by half a second. Polls wait
    /// for it in order; an assignment error goes to the configuration's error handler.
    public convenience init(configuration: KafkaConfiguration, readingFromBeginning partitions: [TopicPartition]) throws {
        try self.init(configuration: configuration, reading: Dictionary(uniqueKeysWithValues: partitions.map { ($0, .beginning) }))
    }

    /// Where a group-less reader starts in a partition.
    public enum StartOffset: Sendable, Hashable {
        /// The oldest message the broker still has.
        case beginning
        /// `n` messages before the end (fewer when the partition holds fewer): a bounded replay
        /// of the recent past, for views that keep only a window.
        case tail(Int)
        /// This offset (a message's coordinates, e.g. a dead-letter's origin).
        case at(Int64)
        /// The first message whose timestamp is at or after this time (epoch ms), looked up with
        /// `offsetsForTimes`; the beginning when the broker finds none or cannot answer (the
        /// embedded broker implements no timestamp lookup): never later than the time.
        case time(Int64)

        var logical: Int64 {
            switch self {
            case .beginning, .time: -2  // RD_KAFKA_OFFSET_BEGINNING
            case .tail(let n): -2000 - Int64(max(0, n))  // RD_KAFKA_OFFSET_TAIL(n)
            case .at(let offset): max(0, offset)
            }
        }
    }

    /// A consumer outside any group that reads each partition from its own start (see
    /// `readingFromBeginning:`); readiness (`isCaughtUp`) means every partition reached its end once.
    public convenience init(configuration: KafkaConfiguration, reading starts: [TopicPartition: StartOffset]) throws {
        try self.init(configuration: configuration, assigning: .partitions(starts))
    }

    /// A consumer outside any group that reads every partition of each topic from the topic's
    /// start: the partition counts come from the cluster's metadata (asked on the consumer's
    /// queue, so the caller does not wait; not ready until assigned). A topic the cluster does not
    /// describe within a few attempts is read on `fallbackPartitions` partitions.
    public convenience init(configuration: KafkaConfiguration, readingEveryPartitionOf topics: [String: StartOffset],
                            fallbackPartitions: Int32) throws {
        try self.init(configuration: configuration, assigning: .topics(topics, fallback: fallbackPartitions))
    }

    /// What a group-less reader is assigned.
    private enum Assignment {
        case partitions([TopicPartition: StartOffset])
        case topics([String: StartOffset], fallback: Int32)
    }

    private init(configuration: KafkaConfiguration, assigning assignment: Assignment) throws {
        groupId = "unassigned-\(UInt64.random(in: 0...UInt64.max))"
        let config = configuration.withDefaults(Self.defaultProperties)
            .with(Self.requiredProperties).with(["group.id": groupId, "enable.auto.commit": "false"])
        let conf = try config.makeNativeConfig(for: RD_KAFKA_CONSUMER)
        ctx = ConsumerContext(config, listener: nil)
        context = ctx.install(on: conf)
        do {
            rk = try makeClient(RD_KAFKA_CONSUMER, conf)
        } catch {
            context.release()
            throw error
        }
        rd_kafka_poll_set_consumer(rk)
        if case .partitions(let starts) = assignment { ctx.markAssigned(Array(starts.keys)) }
        // Captures self: the client outlives this block, so deinit cannot destroy it underneath.
        queue.async { [self] in
            let starts: [TopicPartition: StartOffset]
            switch assignment {
            case .partitions(let given):
                starts = given
                awaitLeaders(rk, of: Set(given.keys.map(\.topic)), timeoutMs: 2000)
            case .topics(let topics, let fallback):
                var counts: [String: Int32] = [:]
                for attempt in 0..<5 where counts.count < topics.count && !closed.isSet {
                    if attempt > 0 { Thread.sleep(forTimeInterval: 0.5) }
                    counts.merge(awaitLeaders(rk, of: Set(topics.keys).subtracting(counts.keys), timeoutMs: 2000)) { a, _ in a }
                }
                var all: [TopicPartition: StartOffset] = [:]
                for (topic, start) in topics {
                    for p in 0..<(counts[topic] ?? fallback) { all[TopicPartition(topic, p)] = start }
                }
                starts = all
                ctx.markAssigned(Array(all.keys))
            }
            let partitions = starts.keys.sorted()
            let list = makePartitionList(partitions, offsets: starts.mapValues(\.logical))
            defer { rd_kafka_topic_partition_list_destroy(list) }
            resolveTimes(starts, into: list)
            resolveTails(starts, into: list)
            let err = rd_kafka_assign(rk, list)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                ctx.errorHandler?(KafkaError(err, context: "assign \(partitions)"))
            }
        }
    }

    /// Replaces the start of every `.tail(n)` partition in `list` by the absolute offset n before
    /// its end (never before its beginning), from the cluster's watermarks (blocking; runs on the
    /// consumer's queue before the assignment). librdkafka (2.0.2, and still upstream) keeps a
    /// logical tail start as the partition's query offset and takes n off every later offset
    /// reset too: a reader that fell behind the broker's retention was reset to the log start
    /// minus n, out of range again, forever ("offset reset … to cached BEGINNING offset" in a
    /// loop, its lag stuck). An absolute start leaves nothing to take off. Left logical when the
    /// cluster does not answer.
    private func resolveTails(_ starts: [TopicPartition: StartOffset], into list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) {
        var tails: [TopicPartition: Int64] = [:]
        for (tp, start) in starts { if case .tail(let n) = start { tails[tp] = Int64(max(0, n)) } }
        guard !tails.isEmpty else { return }
        // A ListOffsets "time" of -2 asks for the log start, -1 for the end: two requests in all.
        func ask(_ logical: Int64) -> [TopicPartition: Int64] {
            let query = makePartitionList(tails.keys, offsets: tails.mapValues { _ in logical })
            defer { rd_kafka_topic_partition_list_destroy(query) }
            guard rd_kafka_offsets_for_times(rk, query, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR else { return [:] }
            var answer: [TopicPartition: Int64] = [:]
            for i in 0..<Int(query.pointee.cnt) {
                let e = query.pointee.elems[i]
                if e.err == RD_KAFKA_RESP_ERR_NO_ERROR && e.offset >= 0 { answer[TopicPartition(String(cString: e.topic), e.partition)] = e.offset }
            }
            return answer
        }
        let low = ask(-2), high = ask(-1)
        for i in 0..<Int(list.pointee.cnt) {
            let e = list.pointee.elems[i]
            let tp = TopicPartition(String(cString: e.topic), e.partition)
            if let n = tails[tp], let lo = low[tp], let hi = high[tp] { list.pointee.elems[i].offset = max(lo, hi - n) }
        }
    }

    /// Replaces the start of every `.time` partition in `list` by the broker's answer to a
    /// timestamp lookup (blocking; runs on the consumer's queue before the assignment).
    private func resolveTimes(_ starts: [TopicPartition: StartOffset], into list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) {
        var times: [TopicPartition: Int64] = [:]
        for (tp, start) in starts { if case .time(let ms) = start { times[tp] = ms } }
        guard !times.isEmpty else { return }
        let query = makePartitionList(times.keys, offsets: times)
        defer { rd_kafka_topic_partition_list_destroy(query) }
        let err = rd_kafka_offsets_for_times(rk, query, 5000)
        var resolved: [TopicPartition: Int64] = [:]
        for i in 0..<Int(query.pointee.cnt) {
            let e = query.pointee.elems[i]
            let tp = TopicPartition(String(cString: e.topic), e.partition)
            // No offset (-1: nothing that recent, or a broker that cannot tell — the embedded one
            // answers -1 to every time) or a failed lookup: read from the beginning, which is
            // slower but never misses a message.
            resolved[tp] = err == RD_KAFKA_RESP_ERR_NO_ERROR && e.err == RD_KAFKA_RESP_ERR_NO_ERROR && e.offset >= 0 ? e.offset : -2
        }
        for i in 0..<Int(list.pointee.cnt) {
            let e = list.pointee.elems[i]
            if let offset = resolved[TopicPartition(String(cString: e.topic), e.partition)] { list.pointee.elems[i].offset = offset }
        }
    }

    /// Returns up to `maxMessages` messages, waiting at most `timeout` for the first one.
    /// An empty batch means nothing arrived in time. Rebalance callbacks run inside this call.
    public func poll(maxMessages: Int = 500, timeout: Duration = .milliseconds(200)) async throws -> [KafkaMessage] {
        guard !closed.isSet else {
            throw KafkaError(code: RD_KAFKA_RESP_ERR__DESTROY.rawValue, message: "consumer is closed")
        }
        let handle = UnsafeSendable(rk)
        let ctx = self.ctx
        let ms = milliseconds(timeout)
        return await withCheckedContinuation { continuation in
            queue.async {
                continuation.resume(returning: ctx.pollBatch(handle.value, maxMessages: maxMessages, timeoutMs: ms))
            }
        }
    }

    /// Marks `messages` processed: for each partition, the offset after the highest one is stored
    /// and will be committed. Call only after the effects of these messages are durable.
    public func store(_ messages: [KafkaMessage]) {
        var next: [TopicPartition: Int64] = [:]
        var i = 0
        // Runs of one partition (how a poll returns them): one dictionary update per run, and the
        // messages' fields are read in place rather than copied.
        while i < messages.count {
            let topic = messages[i].topic, partition = messages[i].partition
            var high = messages[i].offset
            var j = i + 1
            while j < messages.count && messages[j].partition == partition && messages[j].topic == topic {
                high = max(high, messages[j].offset)
                j += 1
            }
            let tp = TopicPartition(topic, partition)
            next[tp] = max(next[tp] ?? 0, high + 1)
            i = j
        }
        store(offsets: next)
    }

    /// Stores explicit next-offsets per partition (the offset of the first unprocessed message).
    public func store(offsets: [TopicPartition: Int64]) {
        guard !offsets.isEmpty, !closed.isSet else { return }
        let list = makePartitionList(offsets.keys, offsets: offsets)
        defer { rd_kafka_topic_partition_list_destroy(list) }
        // Partitions revoked meanwhile fail individually; their new owner reprocesses (at-least-once).
        _ = rd_kafka_offsets_store(rk, list)
    }

    /// Commits the stored offsets now and waits for the broker's answer.
    public func commit() async throws {
        let handle = UnsafeSendable(rk)
        let err: rd_kafka_resp_err_t = await withCheckedContinuation { continuation in
            queue.async { continuation.resume(returning: rd_kafka_commit(handle.value, nil, 0)) }
        }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET {
            throw KafkaError(err, context: "commit")
        }
    }

    /// Stops fetching from `partitions` (used for back-pressure when an output is saturated).
    public func pause(_ partitions: [TopicPartition]) {
        let list = makePartitionList(partitions)
        defer { rd_kafka_topic_partition_list_destroy(list) }
        _ = rd_kafka_pause_partitions(rk, list)
    }

    /// Resumes fetching from `partitions`.
    public func resume(_ partitions: [TopicPartition]) {
        let list = makePartitionList(partitions)
        defer { rd_kafka_topic_partition_list_destroy(list) }
        _ = rd_kafka_resume_partitions(rk, list)
    }

    /// The partitions currently assigned to this member.
    public var assignment: Set<TopicPartition> { ctx.snapshot.assigned }

    /// True once this member has joined its group and read every assigned partition to its end at
    /// least once since it was assigned: the service's "caught up" readiness signal. A member the
    /// group gave no partitions (more instances than partitions) is idle but ready.
    public var isCaughtUp: Bool {
        let s = ctx.snapshot
        return s.joined && s.assigned.isSubset(of: s.reachedEnd)
    }

    /// Whether the cluster answered this client's last metadata request (asked at most once a
    /// second, only while someone reads this; see `BrokerReachability`). False once closed.
    public var brokersReachable: Bool {
        reachability.current { [self] in
            guard !closed.isSet, gate.enter() else { return false }
            defer { gate.leave() }
            var metadata: UnsafePointer<rd_kafka_metadata>?
            let err = rd_kafka_metadata(rk, 0, nil, &metadata, 1000)
            if let metadata { rd_kafka_metadata_destroy(metadata) }
            return err == RD_KAFKA_RESP_ERR_NO_ERROR
        }
    }

    /// The readiness a service reports for this consumer: caught up (`isCaughtUp`) and the cluster
    /// reachable (`brokersReachable`), so `/readyz` fails while the broker is away.
    public var isReady: Bool { isCaughtUp && brokersReachable }

    /// Messages between this member's position and the high watermark, per assigned partition,
    /// from librdkafka's cached watermarks (no broker round trip).
    public func lag() -> [TopicPartition: Int64] {
        let assigned = assignment
        guard !assigned.isEmpty, !closed.isSet, gate.enter() else { return [:] }
        defer { gate.leave() }
        let list = makePartitionList(assigned)
        defer { rd_kafka_topic_partition_list_destroy(list) }
        _ = rd_kafka_position(rk, list)
        var result: [TopicPartition: Int64] = [:]
        for (tp, position) in readPartitionList(list) {
            var low: Int64 = 0, high: Int64 = 0
            guard rd_kafka_get_watermark_offsets(rk, tp.topic, tp.partition, &low, &high) == RD_KAFKA_RESP_ERR_NO_ERROR,
                  high >= 0 else { continue }
            result[tp] = position >= 0 ? max(0, high - position) : max(0, high - low)
        }
        return result
    }

    /// The log start and end offsets librdkafka last saw for `partition` (from fetch responses; no
    /// broker round trip); nil before it has seen any.
    public func cachedWatermarks(_ partition: TopicPartition) -> (low: Int64, high: Int64)? {
        guard !closed.isSet, gate.enter() else { return nil }
        defer { gate.leave() }
        var low: Int64 = -1, high: Int64 = -1
        guard rd_kafka_get_watermark_offsets(rk, partition.topic, partition.partition, &low, &high) == RD_KAFKA_RESP_ERR_NO_ERROR,
              low >= 0, high >= 0 else { return nil }
        return (low, high)
    }

    /// How long `close()` waits for librdkafka's consumer close before it gives the client up.
    public static let closeTimeout: Duration = .seconds(30)

    /// Commits stored offsets, leaves the group (revoking the assignment so peers take over at
    /// once) and destroys the client. Safe to call more than once.
    ///
    /// Returns after at most `timeout`: librdkafka 2.0.2's close can wait forever when the
    /// group rebalances while a member closes (its rebalance callback's `rd_kafka_assign` is
    /// purged unanswered once the group handler has terminated; seen with two simulation
    /// workers stopping together). Then the client is given up (its thread and memory stay
    /// behind), the error handler is told, and the caller goes on with its shutdown.
    public func close(timeout: Duration = KafkaConsumer.closeTimeout) async {
        guard closed.setOnce() else { return }
        let handle = UnsafeSendable(rk)
        let context = UnsafeSendable(self.context)
        let ctx = self.ctx
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumed = Flag()
            // DispatchWorkItem's cancel is thread-safe; the wrapper only tells the compiler.
            let giveUp = UnsafeSendable(DispatchWorkItem {
                guard resumed.setOnce() else { return }
                ctx.errorHandler?(KafkaError(code: RD_KAFKA_RESP_ERR__TIMED_OUT.rawValue,
                                             message: "consumer close did not finish within \(timeout) (a librdkafka 2.0.2 close during a rebalance); the client is given up"))
                continuation.resume()
            })
            queue.async { [gate] in
                _ = rd_kafka_commit(handle.value, nil, 0)
                _ = rd_kafka_consumer_close(handle.value)
                gate.closeAndWait()
                rd_kafka_destroy(handle.value)
                context.value.release()
                // A close that finished drops its timer (it held the context and continuation).
                giveUp.value.cancel()
                if resumed.setOnce() { continuation.resume() }
            }
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(Int(timeout.milliseconds)), execute: giveUp.value)
        }
    }

    deinit {
        if closed.setOnce() {
            _ = rd_kafka_consumer_close(rk)
            gate.closeAndWait()
            rd_kafka_destroy(rk)
            context.release()
        }
    }
}

/// State the rebalance callback and the poll loop share; touched only on the consumer's queue
/// except for snapshots read by metrics and readiness.
final class ConsumerContext: ClientContext, @unchecked Sendable {
    struct Snapshot {
        var assigned: Set<TopicPartition> = []
        var reachedEnd: Set<TopicPartition> = []
        /// Set by the first assignment: the member has joined its group.
        var joined = false
    }
    private let state = Mutex(Snapshot())
    private let listener: KafkaConsumer.RebalanceListener?

    init(_ config: KafkaConfiguration, listener: KafkaConsumer.RebalanceListener?) {
        self.listener = listener
        super.init(config)
    }

    var snapshot: Snapshot { state.withLock { $0 } }

    /// Records a manual assignment (no group, no rebalance callback).
    func markAssigned(_ partitions: [TopicPartition]) {
        state.withLock { s in
            s.joined = true
            s.assigned = Set(partitions)
            s.reachedEnd = []
        }
    }

    func rebalance(_ rk: OpaquePointer, _ err: rd_kafka_resp_err_t, _ partitions: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?) {
        let tps = readPartitionList(partitions).map(\.0)
        let cooperative = String(cString: rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE"
        switch err {
        case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
            // Tell the stage first so it can restore state before the first message arrives.
            listener?(.assigned(tps))
            if cooperative {
                if let e = rd_kafka_incremental_assign(rk, partitions) { rd_kafka_error_destroy(e) }
            } else {
                rd_kafka_assign(rk, partitions)
            }
            state.withLock { s in
                if !cooperative { s.assigned = []; s.reachedEnd = [] }
                s.joined = true
                s.assigned.formUnion(tps)
                s.reachedEnd.subtract(tps)
            }
        case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
            // Every batch handed out has finished (polling is sequential): commit what it stored
            // so the next owner starts exactly after it.
            _ = rd_kafka_commit(rk, nil, 0)
            listener?(.revoked(tps))
            if cooperative {
                if let e = rd_kafka_incremental_unassign(rk, partitions) { rd_kafka_error_destroy(e) }
            } else {
                rd_kafka_assign(rk, nil)
            }
            // Lost (the session expired, e.g. while the broker was away): the member is out of
            // its group until it is assigned again, not an idle member with nothing to read.
            let lost = rd_kafka_assignment_lost(rk) != 0
            state.withLock { s in
                s.assigned.subtract(tps)
                s.reachedEnd.subtract(tps)
                if lost { s.joined = false }
            }
        default:
            errorHandler?(KafkaError(err, context: "rebalance"))
            rd_kafka_assign(rk, nil)
            state.withLock { $0.assigned = []; $0.reachedEnd = [] }
        }
    }

    /// Up to `maxMessages` messages: waits at most `timeoutMs` for the first event, then takes only
    /// what is already queued, in one `rd_kafka_consume_batch_queue` call (one queue lock and one
    /// clock read for the batch instead of one per message). Runs on the consumer's queue;
    /// rebalance callbacks run inside it, and librdkafka drops messages of an assignment that a
    /// rebalance replaced before it returns them.
    func pollBatch(_ rk: OpaquePointer, maxMessages: Int, timeoutMs: Int32) -> [KafkaMessage] {
        guard maxMessages > 0, let first = rd_kafka_consumer_poll(rk, timeoutMs) else { return [] }
        let queue = rd_kafka_queue_get_consumer(rk)
        defer { if let queue { rd_kafka_queue_destroy(queue) } }
        // Sized by what is already queued behind the first event, so neither the pointer buffer
        // nor the result is allocated for `maxMessages` when a few messages wait.
        let capacity = min(maxMessages, 1 + (queue.map { rd_kafka_queue_length($0) } ?? 0))
        let raws = UnsafeMutablePointer<UnsafeMutablePointer<rd_kafka_message_t>?>.allocate(capacity: capacity)
        defer { raws.deallocate() }
        raws[0] = first
        var taken = 1
        if capacity > 1, let queue {
            taken += max(0, rd_kafka_consume_batch_queue(queue, 0, raws + 1, capacity - 1))
        }
        var topics = TopicNameCache()
        var headerValues = HeaderValueCache()
        return [KafkaMessage](unsafeUninitializedCapacity: taken) { buffer, count in
            for i in 0..<taken {
                guard let raw = raws[i] else { continue }
                if raw.pointee.err == RD_KAFKA_RESP_ERR_NO_ERROR {
                    (buffer.baseAddress! + count).initialize(to: copyMessage(raw, topic: topics.name(raw.pointee.rkt), headerValues: &headerValues))
                    count += 1
                } else {
                    handleEvent(raw, topic: topics.name(raw.pointee.rkt))
                }
                rd_kafka_message_destroy(raw)
            }
        }
    }

    /// A partition end or a consume error, delivered in place of a message.
    private func handleEvent(_ raw: UnsafeMutablePointer<rd_kafka_message_t>, topic: String) {
        let m = raw.pointee
        if m.err == RD_KAFKA_RESP_ERR__PARTITION_EOF {
            state.withLock { _ = $0.reachedEnd.insert(TopicPartition(topic, m.partition)) }
            return
        }
        let text = m.payload.map { String(cString: $0.assumingMemoryBound(to: CChar.self)) } ?? ""
        errorHandler?(KafkaError(m.err, context: "consume \(topic)[\(m.partition)] \(text)"))
    }
}

/// Topic names by librdkafka topic handle for one poll: building a String from C per message
/// costs more than copying the payload, and a batch rarely spans more than a few topics.
struct TopicNameCache {
    private var known: [(handle: OpaquePointer, name: String)] = []

    mutating func name(_ handle: OpaquePointer?) -> String {
        guard let handle else { return "" }
        if let hit = known.first(where: { $0.handle == handle }) { return hit.name }
        let name = String(cString: rd_kafka_topic_name(handle))
        known.append((handle, name))
        return name
    }
}

/// Asks the cluster for the leaders of `topics`, waiting at most `timeoutMs` in all. The answer
/// lands in librdkafka's metadata cache, where fetchers and offset lookups find it. Returns the
/// partition count of each topic the cluster described.
@discardableResult
func awaitLeaders(_ rk: OpaquePointer, of topics: Set<String>, timeoutMs: Int32) -> [String: Int32] {
    let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
    var counts: [String: Int32] = [:]
    for topic in topics.sorted() {
        let remaining = milliseconds(deadline - ContinuousClock.now)
        guard remaining > 0, let rkt = rd_kafka_topic_new(rk, topic, nil) else { break }
        defer { rd_kafka_topic_destroy(rkt) }
        var metadata: UnsafePointer<rd_kafka_metadata>?
        if rd_kafka_metadata(rk, 0, rkt, &metadata, remaining) == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata {
            defer { rd_kafka_metadata_destroy(metadata) }
            for i in 0..<Int(metadata.pointee.topic_cnt) {
                let t = metadata.pointee.topics[i]
                if t.err == RD_KAFKA_RESP_ERR_NO_ERROR, t.partition_cnt > 0, String(cString: t.topic) == topic { counts[topic] = t.partition_cnt }
            }
        }
    }
    return counts
}

/// Copies a librdkafka message into Swift values; `raw` stays owned by the caller.
@inline(__always)
func copyMessage(_ raw: UnsafeMutablePointer<rd_kafka_message_t>, topic: String, headerValues: inout HeaderValueCache) -> KafkaMessage {
    let m = raw.pointee
    var tstype = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
    let ts = rd_kafka_message_timestamp(raw, &tstype)
    return KafkaMessage(topic: topic, partition: m.partition, offset: m.offset,
                        key: copyBytes(m.key, m.key_len), value: copyBytes(m.payload, m.len) ?? [],
                        headers: copyHeaders(raw, values: &headerValues), timestampMs: tstype == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? nil : ts)
}

/// The message's headers in order; empty when it has none.
func copyHeaders(_ raw: UnsafeMutablePointer<rd_kafka_message_t>, values: inout HeaderValueCache) -> [KafkaHeader] {
    var hdrs: OpaquePointer?
    guard rd_kafka_message_headers(raw, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR, let hdrs else { return [] }
    let count = rd_kafka_header_cnt(hdrs)
    var headers: [KafkaHeader] = []
    headers.reserveCapacity(count)
    var name: UnsafePointer<CChar>?
    var value: UnsafeRawPointer?
    var size = 0
    for index in 0..<count where rd_kafka_header_get_all(hdrs, index, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
        let name = name.map { values.name($0) } ?? ""
        headers.append(KafkaHeader(name, values.value(of: name, value.map { UnsafeRawBufferPointer(start: $0, count: size) })))
    }
    return headers
}

/// The header names and the last value of each seen in one poll. Names and most values repeat
/// from one message to the next (contract, tenant, model): a repeat shares the earlier copy
/// instead of building its own (a String from C checks its UTF-8 every time).
struct HeaderValueCache {
    private var last: [(name: String, value: [UInt8])] = []
    private var names: [(cString: [CChar], name: String)] = []

    mutating func name(_ cString: UnsafePointer<CChar>) -> String {
        for known in names where known.cString.withUnsafeBufferPointer({ strcmp($0.baseAddress!, cString) == 0 }) {
            return known.name
        }
        let name = String(cString: cString)
        if names.count < 16 { names.append((Array(name.utf8CString), name)) }
        return name
    }

    mutating func value(of name: String, _ bytes: UnsafeRawBufferPointer?) -> [UInt8] {
        guard let bytes, bytes.count > 0 else { return [] }
        if let i = last.firstIndex(where: { $0.name == name }) {
            if last[i].value.count == bytes.count, last[i].value.withUnsafeBytes({ memcmp($0.baseAddress!, bytes.baseAddress!, bytes.count) == 0 }) {
                return last[i].value
            }
            let copy = Array(bytes)
            last[i].value = copy
            return copy
        }
        let copy = Array(bytes)
        if last.count < 16 { last.append((name, copy)) }
        return copy
    }
}

/// The `count` bytes at `pointer` as an array; nil for a null pointer. (This form is specialised
/// for UInt8 in this module; `Array(unsafeUninitializedCapacity:)` looks up generic metadata per call.)
@inline(__always)
func copyBytes(_ pointer: UnsafeRawPointer?, _ count: Int) -> [UInt8]? {
    guard let pointer else { return nil }
    return Array(UnsafeRawBufferPointer(start: pointer, count: count))
}
