import Glibc
import XCTest

@testable import ServiceKit

/// These tests send real signals to the test process: if a listener were not in place the
/// default disposition would kill the whole test run, which is itself the failure signal.
final class SignalsTests: XCTestCase {
    /// The next element of `iterator`, or nil after `seconds` so a lost signal fails the test
    /// instead of hanging it.
    private func next(
        _ iterator: inout AsyncStream<UnixSignal>.Iterator, within seconds: Double = 5
    ) async -> UnixSignal? {
        let box = IteratorBox(iterator)
        let result = await withTaskGroup(of: UnixSignal?.self) { group in
            group.addTask { await box.next() }
            group.addTask {
                try? await Task.sleep(for: .seconds(seconds))
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        iterator = box.iterator
        return result
    }

    func testSIGTERMSentRightAfterRegistrationIsDeliveredAndDoesNotKill() async {
        let listener = SignalListener([.terminate, .interrupt])
        defer { listener.stop() }
        // Immediately: registration must be complete when the initialiser returns.
        XCTAssertEqual(kill(getpid(), SIGTERM), 0)
        var iterator = listener.signals.makeAsyncIterator()
        let signal = await next(&iterator)
        XCTAssertEqual(signal, .terminate)
        XCTAssertEqual(listener.shutdownRequestCount, 1)
    }

    func testASecondShutdownSignalIsObservable() async {
        let listener = SignalListener()
        defer { listener.stop() }
        var iterator = listener.signals.makeAsyncIterator()
        kill(getpid(), SIGINT)
        let first = await next(&iterator)
        XCTAssertEqual(first, .interrupt)
        XCTAssertEqual(listener.shutdownRequestCount, 1)
        // "Shutting down" now; the operator presses Ctrl-C again or the orchestrator repeats SIGTERM.
        kill(getpid(), SIGTERM)
        let second = await next(&iterator)
        XCTAssertEqual(second, .terminate)
        XCTAssertEqual(listener.shutdownRequestCount, 2)
    }

    func testSignalSentBeforeAnyoneIteratesIsBuffered() async throws {
        let listener = SignalListener([.hangup])
        defer { listener.stop() }
        kill(getpid(), SIGHUP)
        try await Task.sleep(for: .milliseconds(100))
        var iterator = listener.signals.makeAsyncIterator()
        let signal = await next(&iterator)
        XCTAssertEqual(signal, .hangup)
        XCTAssertEqual(listener.shutdownRequestCount, 0, "SIGHUP is not a shutdown request")
    }

    func testStopFinishesTheStreamAndANewListenerStillHearsSignals() async {
        let first = SignalListener([.terminate])
        first.stop()
        first.stop()
        var finished = first.signals.makeAsyncIterator()
        let none = await next(&finished)
        XCTAssertNil(none)

        let second = SignalListener([.terminate])
        defer { second.stop() }
        kill(getpid(), SIGTERM)
        var iterator = second.signals.makeAsyncIterator()
        let signal = await next(&iterator)
        XCTAssertEqual(signal, .terminate)
    }

    func testIgnoringSIGPIPEMakesWritesToAClosedPipeFailInsteadOfKilling() {
        ignoreSIGPIPE()
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        close(fds[0])
        var byte: UInt8 = 1
        let written = write(fds[1], &byte, 1)
        let code = errno
        close(fds[1])
        XCTAssertEqual(written, -1)
        XCTAssertEqual(code, EPIPE)
    }

    func testSignalNames() {
        XCTAssertEqual(UnixSignal.terminate.number, SIGTERM)
        XCTAssertEqual(UnixSignal.interrupt.description, "SIGINT")
        XCTAssertTrue(UnixSignal.terminate.requestsShutdown)
        XCTAssertFalse(UnixSignal.hangup.requestsShutdown)
    }
}

/// Lets a child task advance an iterator owned by the test.
private final class IteratorBox: @unchecked Sendable {
    // Only one task touches the iterator at a time: the test awaits the group first.
    var iterator: AsyncStream<UnixSignal>.Iterator

    init(_ iterator: AsyncStream<UnixSignal>.Iterator) {
        self.iterator = iterator
    }

    func next() async -> UnixSignal? {
        await iterator.next()
    }
}
