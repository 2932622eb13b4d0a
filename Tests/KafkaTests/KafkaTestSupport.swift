import Foundation
import Kafka
import XCTest

/// Shared by the Kafka test files: real clients against the in-process embedded broker.
class KafkaTestCase: XCTestCase {
    /// The mock cluster's own group and fetch timings (`EmbeddedBroker.clientProperties`) keep the
    /// tests quick.
    func testConfig(_ broker: EmbeddedBroker) -> KafkaConfiguration {
        KafkaConfiguration(bootstrapServers: broker.bootstrapServers, EmbeddedBroker.clientProperties)
    }

    func uniqueGroup() -> String { "test-\(UUID().uuidString.prefix(8))" }

    /// Consumes until `count` messages arrived or `timeout` passed, storing offsets as it goes.
    func consume(_ consumer: KafkaConsumer, count: Int, timeout: Duration = .seconds(20)) async throws -> [KafkaMessage] {
        var received: [KafkaMessage] = []
        let deadline = ContinuousClock.now + timeout
        while received.count < count && ContinuousClock.now < deadline {
            let batch = try await consumer.poll(maxMessages: 500, timeout: .milliseconds(200))
            received += batch
            consumer.store(batch)
        }
        return received
    }

    /// This process's IPv4 TCP sockets whose local or peer port is `port`, with their TCP_NODELAY.
    func tcpSockets(touching port: UInt16) -> [(fd: Int32, toBroker: Bool, noDelay: Bool)] {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd"))?.compactMap { Int32($0) } ?? []
        return fds.compactMap { fd in
            func boundPort(_ get: (Int32, UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> Int32) -> UInt16? {
                var address = sockaddr_in()
                var length = socklen_t(MemoryLayout<sockaddr_in>.size)
                let ok = withUnsafeMutablePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { get(fd, $0, &length) == 0 }
                }
                return ok && address.sin_family == sa_family_t(AF_INET) ? UInt16(bigEndian: address.sin_port) : nil
            }
            guard let local = boundPort({ getsockname($0, $1, $2) }), let peer = boundPort({ getpeername($0, $1, $2) }),
                  local == port || peer == port else { return nil }
            var flag: Int32 = 0
            var size = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &flag, &size) == 0 else { return nil }
            return (fd, peer == port, flag != 0)
        }
    }
}

/// A value behind a lock, for collecting results from callbacks in tests.
final class LockedBox<T: Sendable>: @unchecked Sendable {
    private var stored: T
    private let lock = NSLock()
    init(_ value: T) { stored = value }
    var value: T { lock.withLock { stored } }
    func mutate(_ body: (inout T) -> Void) { lock.withLock { body(&stored) } }
}
