import Contracts
import Fleet
import Foundation
import JSON
import Models
import Simulation
import XCTest

/// Faults injected into the simulated fleet: each kind does what a person watching the platform
/// would see (physics following a shifted parameter, a sensor repeating one value, a twin falling
/// silent and resuming, late, duplicate and malformed readings at their rate), reproducibly under a
/// seed; a spec that does not parse or fit the fleet is refused saying what is expected.
final class FaultInjectionTests: XCTestCase {
    static let seed: UInt64 = 2026
    static let start = FleetTests.start

    /// Everything `ticks` rounds of a fleet emit, in order, and the faults that fired.
    struct Run {
        var messages: [(twinId: String, bytes: [UInt8], original: Bool)] = []
        var events: [FaultEvent] = []
        var truth: [FleetSimulator.Truth] = []

        /// Readings of `twinId` that parse: (epoch ms, values).
        func readings(_ twinId: String) -> [(ts: Int64, values: [String: Double])] {
            messages.filter { $0.twinId == twinId }.compactMap { m in
                guard let json = try? JSON(parsing: m.bytes), let ts = json["ts"]?.intValue else { return nil }
                var values: [String: Double] = [:]
                for (k, v) in json["values"]?.objectValue ?? [:] { if let d = v.doubleValue { values[k] = d } }
                return (Int64(ts), values)
            }
        }
    }

    func run(_ spec: String, twins: Int = 3, ticks: Int, step: Double = 60, seed: UInt64 = seed, noise: Bool = true) throws -> Run {
        let options = FleetSimulator.Options(seed: seed, step: step, start: Self.start, noise: noise, faults: try FaultPlan(parsing: spec))
        let fleet = try FleetSimulator(count: twins, registry: FleetTests.registry, options: options)
        var run = Run()
        for _ in 0..<ticks {
            try fleet.tick({ id, bytes, truth in run.messages.append((id, bytes, truth != nil)) }, faults: { run.events.append($0) })
        }
        run.truth = fleet.truth
        return run
    }

    func testASpecParsesIntoItsFaultsAndABadSpecSaysWhichFaultIsWrongAndWhatIsExpected() throws {
        let plan = try FaultPlan(parsing: "shift:room-3:tau=*0.5@10m; stuck:room-5,room-6:temperature@5m;silent:room-7@8m+5m;late:1%;duplicate:1%;malformed:0.001;late:2%:2m@1h")
        XCTAssertEqual(plan.faults.map(\.kind), [.shift, .stuck, .silent, .late, .duplicate, .malformed, .late])
        XCTAssertEqual(plan.faults[0].twins, ["room-3"])
        XCTAssertEqual(plan.faults[0].name, "tau")
        XCTAssertEqual(plan.faults[0].change, .scale(0.5))
        XCTAssertEqual(plan.faults[0].atMs, 600_000)
        XCTAssertNil(plan.faults[0].durationMs)
        XCTAssertEqual(plan.faults[1].twins, ["room-5", "room-6"])
        XCTAssertEqual(plan.faults[2].atMs, 480_000)
        XCTAssertEqual(plan.faults[2].durationMs, 300_000)
        XCTAssertTrue(plan.faults[2].isActive(atOffset: 480_000) && !plan.faults[2].isActive(atOffset: 780_000) && !plan.faults[2].isActive(atOffset: 479_999))
        XCTAssertEqual(plan.faults[3].rate, 0.01, accuracy: 1e-15)
        XCTAssertEqual(plan.faults[3].delayMs, FaultPlan.defaultDelayMs)
        XCTAssertEqual(plan.faults[5].rate, 0.001)
        XCTAssertEqual(plan.faults[6].delayMs, 120_000)
        XCTAssertEqual(plan.faults[6].atMs, 3_600_000)
        XCTAssertEqual(try FaultPlan(parsing: "shift:pump-1:heatRise=+2").faults[0].change, .add(2))
        XCTAssertEqual(try FaultPlan(parsing: "shift:pump-1:heatRise=-2").faults[0].change, .add(-2))
        XCTAssertEqual(try FaultPlan(parsing: "shift:pump-1:heatRise=12").faults[0].change, .set(12))
        XCTAssertEqual(try FaultPlan(parsing: "").faults, [])

        let bad: [(String, String)] = [
            ("shift:room-3:tau@10m", "PARAMETER=VALUE"),
            ("stuck:room-3:temperature@5", "'5' is not a whole number with a unit"),
            ("silent:room-3;bogus:1%", "fault 2 'bogus:1%': unknown kind 'bogus'"),
            ("late:150%", "outside 0%...100%"),
            ("duplicate:often", "'often' is not a rate"),
            ("shift:room-3:tau=half", "not a number, *FACTOR"),
            ("stuck:room-3", "stuck takes TWINS:PROPERTY"),
            ("silent:room-3,,room-4", "not a list of twin ids"),
            ("silent:room-3@1m+", "the duration after '+'"),
        ]
        for (spec, expected) in bad {
            XCTAssertThrowsError(try FaultPlan(parsing: spec), spec) { error in
                let message = "\(error)"
                XCTAssertTrue(message.contains(expected), "\(spec): \(message)")
                XCTAssertTrue(message.contains("expected KIND:ARGS[@TIME[+DURATION]]"), "every error shows the syntax: \(message)")
            }
        }
    }

    func testFaultsThatDoNotFitTheFleetAreRefusedNamingWhatItHas() throws {
        let cases: [(String, String)] = [
            ("silent:room-9", "no twin room-9 in a fleet of 6 (pump-1…pump-2, room-1…room-2, battery-1…battery-2)"),
            ("shift:room-1:tauu=*0.5", "room-1 (room@2) has no parameter 'tauu'; its parameters: "),
            ("stuck:pump-1:running", "pump-1 reports no number 'running'; it reports "),
            ("shift:room-1:tau=*0.001", "outside room@2's range 60.0...604800.0"),
        ]
        for (spec, expected) in cases {
            let options = FleetSimulator.Options(faults: try FaultPlan(parsing: spec))
            XCTAssertThrowsError(try FleetSimulator(count: 6, registry: FleetTests.registry, options: options), spec) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(spec): \(error)")
            }
        }
    }

    func testAShiftedRoomFollowsItsNewTauFromTheShiftOnAsTheClosedFormSays() throws {
        print("FaultInjectionTests seed \(Self.seed)")
        // Noise off: a reading is the true state, so one interval's closed form can be checked.
        let shifted = try run("shift:room-1:tau=*0.5@10m", ticks: 40, noise: false)
        let plain = try run("", ticks: 40, noise: false)
        let original = try XCTUnwrap(plain.truth.first { $0.twinId == "room-1" }?.parameters)
        let now = try XCTUnwrap(shifted.truth.first { $0.twinId == "room-1" }?.parameters)
        XCTAssertEqual(now["tau"]!, original["tau"]! / 2, accuracy: 1e-9, "the fleet's truth names the value its physics uses")
        XCTAssertEqual(now["C"], original["C"])
        XCTAssertEqual(shifted.events, [FaultEvent(twinId: "room-1", kind: .shift, phase: .start, time: Self.start + 600_000,
                                                   details: ["parameter": "tau", "from": .double(original["tau"]!), "to": .double(now["tau"]!)])])

        let a = shifted.readings("room-1"), b = plain.readings("room-1")
        XCTAssertEqual(a.prefix(11).map(\.values), b.prefix(11).map(\.values), "the same room up to and including the reading at 10 minutes")
        XCTAssertNotEqual(a[12].values["temperature"], b[12].values["temperature"])
        XCTAssertEqual(shifted.readings("pump-1").map(\.values), plain.readings("pump-1").map(\.values), "other twins are untouched")
        // Each interval: T(t+h) = T∞ + (T − T∞)·e^(−h/τ), T∞ = Ta + P·τ/C, inputs held over the interval.
        func predicted(_ r: (ts: Int64, values: [String: Double]), tau: Double) -> Double {
            let ta = r.values["outdoorTemperature"]!, p = r.values["hvacPower"]!, t = r.values["temperature"]!
            let steady = ta + p * tau / original["C"]!
            return steady + (t - steady) * exp(-60 / tau)
        }
        var worstNew = 0.0, worstOld = 0.0
        for k in 10..<39 {
            worstNew = max(worstNew, abs(a[k + 1].values["temperature"]! - predicted(a[k], tau: now["tau"]!)))
            worstOld = max(worstOld, abs(a[k + 1].values["temperature"]! - predicted(a[k], tau: original["tau"]!)))
        }
        for k in 0..<10 { XCTAssertEqual(a[k + 1].values["temperature"]!, predicted(a[k], tau: original["tau"]!), accuracy: 2e-3) }
        XCTAssertLessThan(worstNew, 2e-3, "after the shift the room follows the halved tau (readings are rounded to 0.001)")
        XCTAssertGreaterThan(worstOld, 0.01, "and no longer the old one")
    }

    func testAShiftWithAWindowIsRestoredWhenTheWindowEnds() throws {
        let run = try run("shift:pump-1:heatRise=+10@2m+3m", ticks: 10)
        XCTAssertEqual(run.events.map(\.phase), [.start, .end])
        XCTAssertEqual(run.events.map(\.time), [Self.start + 120_000, Self.start + 300_000])
        XCTAssertEqual(run.events[1].details["to"], run.events[0].details["from"])
        let plain = try self.run("", ticks: 10)
        XCTAssertEqual(run.truth, plain.truth, "the twin's parameters are its own again")
    }

    func testAStuckSensorRepeatsTheValueItReadWhenItStuckAndTheOtherPropertiesReadAsBefore() throws {
        let stuck = try run("stuck:pump-1:temperature@5m+10m", ticks: 30)
        let plain = try run("", ticks: 30)
        let a = stuck.readings("pump-1"), b = plain.readings("pump-1")
        XCTAssertEqual(a.map(\.ts), b.map(\.ts))
        XCTAssertEqual(a.prefix(5).map(\.values), b.prefix(5).map(\.values))
        let held = try XCTUnwrap(stuck.events.first?.details["value"]?.doubleValue)
        XCTAssertEqual(a[5..<15].map { $0.values["temperature"]! }, Array(repeating: held, count: 10), "one value, repeated for the window")
        XCTAssertEqual(Set(b[5..<15].map { $0.values["temperature"]! }).count, 10, "the real sensor moves")
        XCTAssertEqual(held, b[5].values["temperature"]!, accuracy: 0.5, "it stuck at a plausible reading")
        XCTAssertEqual(a[15...].map(\.values), b[15...].map(\.values), "it reads again after the window")
        for k in a.indices { XCTAssertEqual(a[k].values.filter { $0.key != "temperature" }, b[k].values.filter { $0.key != "temperature" }) }
        XCTAssertEqual(stuck.events.map(\.phase), [.start, .end])
        XCTAssertEqual(stuck.events.map(\.time), [Self.start + 300_000, Self.start + 900_000])
        XCTAssertEqual(stuck.events[0].details["property"], "temperature")
    }

    func testASilentTwinSendsNothingInItsWindowAndResumesWithTheReadingsItWouldHaveSent() throws {
        let silent = try run("silent:battery-1@3m+4m", ticks: 12)
        let plain = try run("", ticks: 12)
        XCTAssertEqual(silent.readings("battery-1").map(\.ts), (0..<12).filter { !(3..<7).contains($0) }.map { Self.start + Int64($0) * 60_000 })
        XCTAssertEqual(silent.readings("battery-1").map(\.values), plain.readings("battery-1").enumerated().filter { !(3..<7).contains($0.offset) }.map(\.element.values),
                       "it kept evolving while silent")
        XCTAssertEqual(silent.events, [FaultEvent(twinId: "battery-1", kind: .silent, phase: .start, time: Self.start + 180_000),
                                       FaultEvent(twinId: "battery-1", kind: .silent, phase: .end, time: Self.start + 420_000)])
        XCTAssertEqual(silent.messages.filter { $0.twinId != "battery-1" }.map(\.bytes), plain.messages.filter { $0.twinId != "battery-1" }.map(\.bytes))
    }

    func testLateDuplicateAndMalformedReadingsHitAboutTheirShareAndAreReproducibleUnderTheSeed() throws {
        print("FaultInjectionTests seed \(Self.seed)")
        let spec = "late:5%:3m;duplicate:5%;malformed:10%@10m"
        let run = try run(spec, ticks: 300)
        let plain = try self.run("", ticks: 300)
        XCTAssertEqual(try self.run(spec, ticks: 300).messages.map(\.bytes), run.messages.map(\.bytes), "the same seed hits the same readings")
        XCTAssertNotEqual(try self.run(spec, ticks: 300, seed: Self.seed + 1).events, run.events, "another seed hits others")

        let hits = Dictionary(grouping: run.events, by: \.kind)
        // 3 twins × 300 readings at 5 %: 45 ± 6.5 expected (binomial); malformed at 10 % from tick 10: 87 ± 9.
        XCTAssertEqual(Double(hits[.late]?.count ?? 0), 45, accuracy: 25)
        XCTAssertEqual(Double(hits[.duplicate]?.count ?? 0), 45, accuracy: 25)
        XCTAssertEqual(Double(hits[.malformed]?.count ?? 0), 87, accuracy: 35)
        XCTAssertFalse(hits[.malformed]!.contains { $0.time < Self.start + 600_000 }, "malformed only from 10 minutes on")

        // Each message's time, nil when it is not JSON (parsed once).
        let times = run.messages.map { (try? JSON(parsing: $0.bytes))?["ts"]?.intValue.map(Int64.init) }
        let broken = Set(hits[.malformed]!.map { "\($0.twinId)@\($0.time)" })
        func index(of event: FaultEvent) -> Int? { run.messages.indices.first { run.messages[$0].twinId == event.twinId && times[$0] == event.time } }
        // Duplicates: the same bytes straight after the original (unless malformed beyond reading).
        for event in hits[.duplicate]! where !broken.contains("\(event.twinId)@\(event.time)") {
            let i = try XCTUnwrap(index(of: event))
            XCTAssertEqual(run.messages[i + 1].bytes, run.messages[i].bytes)
            XCTAssertFalse(run.messages[i + 1].original)
        }
        // Late: sent 3 intervals later, after newer readings of the twin, with its own (older) time.
        for event in hits[.late]! where event.time < Self.start + 296 * 60_000 && !broken.contains("\(event.twinId)@\(event.time)") {
            let i = try XCTUnwrap(index(of: event), "a late reading is sent, late")
            XCTAssertTrue((0..<i).contains { run.messages[$0].twinId == event.twinId && (times[$0] ?? 0) > event.time }, "newer readings went first")
        }
        // Malformed: half of them not JSON at all (cut inside the values: their times differ),
        // the others a number sent as a string. (A duplicated one is counted once: its copy follows it.)
        var invalid = 0, wrongType = 0
        for (i, m) in run.messages.enumerated() where i == 0 || run.messages[i - 1].bytes != m.bytes {
            guard times[i] != nil else {
                invalid += 1
                XCTAssertTrue(m.bytes.starts(with: Array(#"{"twinId":""#.utf8)))
                continue
            }
            let values = (try? JSON(parsing: m.bytes))?["values"]?.objectValue ?? [:]
            if values.contains(where: { $0.value.stringValue.flatMap(Double.init) != nil }) { wrongType += 1 }
        }
        XCTAssertEqual(invalid, hits[.malformed]!.filter { $0.details["variant"] == "invalid_json" }.count)
        XCTAssertEqual(wrongType, hits[.malformed]!.filter { $0.details["variant"] == "wrong_type" }.count)
        XCTAssertGreaterThan(invalid, 20)
        XCTAssertGreaterThan(wrongType, 20)
        // What is not hit reads exactly as without faults: the faults draw from their own generator.
        let untouched = Set(plain.messages.map(\.bytes))
        let originals = run.messages.filter { m in (try? JSON(parsing: m.bytes))?["values"]?.objectValue?.allSatisfy { $0.value.stringValue == nil } == true }
        XCTAssertTrue(originals.allSatisfy { untouched.contains($0.bytes) })
    }

    func testAFiredFaultIsOneJSONLogLineWithItsTwinKindAndTime() throws {
        let event = FaultEvent(twinId: "pump-2", kind: .stuck, phase: .start, time: Self.start + 300_000, details: ["property": "temperature", "value": 23.5])
        let line = try JSON(parsing: event.logLine(now: Self.start))
        XCTAssertEqual(line, ["ts": "2026-11-21T00:00:00.000Z", "level": "info", "service": "twinctl-fleet", "msg": "fault stuck start",
                              "fault": "stuck", "phase": "start", "twinId": "pump-2", "time": "2026-11-21T00:05:00.000Z",
                              "property": "temperature", "value": 23.5])
        XCTAssertFalse(event.logLine(now: 0).contains(UInt8(ascii: "\n")))
    }
}
