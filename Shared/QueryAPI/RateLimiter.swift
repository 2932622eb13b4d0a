import Durations
import Foundation
import Synchronization

/// Token buckets per API key: `rate` requests per second on average, bursts up to `burst`.
/// A rate of 0 disables limiting. Idle buckets are dropped once `maxKeys` are tracked, so memory
/// stays bounded whatever keys clients present.
public final class RateLimiter: Sendable {
    public let rate: Double
    public let burst: Double
    public let maxKeys: Int
    private struct Bucket {
        var tokens: Double
        var updated: ContinuousClock.Instant
    }
    private let buckets = Mutex<[String: Bucket]>([:])

    public init(rate: Double, burst: Double, maxKeys: Int = 100_000) {
        self.rate = rate
        self.burst = max(1, burst)
        self.maxKeys = maxKeys
    }

    public var isEnabled: Bool { rate > 0 }

    /// Takes one token for `key`: nil when allowed, otherwise the whole seconds to wait.
    public func acquire(_ key: String, now: ContinuousClock.Instant = .now) -> Int? {
        guard rate > 0 else { return nil }
        return buckets.withLock { buckets in
            var bucket = buckets[key] ?? Bucket(tokens: burst, updated: now)
            let elapsed = now - bucket.updated
            let seconds = elapsed.seconds
            bucket.tokens = min(burst, bucket.tokens + max(0, seconds) * rate)
            bucket.updated = now
            defer {
                if buckets[key] == nil && buckets.count >= maxKeys { Self.dropFull(&buckets, burst: burst, rate: rate, now: now) }
                buckets[key] = bucket
            }
            if bucket.tokens >= 1 {
                bucket.tokens -= 1
                return nil
            }
            return max(1, Int(((1 - bucket.tokens) / rate).rounded(.up)))
        }
    }

    /// Forgets buckets that have refilled (they would start full anyway).
    private static func dropFull(_ buckets: inout [String: Bucket], burst: Double, rate: Double, now: ContinuousClock.Instant) {
        let refill = Duration.seconds(burst / rate)
        buckets = buckets.filter { now - $0.value.updated < refill }
    }
}

/// Counts concurrent event streams per key and overall.
public final class ConnectionLimiter: Sendable {
    public let perKey: Int
    public let total: Int
    private let counts = Mutex<(perKey: [String: Int], total: Int)>(([:], 0))

    public init(perKey: Int, total: Int) {
        self.perKey = perKey
        self.total = total
    }

    /// Takes a slot for `key`; false when the key or the server is at its limit.
    public func open(_ key: String) -> Bool {
        counts.withLock { c in
            guard c.total < total, c.perKey[key, default: 0] < perKey else { return false }
            c.perKey[key, default: 0] += 1
            c.total += 1
            return true
        }
    }

    public func close(_ key: String) {
        counts.withLock { c in
            guard let n = c.perKey[key] else { return }
            c.perKey[key] = n > 1 ? n - 1 : nil
            c.total -= 1
        }
    }

    public var open: Int { counts.withLock { $0.total } }
}

/// One open event stream's slot in a `ConnectionLimiter`, given back when the lease is released.
final class StreamLease: Sendable {
    let limiter: ConnectionLimiter
    let key: String
    init(_ limiter: ConnectionLimiter, key: String) {
        self.limiter = limiter
        self.key = key
    }
    deinit { limiter.close(key) }
}
