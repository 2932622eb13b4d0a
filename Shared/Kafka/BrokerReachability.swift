import Dispatch
import Synchronization

/// Whether the cluster answers a client, found out on demand: reading it returns the last probe's
/// answer and, when that is older than `interval`, starts the next probe on a queue of its own
/// (a blocking metadata request). Nothing runs while nobody asks, and the asker (a `/readyz`
/// handler) never waits on the network; it sees an outage one probe late.
///
/// Why: a member whose group session expired while the broker was away holds no partitions, and
/// a reader that reached the end of its partitions stays "caught up", so neither notices the
/// outage on its own — both would report ready while they can neither read nor write.
final class BrokerReachability: Sendable {
    private struct State {
        var reachable = true
        var probing = false
        var lastProbe: ContinuousClock.Instant?
    }
    private let state = Mutex(State())
    private let queue = DispatchQueue(label: "twinstream.kafka.reachability")
    /// The oldest answer returned without asking again.
    static let interval = Duration.seconds(1)

    /// The last answer of `probe`; starts `probe` again when the answer is old and none is running.
    func current(_ probe: @escaping @Sendable () -> Bool) -> Bool {
        let (answer, due) = state.withLock { s -> (Bool, Bool) in
            let due = !s.probing && (s.lastProbe.map { ContinuousClock.now - $0 >= Self.interval } ?? true)
            if due { s.probing = true }
            return (s.reachable, due)
        }
        if due {
            queue.async { [self] in
                let reachable = probe()
                state.withLock { s in
                    s.reachable = reachable
                    s.probing = false
                    s.lastProbe = .now
                }
            }
        }
        return answer
    }
}
