import Foundation
import XCTest
@testable import Sockets

/// The Sockets layer on its own: binding, the event loop's wake-up, timers and readiness.
final class SocketsTests: XCTestCase {
    func testListenerBindsPortZeroAndReportsThePort() throws {
        let listener = try TCPListener.bind(host: "127.0.0.1", port: 0)
        defer { listener.close() }
        XCTAssertGreaterThan(listener.port, 0)
        XCTAssertEqual(listener.localAddress.host, "127.0.0.1")
        XCTAssertNil(try listener.accept(), "nothing pending: accept does not block")
        let client = try TCPSocket.connect(host: "127.0.0.1", port: listener.port, timeout: .seconds(1))
        defer { client.close() }
        var accepted: (socket: TCPSocket, peer: SocketAddress?)?
        for _ in 0..<100 where accepted == nil {
            accepted = try listener.accept()
            if accepted == nil { Thread.sleep(forTimeInterval: 0.005) }
        }
        let server = try XCTUnwrap(accepted)
        defer { server.socket.close() }
        XCTAssertEqual(server.peer?.host, "127.0.0.1")
        XCTAssertEqual(try server.socket.write(Array("ping".utf8)), .written(4))
        XCTAssertTrue(try client.waitUntilReadable(timeout: .seconds(1)))
        var buffer = [UInt8](repeating: 0, count: 16)
        XCTAssertEqual(try client.read(into: &buffer), .bytes(4))
        XCTAssertEqual(try client.read(into: &buffer), .wouldBlock)
        server.socket.close()
        XCTAssertTrue(try client.waitUntilReadable(timeout: .seconds(1)))
        XCTAssertEqual(try client.read(into: &buffer), .endOfFile)
        // Writing to a closed peer is an error, not SIGPIPE killing the test process.
        var failed = false
        for _ in 0..<10 where !failed {
            do { _ = try client.write(Array(repeating: 1, count: 1024)) } catch { failed = error.isPeerGone }
            Thread.sleep(forTimeInterval: 0.01)
        }
        XCTAssertTrue(failed)
    }

    func testDualStackAnyAddress() throws {
        guard let listener = try? TCPListener.bind(host: "::", port: 0) else {
            throw XCTSkip("IPv6 is not available here")
        }
        defer { listener.close() }
        let client = try TCPSocket.connect(host: "127.0.0.1", port: listener.port, timeout: .seconds(1))
        client.close()
        XCTAssertThrowsError(try TCPListener.bind(host: "not-an-address.invalid", port: 0))
    }

    func testEventLoopRunsWorkAndTimersInOrder() async throws {
        let loop = try EventLoop(name: "test-loop")
        loop.start()
        let fired = Locked<[String]>([])
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            loop.execute {
                XCTAssertTrue(loop.isInLoopThread)
                let late = loop.schedule(after: .milliseconds(60)) { fired.withLock { $0.append("late") } }
                loop.schedule(after: .milliseconds(20)) { fired.withLock { $0.append("early") } }
                let cancelled = loop.schedule(after: .milliseconds(10)) { fired.withLock { $0.append("cancelled") } }
                loop.cancel(cancelled)
                let moved = loop.schedule(after: .seconds(10)) { fired.withLock { $0.append("moved") } }
                loop.reschedule(moved, after: .milliseconds(40))
                loop.schedule(after: .milliseconds(80)) {
                    loop.cancel(late)  // already fired: a stale id is ignored
                    done.resume()
                }
            }
        }
        XCTAssertEqual(fired.withLock { $0 }, ["early", "moved", "late"])
        XCTAssertFalse(loop.isInLoopThread)
        loop.stop()
        await loop.waitUntilStopped()
        loop.execute { XCTFail("work after stop is dropped") }
    }

    func testManyWakeUpsFromManyThreads() async throws {
        let loop = try EventLoop(name: "wakeups")
        loop.start()
        let counter = Locked(0)
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for _ in 0..<1000 { loop.execute { counter.withLock { $0 += 1 } } }
        }
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(5)
        while counter.withLock({ $0 }) < 8000 && clock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        XCTAssertEqual(counter.withLock { $0 }, 8000)
        loop.stop()
        await loop.waitUntilStopped()
    }

    func testTimerQueueStaysSmallUnderReschedule() {
        var queue = TimerQueue()
        let ids = (0..<100).map { index in queue.schedule(at: UInt64(1000 + index)) {} }
        for round in 0..<1000 {
            for id in ids { queue.reschedule(id, to: UInt64(2000 + round * 100 + Int(id.slot))) }
        }
        XCTAssertEqual(queue.count, 100, "moving a timer never leaves garbage behind")
        var order: [UInt64] = []
        var now: UInt64 = 0
        while let deadline = queue.nextDeadline {
            now = deadline
            order.append(deadline)
            _ = queue.popExpired(now: now)
        }
        XCTAssertEqual(order, order.sorted())
        XCTAssertEqual(order.count, 100)
    }
}
