import Contracts
import Foundation
import Kafka
import TestSupport
import XCTest

/// A slow consumer and a 10× burst: the state-updater stopped (SIGSTOP) while ten rounds' worth of
/// readings arrive at once, and a query-API event-stream client that never reads. Every service's
/// peak RSS stays under a generous bound and the stack catches up to the reference fold.
/// 200 twins (a 10,000-reading burst, about 20 s in a debug build) in CI; 1,000 twins (50,000)
/// with `FAULTS=full`.
final class BurstMemoryTests: XCTestCase {
    /// Peak RSS allowed per service (debug build). Generous on purpose: the test is for unbounded
    /// growth (a buffer that holds a whole burst or backlog), not for tuning; the services idle at
    /// 30–50 MB and a 50,000-reading burst is about 7 MB of input.
    static let peakRSSBoundKB = 512 * 1024

    func testSlowConsumerAndTenfoldBurstKeepEveryServiceMemoryBounded() async throws {
        let stack = try await FaultStack()
        defer { stack.tearDown(keepLogs: (testRun?.failureCount ?? 0) > 0) }
        let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: stack.bootstrap))
        var load = KnownLoad(twins: fullFaults ? 1000 : 200)
        for _ in 0..<3 { _ = try await producer.sendAll(load.next(5)) }
        let baseline = await load.converged(stack)
        XCTAssertEqual(baseline, [])
        let before = stack.peakRSS()

        // A client of the query API's event stream that connects and never reads.
        let silent = try SilentClient(port: stack.port("query-api"),
                                      request: "GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(stack.key)\r\nAccept: text/event-stream\r\n\r\n")
        defer { silent.close() }
        let updater = try XCTUnwrap(stack.process("state-updater"))
        updater.signal(SIGSTOP)
        _ = try await producer.sendAll(load.next(50))  // ten rounds of 5 at once
        try await Task.sleep(for: .seconds(5))  // the updater's stall: the fault, not a synchronisation
        updater.signal(SIGCONT)
        await producer.close()

        let problems = await load.converged(stack, timeout: .seconds(180))
        XCTAssertEqual(problems, [], "the stack did not catch up after the burst")
        let unhealthy = await stack.unhealthy()
        XCTAssertEqual(unhealthy, [])
        let after = stack.peakRSS()
        let lines = FaultStack.services.map { "\($0): \((before[$0] ?? 0) / 1024) MB before, \((after[$0] ?? 0) / 1024) MB peak" }
        print("peak RSS (VmHWM) per service, \(load.twins.count) twins, burst of \(50 * load.twins.count) readings:\n  " + lines.joined(separator: "\n  "))
        for name in FaultStack.services {
            XCTAssertLessThan(after[name] ?? 0, Self.peakRSSBoundKB, "\(name) peaked at \((after[name] ?? 0) / 1024) MB")
        }
    }
}

/// A TCP client that sends one request and never reads the answer (a slow consumer).
final class SilentClient: @unchecked Sendable {
    private let fd: Int32

    init(port: Int, request: String) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { Glibc.close(fd); throw StackFailure("cannot connect to 127.0.0.1:\(port)") }
        _ = Array(request.utf8).withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    func close() { Glibc.close(fd) }
}
