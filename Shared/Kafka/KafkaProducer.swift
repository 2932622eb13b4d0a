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
    private let blockingQueue = DispatchQueue(label: "twinstream.kafka.producer.blocking")

    /// Settings TwinStream relies on unless the operator overrides them: idempotent writes keep
    /// per-key order across retries; a short linger batches without adding visible latency.
    public static let defaultProperties: [String: String] = [
        "enable.idempotence": "true",
        "linger.ms": "5",
        "queue.buffering.max.messages": "100000",
        "message.timeout.ms": "300000",
    ]

    public init(configuration: KafkaConfiguration) throws {
        let config = configuration.withDefaults(Self.defaultProperties)
        let conf = try config.makeNativeConfig()
        ctx = ProducerContext(config)
        context = ctx.install(on: conf)
        rd_kafka_conf_set_dr_msg_cb(conf) { _, message, opaque in
            guard let message, let opaque else { return }
            let ctx = Unmanaged<ProducerContext>.fromOpaque(opaque).takeUnretainedValue()
            let id = UInt(bitPattern: message.pointee._private)
            let m = message.pointee
            if m.err == RD_KAFKA_RESP_ERR_NO_ERROR {
                let topic = m.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? ""
                ctx.complete(id, .success(DeliveryReport(topic: topic, partition: m.partition, offset: m.offset)))
            } else {
                ctx.complete(id, .failure(KafkaError(m.err, context: "delivery failed")))
            }
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
        guard !closed.isSet else {
            throw KafkaError(code: RD_KAFKA_RESP_ERR__DESTROY.rawValue, message: "producer is closed")
        }
        let id = ctx.register(onDelivery)
        let err = enqueue(message, id: id)
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
        let results = BatchResults(count: messages.count)
        var enqueued = 0
        var failure: (any Error)?
        for (index, message) in messages.enumerated() {
            let deadline = ContinuousClock.now + queueFullTimeout
            var backoff = Duration.microseconds(200)
            while true {
                do {
                    try produce(message) { results.set(index, $0) }
                    enqueued += 1
                    break
                } catch let error as KafkaError where error.isQueueFull && ContinuousClock.now < deadline {
                    try? await Task.sleep(for: backoff)
                    backoff = min(backoff * 2, .milliseconds(50))
                } catch {
                    failure = error
                    break
                }
            }
            if failure != nil { break }
        }
        let reports = await results.wait(for: enqueued)
        if let failure { throw failure }
        return try reports.map { try $0.get() }
    }

    /// Messages waiting in the local queue or in flight to the broker.
    public var outstanding: Int { Int(rd_kafka_outq_len(rk)) }

    /// Waits (off the cooperative pool) until every queued message is delivered or `timeout` passes.
    /// Returns the number still outstanding.
    @discardableResult
    public func flush(timeout: Duration = .seconds(10)) async -> Int {
        let handle = UnsafeSendable(rk)
        let ms = Int32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
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
        let handle = UnsafeSendable(rk)
        let (pollerDone, ctx, context) = (self.pollerDone, self.ctx, UnsafeSendable(self.context))
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            blockingQueue.async {
                pollerDone.wait()
                rd_kafka_purge(handle.value, Int32(RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT))
                rd_kafka_poll(handle.value, 0)
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
            pollerDone.wait()
            rd_kafka_destroy(rk)
            ctx.failAll(KafkaError(code: RD_KAFKA_RESP_ERR__DESTROY.rawValue, message: "producer released before delivery"))
            context.release()
        }
    }

    private func enqueue(_ message: OutgoingMessage, id: UInt) -> rd_kafka_resp_err_t {
        let headers: OpaquePointer? = message.headers.isEmpty ? nil : {
            let list = rd_kafka_headers_new(message.headers.count)!
            for header in message.headers {
                header.value.withUnsafeBytes { bytes in
                    _ = rd_kafka_header_add(list, header.name, -1, bytes.baseAddress, bytes.count)
                }
            }
            return list
        }()
        let err = message.topic.withCString { topic in
            message.value.withUnsafeBytes { value in
                withOptionalBytes(message.key) { key in
                    var args = [rd_kafka_vu_t](repeating: rd_kafka_vu_t(), count: 7)
                    var n = 0
                    func add(_ type: rd_kafka_vtype_t, _ fill: (inout rd_kafka_vu_t) -> Void) {
                        args[n].vtype = type
                        fill(&args[n])
                        n += 1
                    }
                    add(RD_KAFKA_VTYPE_TOPIC) { $0.u.cstr = topic }
                    add(RD_KAFKA_VTYPE_MSGFLAGS) { $0.u.i = RD_KAFKA_MSG_F_COPY }
                    add(RD_KAFKA_VTYPE_VALUE) {
                        $0.u.mem.ptr = UnsafeMutableRawPointer(mutating: value.baseAddress)
                        $0.u.mem.size = value.count
                    }
                    if let key {
                        add(RD_KAFKA_VTYPE_KEY) {
                            $0.u.mem.ptr = UnsafeMutableRawPointer(mutating: key.baseAddress ?? UnsafeRawPointer(bitPattern: 1))
                            $0.u.mem.size = key.count
                        }
                    }
                    if let partition = message.partition {
                        add(RD_KAFKA_VTYPE_PARTITION) { $0.u.i32 = partition }
                    }
                    if let headers {
                        add(RD_KAFKA_VTYPE_HEADERS) { $0.u.headers = headers }
                    }
                    add(RD_KAFKA_VTYPE_OPAQUE) { $0.u.ptr = UnsafeMutableRawPointer(bitPattern: id) }
                    let error = rd_kafka_produceva(rk, &args, n)
                    if let error {
                        return KafkaErrorCode(consuming: error)
                    }
                    return RD_KAFKA_RESP_ERR_NO_ERROR
                }
            }
        }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR, let headers {
            rd_kafka_headers_destroy(headers)  // ownership passes to librdkafka only on success
        }
        return err
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

/// Pending delivery callbacks by integer id (the per-message opaque), behind one lock.
final class ProducerContext: ClientContext, @unchecked Sendable {
    private struct State {
        var nextId: UInt = 1
        var pending: [UInt: KafkaProducer.DeliveryCallback] = [:]
    }
    private let state = Mutex(State())

    func register(_ callback: @escaping KafkaProducer.DeliveryCallback) -> UInt {
        state.withLock { state in
            let id = state.nextId
            state.nextId &+= 1
            if state.nextId == 0 { state.nextId = 1 }
            state.pending[id] = callback
            return id
        }
    }

    func forget(_ id: UInt) {
        _ = state.withLock { $0.pending.removeValue(forKey: id) }
    }

    func complete(_ id: UInt, _ result: Result<DeliveryReport, KafkaError>) {
        let callback = state.withLock { $0.pending.removeValue(forKey: id) }
        callback?(result)
    }

    func failAll(_ error: KafkaError) {
        let callbacks = state.withLock { state in
            defer { state.pending.removeAll() }
            return Array(state.pending.values)
        }
        for callback in callbacks { callback(.failure(error)) }
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

/// Text of a NUL-terminated C buffer.
func cString(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Collects the delivery results of one `sendAll` and wakes the caller when all are in.
private final class BatchResults: @unchecked Sendable {
    private let lock = NSLock()
    private var results: [Result<DeliveryReport, KafkaError>?]
    private var done = 0
    private var target = Int.max
    private var waiter: CheckedContinuation<[Result<DeliveryReport, KafkaError>], Never>?

    init(count: Int) { results = Array(repeating: nil, count: count) }

    func set(_ index: Int, _ result: Result<DeliveryReport, KafkaError>) {
        let resume: (CheckedContinuation<[Result<DeliveryReport, KafkaError>], Never>, [Result<DeliveryReport, KafkaError>])? = lock.withLock {
            results[index] = result
            done += 1
            guard done == target, let waiter else { return nil }
            self.waiter = nil
            return (waiter, results.compactMap { $0 })
        }
        if let (waiter, values) = resume { waiter.resume(returning: values) }
    }

    /// Waits until `count` results (the ones actually enqueued) have arrived.
    func wait(for count: Int) async -> [Result<DeliveryReport, KafkaError>] {
        await withCheckedContinuation { continuation in
            let ready: [Result<DeliveryReport, KafkaError>]? = lock.withLock {
                target = count
                if done == count { return results.compactMap { $0 } }
                waiter = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}
