import Contracts
import JSON
import XCTest
@testable import TwinQuery

final class TwinPagerTests: XCTestCase {
    /// 250 twins with many ties on every sort key, some without a temperature or with a string one.
    lazy var twins: [QueryTwin] = {
        var rng = SplitMix64(seed: 7)
        return (0..<250).map { i in
            var props: [(String, JSON)] = []
            switch i % 10 {
            case 0: break
            case 1: props.append(("temperature", "hot"))
            default: props.append(("temperature", .int(Int(rng.next() % 20))))
            }
            return twin("t\(rng.next() % 1_000_000)-\(i)", model: i % 2 == 0 ? "pump@1" : "tank@1", version: Int64(rng.next() % 5),
                        updatedAt: Int64(rng.next() % 7), properties: props, relationships: i % 4 == 0 ? [("feeds", "tank-1")] : [])
        }.shuffled(using: &rng)
    }()

    func allPages(_ make: (String?) throws -> TwinListQuery) throws -> (ids: [String], totals: Set<Int>, pages: Int) {
        var ids: [String] = []
        var totals = Set<Int>()
        var cursor: String?
        var pages = 0
        repeat {
            let page = try make(cursor).run(over: twins, now: 0)
            ids += page.items.map(\.twinId)
            totals.insert(page.total)
            cursor = page.nextCursor
            pages += 1
            XCTAssertLessThan(pages, 1_000)
        } while cursor != nil
        return (ids, totals, pages)
    }

    func testPagingCoversEveryTwinOnceInOrderForEverySort() throws {
        for sort in ["twinId", "-twinId", "updatedAt", "-updatedAt", "version", "-version", "temperature", "-temperature", "properties.temperature"] {
            let parsed = try TwinSort(parsing: sort)
            let (ids, totals, pages) = try allPages { try TwinListQuery(sort: sort, cursor: $0, limit: 17) }
            XCTAssertEqual(ids.count, twins.count, sort)
            XCTAssertEqual(Set(ids).count, twins.count, sort)
            XCTAssertEqual(totals, [twins.count], sort)
            XCTAssertEqual(pages, (twins.count + 16) / 17, sort)
            let expected = twins.sorted { parsed.precedes(parsed.value(of: $0), $0.twinId, parsed.value(of: $1), $1.twinId) }.map(\.twinId)
            XCTAssertEqual(ids, expected, sort)
        }
    }

    func testPropertySortOrdersNumbersBeforeStringsAndMissingLastInBothDirections() throws {
        for sort in ["temperature", "-temperature"] {
            let page = try TwinListQuery(sort: sort, limit: 1_000).run(over: twins, now: 0)
            let kinds = page.items.map { t -> Int in
                switch t.propertyValue("temperature") {
                case .number?: return 0
                case .string?: return 1
                default: return 2
                }
            }
            // Descending reverses the whole order except that twins without the property stay last.
            let rank = sort.hasPrefix("-") ? [1, 0, 2] : [0, 1, 2]
            XCTAssertEqual(kinds, kinds.sorted { rank[$0] < rank[$1] }, sort)
            let numbers = page.items.compactMap { $0.propertyValue("temperature")?.doubleValue }
            XCTAssertEqual(numbers, sort.hasPrefix("-") ? numbers.sorted(by: >) : numbers.sorted(), sort)
        }
    }

    func testFilterRelationshipAndCount() throws {
        let (ids, totals, _) = try allPages { try TwinListQuery(filter: "model=pump", relatedTo: "tank-1", rel: "feeds", sort: "-updatedAt", cursor: $0, limit: 5) }
        let expected = twins.filter { $0.model == "pump@1" && $0.relationships.contains { $0.target == "tank-1" } }
        XCTAssertEqual(Set(ids), Set(expected.map(\.twinId)))
        XCTAssertEqual(ids.count, expected.count)
        XCTAssertEqual(totals, [expected.count])
        let other = try TwinListQuery(relatedTo: "tank-1", rel: "drains").run(over: twins, now: 0)
        XCTAssertEqual(other.total, 0)
        XCTAssertNil(other.nextCursor)
    }

    func testLastPageHasNoCursorAndEmptyResult() throws {
        let page = try TwinListQuery(limit: 1_000).run(over: twins, now: 0)
        XCTAssertEqual(page.items.count, twins.count)
        XCTAssertNil(page.nextCursor)
        let none = try TwinListQuery(filter: "version>100").run(over: twins, now: 0)
        XCTAssertEqual(none.items.count, 0)
        XCTAssertEqual(none.total, 0)
    }

    func testLimits() throws {
        XCTAssertEqual(try TwinListQuery().limit, 100)
        XCTAssertThrowsError(try TwinListQuery(limit: 0)) { XCTAssertEqual(($0 as? QueryError)?.code, .invalidLimit) }
        XCTAssertThrowsError(try TwinListQuery(limit: 1_001)) { XCTAssertEqual(($0 as? QueryError)?.parameter, "limit") }
        XCTAssertNoThrow(try TwinListQuery(limit: 1_000))
        XCTAssertThrowsError(try TwinListQuery(rel: "feeds")) { XCTAssertEqual(($0 as? QueryError)?.parameter, "rel") }
        // A relationship name as models declare them, nothing else (the document's pattern).
        for bad in ["a-b", "", "9feeds", String(repeating: "r", count: 65)] {
            XCTAssertThrowsError(try TwinListQuery(relatedTo: "tank-1", rel: bad), bad) { XCTAssertEqual(($0 as? QueryError)?.parameter, "rel") }
        }
        XCTAssertNoThrow(try TwinListQuery(relatedTo: "tank-1", rel: "_feeds_2"))
        XCTAssertThrowsError(try TwinListQuery(sort: "-")) { XCTAssertEqual(($0 as? QueryError)?.code, .invalidSort) }
        XCTAssertThrowsError(try TwinListQuery(sort: "a b")) { XCTAssertEqual(($0 as? QueryError)?.code, .invalidSort) }
        XCTAssertThrowsError(try TwinListQuery(filter: "a >> 1")) { XCTAssertEqual(($0 as? QueryError)?.position, 3) }
    }

    func testTamperedOrForeignCursorsAreRejected() throws {
        let first = try TwinListQuery(filter: "version>0", sort: "-temperature", limit: 10).run(over: twins, now: 0)
        let cursor = try XCTUnwrap(first.nextCursor)
        XCTAssertNoThrow(try TwinListQuery(filter: "version>0", sort: "-temperature", cursor: cursor, limit: 10))
        func rejected(_ c: String, filter: String? = "version>0", sort: String = "-temperature", line: UInt = #line) {
            XCTAssertThrowsError(try TwinListQuery(filter: filter, sort: sort, cursor: c), line: line) {
                XCTAssertEqual(($0 as? QueryError)?.code, .invalidCursor, line: line)
                XCTAssertEqual(($0 as? QueryError)?.parameter, "cursor", line: line)
            }
        }
        rejected(cursor, sort: "temperature")
        rejected(cursor, filter: "version>1")
        rejected(cursor, filter: nil)
        rejected("")
        rejected("!!!!")
        rejected("a")
        rejected(String(repeating: "A", count: 10_000))
        rejected(Base64URL.encode(Array("[2,\"-temperature\",\"0\",\"n\",\"1\",\"x\"]".utf8)))
        rejected(Base64URL.encode(Array("{\"a\":1}".utf8)))
        // Flip every character in turn: each result is rejected or (rarely) still a well-formed cursor; never a crash.
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        for i in cursor.indices {
            var chars = Array(cursor)
            let k = cursor.distance(from: cursor.startIndex, to: i)
            chars[k] = alphabet[(alphabet.firstIndex(of: chars[k])! + 1) % alphabet.count]
            _ = try? TwinListQuery(filter: "version>0", sort: "-temperature", cursor: String(chars)).run(over: twins, now: 0)
        }
    }

    func testBase64URLRoundTrip() {
        var rng = SplitMix64(seed: 3)
        for n in 0..<40 {
            let bytes = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let text = Base64URL.encode(bytes)
            XCTAssertFalse(text.contains("=") || text.contains("+") || text.contains("/"))
            XCTAssertEqual(Base64URL.decode(text), bytes)
        }
    }

    func testBenchmarkFunctionRunsSmall() {
        let r = runFilterBenchmark(twins: 1_000, rounds: 1)
        XCTAssertEqual(r.twins, 1_000)
        XCTAssertGreaterThan(r.matched, 0)
    }
}
