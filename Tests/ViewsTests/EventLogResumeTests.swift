import Contracts
import Views
import XCTest

/// Resuming an event stream with `Last-Event-ID` on another replica: replicas read partitions at
/// their own pace, so the same events arrive in different orders; nothing may be skipped.
final class EventLogResumeTests: XCTestCase {
    func event(_ partition: Int32, _ offset: Int64, tenant: String = "acme", twin: String = "t") -> ViewEvent {
        ViewEvent(id: ViewEvent.id(code: "c", partition: partition, offset: offset), kind: .change, tenant: tenant,
                  twinId: "\(twin)\(partition)", data: Array("{}".utf8))
    }

    /// Takes `count` events from a subscription, with the id the stream sends after each.
    func take(_ count: Int, _ subscription: EventLog.Subscription) async -> [(event: ViewEvent, id: String)] {
        var taken: [(ViewEvent, String)] = []
        for await event in subscription.events {
            taken.append((event, subscription.id(after: event)))
            if taken.count == count { break }
        }
        return taken
    }

    func testATenantStreamResumedOnAnotherReplicaSkipsNothingOfAnyPartition() async {
        // Partition 0 and 1 each hold three events; replica A read partition 0 first, B partition 1.
        let p0 = (0..<3).map { event(0, Int64($0)) }, p1 = (0..<3).map { event(1, Int64(10 + $0)) }
        let a = EventLog(), b = EventLog()
        let onA = a.subscribe(tenant: "acme")
        for e in [p0[0], p0[1], p1[0], p0[2], p1[1], p1[2]] { a.append(e) }
        for e in [p1[0], p1[1], p1[2], p0[0], p0[1], p0[2]] { b.append(e) }
        // The client saw four events on A, then reconnects to B with the id of the last.
        let seen = await take(4, onA)
        XCTAssertEqual(seen.map(\.event.id), ["c-0-0", "c-0-1", "c-1-10", "c-0-2"])
        let resumed = b.subscribe(tenant: "acme", after: seen.last!.id)
        XCTAssertEqual(resumed.resume, .resumed(replayed: 2))
        let rest = await take(2, resumed)
        XCTAssertEqual(rest.map(\.event.id), ["c-1-11", "c-1-12"], "exactly what the client had not seen")
        // And live events keep flowing after the replay, with ids that resume anywhere.
        b.append(event(0, 3))
        let live = await take(1, resumed)
        XCTAssertEqual(live.map(\.event.id), ["c-0-3"])
        XCTAssertEqual(EventCursor(parsing: live[0].id)?.offsets, ["c0": 3, "c1": 12])
    }

    func testACursorOlderThanTheRetainedWindowAsksForAReset() {
        let log = EventLog(capacity: 2)
        for offset in 0..<5 { log.append(event(0, Int64(offset))) }
        XCTAssertEqual(log.subscribe(tenant: "acme", after: "c0.1").resume, .notRetained, "events 2 was evicted: it cannot be replayed")
        XCTAssertEqual(log.subscribe(tenant: "acme", after: "c0.3").resume, .resumed(replayed: 1))
    }

    func testOtherTenantsEventsAreNeitherReplayedNorCounted() async {
        let log = EventLog()
        log.append(event(0, 0))
        log.append(event(0, 1, tenant: "beta"))
        log.append(event(0, 2))
        let resumed = log.subscribe(tenant: "acme", after: "c0.0")
        XCTAssertEqual(resumed.resume, .resumed(replayed: 1))
        let rest = await take(1, resumed)
        XCTAssertEqual(rest.map(\.event.id), ["c-0-2"])
    }

    func testCursorsParseOnlyTheirOwnShape() {
        XCTAssertEqual(EventCursor(parsing: "c0.17,a3.-1")?.offsets, ["c0": 17, "a3": -1])
        for bad in ["", "c-0-17", "c0", "c0.x", "0c.1", "c0.1,", "c0.1;a1.2"] {
            XCTAssertNil(EventCursor(parsing: bad), bad)
        }
    }
}
