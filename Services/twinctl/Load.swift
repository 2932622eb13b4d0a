import Contracts
import Durations
import Foundation
import Kafka
import LoadGen
import ServiceKit
import Synchronization

/// `twinctl load --rate R --twins N --seconds S [--prefix load-] [--tick-ms 10] [--max-behind-ms 1000]`:
/// offers pre-made `pump@1` readings to `telemetry.raw.v1` at a fixed rate, round-robin over N
/// twins (`LoadSchedule`), each stamped with the wall clock (moved on a millisecond when a twin's
/// previous reading has the same time, so nothing is late). Unlike `twinctl fleet` it steps no
/// model, and it reports its own CPU (`cpuSeconds`): on a shared 2-core machine the load
/// generator's CPU is taken from the pipeline it measures (4-20 µs per reading in
/// `Benchmarks/e2e.sh` runs, depending on the rate).
///
/// Prints a `progress` line every `--progress-ms` and a final `summary {json}` line: offered
/// (rate × seconds), sent, delivered, failed, and skipped (readings the schedule was more than
/// `--max-behind-ms` late for are never sent: a fixed rate, not a backlog). Readings sent are
/// numbered without gaps, so `sent` alone determines which twin got which readings.
func runLoad(_ args: Arguments) async throws {
    let rate = try args.double("rate", default: 1000)
    let twins = try args.int("twins", default: 1000)
    let seconds = try args.double("seconds", default: 60)
    guard rate > 0, twins > 0, seconds > 0 else { throw UsageError("load needs --rate, --twins and --seconds above zero") }
    let tick = Duration.milliseconds(try args.int("tick-ms", default: 10))
    let maxBehind = Int(rate * Double(try args.int("max-behind-ms", default: 1000)) / 1000) + 1
    let progressEvery = Double(try args.int("progress-ms", default: 1000)) / 1000
    let schedule = LoadSchedule(rate: rate, twins: twins)
    let readings = LoadReadings(prefix: args.string("prefix") ?? "load-", twins: twins)
    let keys = (0..<twins).map { Array(readings.twinId($0).utf8) }
    var clock = EventClock(twins: twins)
    let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: args.brokers))

    // Delivery reports are awaited off the pacing loop, so a slow acknowledgement never delays
    // the next tick; the loop only reads the counts.
    let counts = LoadCounts()
    let (batches, enqueued) = AsyncStream<PendingBatch>.makeStream()
    let reporter = Task {
        for await batch in batches {
            let (ok, failed) = await settle(batch)
            counts.state.withLock { $0.delivered += ok; $0.failed += failed }
        }
    }
    let signals = SignalListener()
    let watch = Task {
        for await signal in signals.signals where signal.requestsShutdown {
            counts.state.withLock { $0.stop = true }
            return
        }
    }

    let inFlightLimit = max(20_000, Int(rate * 2))
    let started = ContinuousClock.now
    printNow("load: \(rate) readings/s over \(twins) twins (\(readings.twinId(0))…) for \(seconds) s to \(Topic.telemetryRaw.name), start \(Timestamp.now)")
    var (sent, skipped) = (0, 0)
    var nextProgress = progressEvery
    var batch: [OutgoingMessage] = []
    while !counts.state.withLock({ $0.stop }) {
        let elapsed = min((ContinuousClock.now - started).seconds, seconds)
        var target = schedule.due(after: elapsed) - skipped
        if target - sent > maxBehind {
            skipped += target - sent - maxBehind
            target = sent + maxBehind
        }
        let done = counts.state.withLock { $0.delivered + $0.failed }
        if target > sent && sent - done < inFlightLimit {
            let now = Timestamp.now
            batch.removeAll(keepingCapacity: true)
            for k in sent..<target {
                let twin = schedule.twin(of: k)
                batch.append(OutgoingMessage(topic: Topic.telemetryRaw.name, key: keys[twin],
                                             value: readings.reading(twin: twin, round: schedule.round(of: k), ts: clock.stamp(twin: twin, now: now))))
            }
            enqueued.yield(await producer.enqueueAll(batch, queueFullTimeout: .seconds(30)))
            sent = target
        }
        if elapsed >= nextProgress {
            let c = counts.state.withLock { $0 }
            printNow("progress t=\(String(format: "%.2f", elapsed)) due=\(schedule.due(after: elapsed)) sent=\(sent) delivered=\(c.delivered) failed=\(c.failed) skipped=\(skipped)")
            nextProgress += progressEvery
        }
        if elapsed >= seconds { break }
        try? await Task.sleep(for: tick)
    }
    enqueued.finish()
    await reporter.value
    watch.cancel()
    let elapsed = (ContinuousClock.now - started).seconds
    await producer.close()
    let c = counts.state.withLock { $0 }
    let offered = schedule.due(after: min(elapsed, seconds))
    // Its own CPU, so a benchmark can subtract the generator's cost from the pipeline's.
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    let cpu = Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    printNow("summary {\"rate\":\(rate),\"twins\":\(twins),\"prefix\":\"\(readings.prefix)\",\"seconds\":\(String(format: "%.3f", elapsed)),"
        + "\"offered\":\(offered),\"sent\":\(sent),\"delivered\":\(c.delivered),\"failed\":\(c.failed),\"skipped\":\(skipped),\"cpuSeconds\":\(String(format: "%.3f", cpu))}")
    if c.failed > 0 { throw BenchFailure(description: "\(c.failed) of \(sent) readings were not delivered") }
}

/// What `twinctl load`'s pacing loop, its delivery-report task and its signal task share.
final class LoadCounts: Sendable {
    let state = Mutex<(delivered: Int, failed: Int, stop: Bool)>((0, 0, false))
}
