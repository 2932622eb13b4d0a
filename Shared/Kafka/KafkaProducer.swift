import CRdKafka
import Dispatch
import Foundation
import Synchronization

/// A keyed, header-carrying Kafka producer whose sends complete when the broker has the record.
///
/// The local queue is librdkafka's own (`queue.buffering.max.messages`): when it is full,
/// `produce` throws a retriable `KafkaError` with `isQueueFull`, and `send` waits (bounded) for
/// room — back-pressure instead of an unbounded Swift buffer in front of the client.
/// Delivery reports are served by a dedicated thread, never the cooperative pool.
public final class KafkaProducer: Sendable {
    public typealias DeliveryCallback = @Sendable (Result<DeliveryReport, KafkaError>) -> Void

    nonisolated(unsafe) private let rk: OpaquePointer
    private let context: Unmanaged<ClientContext>
    private let ctx: ProducerContext
    private let pollerDone = DispatchSemaphore(value: 0)
    private let closed = Flag()
    /// Produce calls and metric reads from other threads hold it; close waits them out.
    private let gate = HandleGate()
    private let blockingQueue = DispatchQueue(label: "twinstream.kafka.producer.blocking")

    /// Settings TwinStream relies on unless the operator overrides them: idempotent writes keep
    /// per-key order across retries; a short linger batches without adding visible latency.
    public static let defaultProperties: [String: String] = [
        "enable.idempotence": "true",
        "linger.ms": "5",
        // Java clients' partitioner: a twin's key lands on the same partition number whichever
        // client wrote it, so readings and commands of one twin meet in one state-updater.
        "partitioner": "murmur2_random",
        "queue.buffering.max.messages": "100000",
        "message.timeout.ms": "300000",
    ]

    public init(configuration: KafkaConfiguration) throws {
        let config = configuration.withDefaults(Self.defaultProperties)
        let conf = try config.makeNativeConfig(for: RD_KAFKA_PRODUCER)
        ctx = ProducerContext(config)
        context = ctx.install(on: conf)
        rd_kafka_conf_set_dr_msg_cb(conf) { _, message, opaque in
            guard let message, let opaque else { return }
            let ctx = Unmanaged<ProducerContext>.fromOpaque(opaque).takeUnretainedValue()
            ctx.delivered(message.pointee)
        }
        do {
            rk = try makeClient(RD_KAFKA_PRODUCER, conf)
        } catch {
            context.release()
            throw error
        }
        let handle = UnsafeSendable(rk)
        let thread = Thread { [closed, pollerDone] in
            while !closed.isSet {
                rd_kafka_poll(handle.value, 100)
            }
            pollerDone.signal()
        }
        thread.name = "kafka-producer-poll"
        thread.start()
    }

    /// Enqueues `message` without waiting; `onDelivery` runs on the delivery thread once the
    /// broker acknowledged (or finally failed) it. Throws at once when the local queue is full.
    public func produce(_ message: OutgoingMessage, onDelivery: @escaping DeliveryCallback) throws {
        try enqueue(message, onDelivery)
    }

    /// Registers `pending` under a fresh id and hands `message` to librdkafka; throws (having
    /// forgotten the id) when the producer is closed or librdkafka refuses the message.
    private func enqueue(_ message: OutgoingMessage, _ pending: @escaping DeliveryCallback) throws {
        guard !closed.isSet, gate.enter() else {
            throw KafkaError(code: RD_KAFKA_RESP_ERR__DESTROY.rawValue, message: "producer is closed")
        }
        defer { gate.leave() }
        let (id, topic) = ctx.register(pending, topic: message.topic, rk: rk)
        let err = enqueue(message, topic: topic, opaque: ProducerContext.opaque(callback: id))
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            ctx.forget(id)
            throw KafkaError(err, context: "produce to \(message.topic)")
        }
    }

    /// Sends `message` and returns once the broker has it. When the local queue is full it waits
    /// for room, up to `queueFullTimeout`, then throws the retriable queue-full error.
    public func send(_ message: OutgoingMessage, queueFullTimeout: Duration = .seconds(5)) async throws -> DeliveryReport {
        let deadline = ContinuousClock.now + queueFullTimeout
        var backoff = Duration.microseconds(200)
        while true {
            do {
                return try await withCheckedThrowingContinuation { continuation in
                    do {
                        try produce(message) { continuation.resume(with: $0) }
                    } catch {
                        continuation.resume(throwing: error)
                    }
                }
            } catch let error as KafkaError where error.isQueueFull && ContinuousClock.now < deadline {
                try await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .milliseconds(50))
            }
        }
    }

    /// Sends every message, enqueued strictly in the given order (so per-key order holds), and
    /// returns their reports in that order once all are acknowledged. The first failure is thrown
    /// after every send has completed, so nothing is still in flight when this returns.
    public func sendAll(_ messages: [OutgoingMessage], queueFullTimeout: Duration = .seconds(5)) async throws -> [DeliveryReport] {
        try await enqueueAll(messages, queueFullTimeout: queueFullTimeout).reports()
    }

    /// Hands every message to librdkafka in the given order and returns once all are enqueued (or
    /// enqueueing failed), without waiting for the broker: the reports come from the returned
    /// batch. Callers that keep several batches in flight enqueue them one after another through
    /// this, so a later batch can never overtake an earlier one that is waiting for room in the
    /// local queue (per-key order across batches). A message librdkafka refuses for good (too
    /// large, say) fails on its own and enqueueing goes on. When the queue stays full for
    /// `queueFullTimeout`, or the producer is closing, enqueueing stops there. Either way the
    /// batch's `reports()` throws the first error once the messages enqueued are reported, and
    /// `outcome()` tells each message's fate.
    public func enqueueAll(_ messages: [OutgoingMessage], queueFullTimeout: Duration = .seconds(5)) async -> PendingBatch {
        guard !messages.isEmpty else { return .empty }
        // The batch's reports find their way back through per-message slots of `results` (the
        // messages' opaques), so the delivery thread and this loop share no lock per message.
        let results = BatchResults(messages)
        guard ctx.register(batch: results) else {
            return PendingBatch(results: nil, failure: KafkaError(code: RD_KAFKA_RESP_ERR__DESTROY.rawValue, message: "producer is closed"))
        }
        var enqueued = 0
        var failure: KafkaError?
        var handle: (topic: String, rkt: OpaquePointer?)?
        // The deadline of the message waiting for room; the clock is read only once the queue is full.
        var deadline: (index: Int, at: ContinuousClock.Instant)?
        var backoff = Duration.microseconds(200)
        while enqueued < messages.count {
            // As many messages as librdkafka takes, inside the gate once, each where it lies in
            // the array: entering per message, or copying each out, was four lock operations
            // and eight reference-count operations per message.
            var err = RD_KAFKA_RESP_ERR__DESTROY
            if !closed.isSet, gate.enter() {
                messages.withUnsafeBufferPointer { buffer in
                    while enqueued < buffer.count {
                        if handle == nil || handle!.topic != buffer[enqueued].topic {
                            handle = (buffer[enqueued].topic, ctx.topicHandle(buffer[enqueued].topic, rk: rk))
                        }
                        err = enqueue(buffer[enqueued], topic: handle!.rkt, opaque: results.opaque(enqueued))
                        if err != RD_KAFKA_RESP_ERR_NO_ERROR, KafkaError.isPermanent(err) {
                            // This message can never be sent (too large, say): it fails on its
                            // own and the rest of the batch goes on, so nothing after it is held
                            // back and overtaken by later batches.
                            results.refuse(enqueued, error: err)
                            err = RD_KAFKA_RESP_ERR_NO_ERROR
                        }
                        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { return }
                        enqueued += 1
                    }
                }
                gate.leave()
            }
            guard enqueued < messages.count else { break }
            let error = KafkaError(err, context: "produce to \(messages[enqueued].topic)")
            if error.isQueueFull && deadline?.index != enqueued {
                deadline = (enqueued, ContinuousClock.now + queueFullTimeout)
                backoff = .microseconds(200)
            }
            // A cancelled caller (a stage stopping) gives up waiting at once: the batch fails
            // with the queue-full error and the messages not enqueued are its caller's to retry.
            if error.isQueueFull, let deadline, ContinuousClock.now < deadline.at, !Task.isCancelled {
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .milliseconds(50))
            } else {
                failure = error
                break
            }
        }
        // From here the batch leaves the producer's books by itself once its last enqueued
        // message is reported (or failed when the client goes), whether or not anyone awaits it.
        results.expect(enqueued, thenUnregisterFrom: ctx)
        return PendingBatch(results: results, failure: failure)
    }

    /// Messages waiting in the local queue or in flight to the broker.
    public var outstanding: Int {
        guard gate.enter() else { return 0 }
        defer { gate.leave() }
        return Int(rd_kafka_outq_len(rk))
    }

    /// Waits (off the cooperative pool) until every queued message is delivered or `timeout` passes.
    /// Returns the number still outstanding.
    @discardableResult
    public func flush(timeout: Duration = .seconds(10)) async -> Int {
        let handle = UnsafeSendable(rk)
        let ms = milliseconds(timeout)
        return await withCheckedContinuation { continuation in
            blockingQueue.async {
                rd_kafka_flush(handle.value, ms)
                continuation.resume(returning: Int(rd_kafka_outq_len(handle.value)))
            }
        }
    }

    /// Flushes, stops the delivery thread and destroys the client. Messages still undelivered
    /// after `timeout` fail their callbacks with `_DESTROY`; the caller has not lost them silently.
    public func close(timeout: Duration = .seconds(10)) async {
        guard !closed.isSet else { return }
        await flush(timeout: timeout)
        guard closed.setOnce() else { return }
        wakePoller()
        let handle = UnsafeSendable(rk)
        let (pollerDone, ctx, context) = (self.pollerDone, self.ctx, UnsafeSendable(self.context))
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            blockingQueue.async { [gate] in
                pollerDone.wait()
                gate.closeAndWait()
                rd_kafka_purge(handle.value, Int32(RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT))
                rd_kafka_poll(handle.value, 0)
                ctx.releaseTopics()
                rd_kafka_destroy(handle.value)
                ctx.failAll(KafkaError(code: RD_KAFKA_RESP_ERR__DESTROY.rawValue, message: "producer closed before delivery"))
                context.value.release()
                continuation.resume()
            }
        }
    }

    deinit {
        // A producer dropped without close(): stop the thread and free the client anyway.
        if closed.setOnce() {
            wakePoller()
            pollerDone.wait()
            gate.closeAndWait()
            ctx.releaseTopics()
            rd_kafka_destroy(rk)
            ctx.failAll(KafkaError(code: RD_KAFKA_RESP_ERR__DESTROY.rawValue, message: "producer released before delivery"))
            context.release()
        }
    }

    /// Ends the delivery thread's current `rd_kafka_poll` now rather than at its 100 ms timeout,
    /// so that closing does not wait for it (the flag also stops a poll that has not begun).
    private func wakePoller() {
        guard let main = rd_kafka_queue_get_main(rk) else { return }
        rd_kafka_queue_yield(main)
        rd_kafka_queue_destroy(main)
    }

    private func enqueue(_ message: OutgoingMessage, topic: OpaquePointer?, opaque: UnsafeMutableRawPointer) -> rd_kafka_resp_err_t {
        let headers: OpaquePointer? = message.headers.isEmpty ? nil : {
            let list = rd_kafka_headers_new(message.headers.count)!
            for header in message.headers {
                // The name by pointer and length: passing the String as a C string would copy it
                // to the heap for every header of every message.
                var name = header.name
                name.withUTF8 { name in
                    header.value.withUnsafeBytes { bytes in
                        _ = rd_kafka_header_add(list, UnsafeRawPointer(name.baseAddress)?.assumingMemoryBound(to: CChar.self), name.count,
                                                bytes.baseAddress, bytes.count)
                    }
                }
            }
            return list
        }()
        let err = message.value.withUnsafeBytes { value in
            withOptionalBytes(message.key) { key in
                withUnsafeTemporaryAllocation(of: rd_kafka_vu_t.self, capacity: 7) { buffer in
                    var args = ProduceArguments(buffer.baseAddress!)
                    args.next(RD_KAFKA_VTYPE_MSGFLAGS).pointee.u.i = RD_KAFKA_MSG_F_COPY
                    let payload = args.next(RD_KAFKA_VTYPE_VALUE)
                    payload.pointee.u.mem.ptr = UnsafeMutableRawPointer(mutating: value.baseAddress)
                    payload.pointee.u.mem.size = value.count
                    if let key {
                        let arg = args.next(RD_KAFKA_VTYPE_KEY)
                        arg.pointee.u.mem.ptr = UnsafeMutableRawPointer(mutating: key.baseAddress ?? UnsafeRawPointer(bitPattern: 1))
                        arg.pointee.u.mem.size = key.count
                    }
                    if let partition = message.partition {
                        args.next(RD_KAFKA_VTYPE_PARTITION).pointee.u.i32 = partition
                    }
                    if let headers {
                        args.next(RD_KAFKA_VTYPE_HEADERS).pointee.u.headers = headers
                    }
                    args.next(RD_KAFKA_VTYPE_OPAQUE).pointee.u.ptr = opaque
                    let error: OpaquePointer?
                    if let topic {
                        args.next(RD_KAFKA_VTYPE_RKT).pointee.u.rkt = topic
                        error = rd_kafka_produceva(rk, args.base, args.count)
                    } else {
                        // No handle (librdkafka refused the name): let produce report why.
                        error = message.topic.withCString { name in
                            args.next(RD_KAFKA_VTYPE_TOPIC).pointee.u.cstr = name
                            return rd_kafka_produceva(rk, args.base, args.count)
                        }
                    }
                    return error.map(KafkaErrorCode(consuming:)) ?? RD_KAFKA_RESP_ERR_NO_ERROR
                }
            }
        }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR, let headers {
            rd_kafka_headers_destroy(headers)  // ownership passes to librdkafka only on success
        }
        return err
    }
}

/// The argument list of one `rd_kafka_produceva` call, filled in order. A struct rather than a
/// nested function over a captured counter: the capture put the counter in a heap box on every
/// message produced.
private struct ProduceArguments {
    let base: UnsafeMutablePointer<rd_kafka_vu_t>
    private(set) var count = 0

    init(_ base: UnsafeMutablePointer<rd_kafka_vu_t>) { self.base = base }

    mutating func next(_ type: rd_kafka_vtype_t) -> UnsafeMutablePointer<rd_kafka_vu_t> {
        let arg = base + count
        arg.initialize(to: rd_kafka_vu_t())
        arg.pointee.vtype = type
        count += 1
        return arg
    }
}

/// Reads the code of an `rd_kafka_error_t` and destroys it.
private func KafkaErrorCode(consuming error: OpaquePointer) -> rd_kafka_resp_err_t {
    defer { rd_kafka_error_destroy(error) }
    return rd_kafka_error_code(error)
}

private func withOptionalBytes<R>(_ bytes: [UInt8]?, _ body: (UnsafeRawBufferPointer?) -> R) -> R {
    guard let bytes else { return body(nil) }
    return bytes.withUnsafeBytes { body($0) }
}

/// What the producer owes each message sent one by one, by integer id (the per-message opaque),
/// the `sendAll` batches in flight (their messages report through `BatchResults` slots, without
/// this lock), and the topic handles it produces through, behind one lock.
///
/// Ids index a slab of slots reused through a free list: registering and completing a delivery is
/// an array access, not a hash, and neither allocates once the slab has grown to the number of
/// messages librdkafka may hold (`queue.buffering.max.messages`).
final class ProducerContext: ClientContext, @unchecked Sendable {
    /// The owner of one message's delivery report, for messages sent one by one.
    typealias Pending = KafkaProducer.DeliveryCallback

    /// A message's opaque: a callback's slot id with the low bit set, or (low bit clear) the
    /// address of its slot in a `BatchResults`, which is at least 8-byte aligned.
    static func opaque(callback id: UInt) -> UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(bitPattern: id << 1 | 1)!
    }

    fileprivate struct State {
        var slots: [Pending?] = []
        var free: [Int] = []
        /// Topic handles by name, kept for the producer's lifetime (their pointers identify the
        /// topic of a delivery report), and the names by handle for those reports.
        var handles: [String: OpaquePointer] = [:]
        var names: [(handle: OpaquePointer, name: String)] = []
        var last: (name: String, handle: OpaquePointer)?
        /// `sendAll` batches still owed reports, failed by `failAll` when the client goes away.
        var batches: [ObjectIdentifier: BatchResults] = [:]
        var closed = false
    }
    private let state = Mutex(State())

    /// Stores `pending` and returns its id (never 0: the opaque is a pointer) with the handle of
    /// `topic`, created on first use (nil when librdkafka refuses the name).
    func register(_ pending: @escaping Pending, topic: String, rk: OpaquePointer) -> (UInt, OpaquePointer?) {
        let rk = UnsafeSendable(rk)
        let (id, handle) = state.withLock { state in
            let slot: Int
            if let reused = state.free.popLast() {
                slot = reused
                state.slots[slot] = pending
            } else {
                slot = state.slots.count
                state.slots.append(pending)
            }
            return (UInt(slot + 1), UnsafeSendable(state.handle(topic, rk.value)))
        }
        return (id, handle.value)
    }

    /// The handle of `topic`, created on first use (nil when librdkafka refuses the name).
    func topicHandle(_ topic: String, rk: OpaquePointer) -> OpaquePointer? {
        let rk = UnsafeSendable(rk)
        return state.withLock { UnsafeSendable($0.handle(topic, rk.value)) }.value
    }

    /// Tracks a `sendAll` batch until it is unregistered; false once the producer is closing.
    func register(batch: BatchResults) -> Bool {
        state.withLock { state in
            guard !state.closed else { return false }
            state.batches[ObjectIdentifier(batch)] = batch
            return true
        }
    }

    func unregister(batch: BatchResults) {
        _ = state.withLock { $0.batches.removeValue(forKey: ObjectIdentifier(batch)) }
    }

    /// Removes and returns what was registered under `id`.
    func take(_ id: UInt) -> Pending? {
        state.withLock { $0.take(id) }
    }

    /// Drops `id` without completing it: librdkafka refused the message, the caller hears it.
    func forget(_ id: UInt) {
        _ = take(id)
    }

    /// A delivery report from librdkafka's callback: completes the message's owner.
    func delivered(_ m: rd_kafka_message_t) {
        let opaque = UInt(bitPattern: m._private)
        if opaque & 1 == 0 {
            // A batch message: its slot names the batch and index, no lock of ours is taken.
            guard let slot = m._private else { return }
            BatchResults.complete(slot: slot, error: m.err, partition: m.partition, offset: m.offset)
            return
        }
        let id = opaque >> 1
        let (ok, rkt) = (m.err == RD_KAFKA_RESP_ERR_NO_ERROR, UnsafeSendable(m.rkt))
        let (pending, topic) = state.withLock { state in
            (state.take(id), ok ? state.name(of: rkt.value) : "")
        }
        guard let pending else { return }
        if m.err == RD_KAFKA_RESP_ERR_NO_ERROR {
            pending(.success(DeliveryReport(topic: topic, partition: m.partition, offset: m.offset)))
        } else {
            pending(.failure(KafkaError(m.err, context: "delivery failed")))
        }
    }

    /// Fails every message still owed a report (the client is gone; no report will come).
    func failAll(_ error: KafkaError) {
        let (pending, batches) = state.withLock { state in
            defer { state.slots.removeAll(); state.free.removeAll(); state.batches.removeAll(); state.closed = true }
            return (state.slots.compactMap { $0 }, Array(state.batches.values))
        }
        for p in pending { p(.failure(error)) }
        for batch in batches { batch.failRemaining(error) }
    }

    /// Destroys the topic handles; call after the last produce, before `rd_kafka_destroy`.
    func releaseTopics() {
        let handles = state.withLock { state in
            defer { state.handles.removeAll(); state.names.removeAll(); state.last = nil }
            return Array(state.handles.values)
        }
        handles.forEach(rd_kafka_topic_destroy)
    }
}

fileprivate extension ProducerContext.State {
    mutating func take(_ id: UInt) -> ProducerContext.Pending? {
        let slot = Int(bitPattern: id) - 1
        guard slot >= 0, slot < slots.count, let pending = slots[slot] else { return nil }
        slots[slot] = nil
        free.append(slot)
        return pending
    }

    mutating func handle(_ topic: String, _ rk: OpaquePointer) -> OpaquePointer? {
        // Producers mostly write one topic at a time, usually the very same String.
        if let last, last.name == topic { return last.handle }
        let handle: OpaquePointer
        if let known = handles[topic] {
            handle = known
        } else {
            guard let created = rd_kafka_topic_new(rk, topic, nil) else { return nil }
            handles[topic] = created
            names.append((created, topic))
            handle = created
        }
        last = (topic, handle)
        return handle
    }

    func name(of handle: OpaquePointer?) -> String {
        guard let handle else { return "" }
        return names.first { $0.handle == handle }?.name ?? String(cString: rd_kafka_topic_name(handle))
    }
}

/// Carries a C handle across a `@Sendable` boundary. librdkafka handles are thread-safe.
struct UnsafeSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// A one-way boolean shared between threads (noncopyable `Atomic` cannot be captured).
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .acquiring) }
    func set() { value.store(true, ordering: .releasing) }
    /// Sets the flag; true only for the caller that changed it.
    func setOnce() -> Bool {
        value.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
    }
}

/// Keeps a librdkafka handle alive while callers on other threads use it: `close` marks it
/// closed and waits until every caller inside has left, so no call can run on a destroyed client.
final class HandleGate: Sendable {
    private let state = Mutex<(closed: Bool, users: Int)>((false, 0))

    /// Enters the gate; false once the handle is closing (the caller must not touch it).
    func enter() -> Bool {
        state.withLock { s in
            guard !s.closed else { return false }
            s.users += 1
            return true
        }
    }

    func leave() { state.withLock { $0.users -= 1 } }

    /// Closes the gate and waits (briefly spinning: calls inside are short) until it is empty.
    func closeAndWait() {
        state.withLock { $0.closed = true }
        while state.withLock({ $0.users }) > 0 { usleep(50) }
    }
}

/// Text of a NUL-terminated C buffer.
func cString(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// A batch handed to the producer by `enqueueAll`, whose delivery reports are still arriving.
public struct PendingBatch: Sendable {
    fileprivate let results: BatchResults?
    fileprivate let failure: KafkaError?

    /// A batch of no messages: delivered at once, with no reports.
    public static var empty: PendingBatch { PendingBatch(results: nil, failure: nil) }

    /// Waits until every enqueued message of the batch is acknowledged (or failed), then returns
    /// the reports in message order; throws the enqueue failure, else the first delivery failure,
    /// only once nothing of the batch is still in flight.
    public func reports() async throws -> [DeliveryReport] {
        let reports: [DeliveryReport]
        do {
            reports = try await results?.reports() ?? []
        } catch {
            throw failure ?? error
        }
        if let failure { throw failure }
        return reports
    }

    /// Waits like `reports()`, then tells each message's fate, in message order: delivered, failed
    /// with its error, or never handed to librdkafka (enqueueing stopped at an earlier refusal).
    /// A stage uses it to re-send only what failed and to tell a permanent refusal of one message
    /// from a broker that is away.
    public func outcome() async -> BatchOutcome {
        guard let results else {
            return BatchOutcome(results: [], enqueueFailure: failure)
        }
        return await results.outcome(enqueueFailure: failure)
    }
}

/// What became of each message of a batch (`PendingBatch.outcome()`).
public struct BatchOutcome: Sendable {
    /// One per message of the batch, in order: its report, its delivery error, or nil when it was
    /// never enqueued (the enqueue failure, if any, is then `enqueueFailure`, and belongs to the
    /// first message not enqueued).
    public let results: [Result<DeliveryReport, KafkaError>?]
    /// Why enqueueing stopped before the end of the batch, if it did.
    public let enqueueFailure: KafkaError?

    /// True when every message was delivered.
    public var isDelivered: Bool {
        enqueueFailure == nil && results.allSatisfy { if case .success? = $0 { true } else { false } }
    }

    /// The reports, when every message was delivered.
    public var reports: [DeliveryReport]? {
        guard enqueueFailure == nil else { return nil }
        var reports: [DeliveryReport] = []
        reports.reserveCapacity(results.count)
        for case .success(let report)? in results { reports.append(report) }
        return reports.count == results.count ? reports : nil
    }

    /// The error of message `index`: its delivery error, the enqueue failure for the first message
    /// not enqueued, nil when it was delivered or simply not sent.
    public func error(of index: Int) -> KafkaError? {
        switch results[index] {
        case .failure(let error)?: return error
        case .success?: return nil
        case nil: return index == results.firstIndex(where: { $0 == nil }) ? enqueueFailure : nil
        }
    }
}

/// Collects the delivery results of one `enqueueAll` and wakes the caller when all are in.
///
/// Each message's librdkafka opaque is the address of its slot here; the slot leads back to this
/// object and the message's index, so a report is matched without any shared table. The
/// producer's books (`ProducerContext.register(batch:)`) keep the object alive until every
/// enqueued message was reported (or `failRemaining` gave up on them when the client was
/// destroyed), whether or not anyone awaits `reports()`. Results are kept as plain
/// columns (error code, partition, offset), not one enum per message.
final class BatchResults: @unchecked Sendable {
    private struct Slot {
        var owner: Unmanaged<BatchResults>
        var index: Int
    }

    /// How far the reports are, who waits for them, and whose books to leave when all are in.
    private struct Progress {
        var done = 0
        var target = Int.max
        var waiters: [CheckedContinuation<Void, Never>] = []
        var registry: ProducerContext?

        /// The waiters to resume and the registry to leave, once every awaited report is in.
        mutating func takeIfDone() -> ([CheckedContinuation<Void, Never>], ProducerContext?) {
            guard done >= target else { return ([], nil) }
            defer { waiters = []; registry = nil }
            return (waiters, registry)
        }
    }

    /// Error code of a message not reported yet.
    private static let pending = Int32.min

    private let messages: [OutgoingMessage]
    private let slots: UnsafeMutablePointer<Slot>
    /// Columns of the reports by message index, written and read only under `progress`'s lock.
    /// Raw memory, not arrays: a delivery report is the per-message hot path of the delivery
    /// thread, and arrays in a class pay a uniqueness check and an exclusivity check per write.
    private let errors: UnsafeMutablePointer<Int32>
    private let partitions: UnsafeMutablePointer<Int32>
    private let offsets: UnsafeMutablePointer<Int64>
    private let progress = Mutex(Progress())

    init(_ messages: [OutgoingMessage]) {
        self.messages = messages
        let n = messages.count
        slots = .allocate(capacity: n)
        errors = .allocate(capacity: n)
        errors.initialize(repeating: Self.pending, count: n)
        partitions = .allocate(capacity: n)
        partitions.initialize(repeating: 0, count: n)
        offsets = .allocate(capacity: n)
        offsets.initialize(repeating: 0, count: n)
    }

    deinit {
        slots.deallocate()
        errors.deallocate()
        partitions.deallocate()
        offsets.deallocate()
    }

    /// The opaque of message `index`.
    func opaque(_ index: Int) -> UnsafeMutableRawPointer {
        (slots + index).initialize(to: Slot(owner: .passUnretained(self), index: index))
        return UnsafeMutableRawPointer(slots + index)
    }

    /// A delivery report for the message whose opaque is `slot`.
    static func complete(slot: UnsafeMutableRawPointer, error: rd_kafka_resp_err_t, partition: Int32, offset: Int64) {
        let slot = slot.assumingMemoryBound(to: Slot.self).pointee
        slot.owner.takeUnretainedValue().set(slot.index, error: error.rawValue, partition: partition, offset: offset)
    }

    private func set(_ index: Int, error: Int32, partition: Int32, offset: Int64) {
        let (waiters, registry) = progress.withLock { p -> ([CheckedContinuation<Void, Never>], ProducerContext?) in
            guard errors[index] == Self.pending else { return ([], nil) }
            errors[index] = error
            partitions[index] = partition
            offsets[index] = offset
            p.done += 1
            return p.takeIfDone()
        }
        finish(waiters, registry)
    }

    /// Message `index` was refused at enqueue time for a reason retrying cannot fix: it is
    /// reported failed at once, and enqueueing goes on with the next.
    func refuse(_ index: Int, error: rd_kafka_resp_err_t) {
        set(index, error: error.rawValue, partition: -1, offset: -1)
    }

    /// Enqueueing is over: `count` messages were enqueued (enqueueing stops at the first failure).
    /// Once all of them are reported, the batch leaves `registry`'s books and wakes its waiters.
    func expect(_ count: Int, thenUnregisterFrom registry: ProducerContext) {
        let (waiters, done) = progress.withLock { p in
            p.target = count
            p.registry = registry
            return p.takeIfDone()
        }
        finish(waiters, done)
    }

    private func finish(_ waiters: [CheckedContinuation<Void, Never>], _ registry: ProducerContext?) {
        registry?.unregister(batch: self)
        for waiter in waiters { waiter.resume() }
    }

    /// Fails every enqueued message not yet reported: the client is gone and no report will come.
    func failRemaining(_ error: KafkaError) {
        let (waiters, registry) = progress.withLock { p -> ([CheckedContinuation<Void, Never>], ProducerContext?) in
            for index in 0..<min(p.target, messages.count) where errors[index] == Self.pending {
                errors[index] = error.code
                p.done += 1
            }
            return p.takeIfDone()
        }
        finish(waiters, registry)
    }

    /// Returns once every enqueued message (see `expect`) is reported.
    private func allReported() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = progress.withLock { p -> Bool in
                if p.done >= p.target { return true }
                p.waiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }

    /// Waits until every enqueued message (see `expect`) is reported, then returns their reports
    /// in order, or throws the first failure.
    func reports() async throws(KafkaError) -> [DeliveryReport] {
        await allReported()
        let (reports, failed): ([DeliveryReport], Int32?) = progress.withLock { p in
            let count = p.target
            var reports: [DeliveryReport] = []
            reports.reserveCapacity(count)
            for index in 0..<count {
                guard errors[index] == RD_KAFKA_RESP_ERR_NO_ERROR.rawValue else { return ([], errors[index]) }
                reports.append(DeliveryReport(topic: messages[index].topic, partition: partitions[index], offset: offsets[index]))
            }
            return (reports, nil)
        }
        if let failed { throw KafkaError(rd_kafka_resp_err_t(rawValue: failed), context: "delivery failed") }
        return reports
    }

    /// Waits until every enqueued message is reported, then gives each message's result (nil for
    /// the messages never enqueued).
    func outcome(enqueueFailure: KafkaError?) async -> BatchOutcome {
        await allReported()
        let results: [Result<DeliveryReport, KafkaError>?] = progress.withLock { p in
            (0..<messages.count).map { index in
                guard index < p.target else { return nil }
                guard errors[index] == RD_KAFKA_RESP_ERR_NO_ERROR.rawValue else {
                    return .failure(KafkaError(rd_kafka_resp_err_t(rawValue: errors[index]), context: "delivery to \(messages[index].topic) failed"))
                }
                return .success(DeliveryReport(topic: messages[index].topic, partition: partitions[index], offset: offsets[index]))
            }
        }
        return BatchOutcome(results: results, enqueueFailure: enqueueFailure)
    }
}
