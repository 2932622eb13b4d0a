import Contracts
import JSON
import Kafka
import Stage
import TwinStore
import XCTest

/// The state semantics, driven directly: last-writer-wins, late readings, duplicates, commands.
final class TwinFoldTests: XCTestCase {
    func envelope(_ twin: String = "pump-1", id: String, at ts: Int64, _ values: JSONObject, model: String? = "pump@1") -> TelemetryEnvelope {
        TelemetryEnvelope(eventId: id, tenant: "t", twinId: twin, model: model, eventTime: ts, ingestTime: ts + 5,
                          source: .init(kind: "kafka", ref: "x"), values: values)
    }

    func command(_ kind: TwinCommand.Kind, _ twin: String = "pump-1", id: String, ifVersion: Int64? = nil, model: String? = nil,
                 metadata: JSON? = nil, parameters: JSONObject? = nil, relationship: TwinCommand.Relationship? = nil) -> TwinCommand {
        TwinCommand(commandId: id, tenant: "t", twinId: twin, kind: kind, issuedAt: 9_000, ifVersion: ifVersion, model: model,
                    metadata: metadata, parameters: parameters, relationship: relationship)
    }

    func change(_ outcome: TwinFold.Outcome, file: StaticString = #filePath, line: UInt = #line) -> TwinChange? {
        if case .change(let c) = outcome { return c }
        XCTFail("expected a change, got \(outcome)", file: file, line: line)
        return nil
    }

    func testLatestEventTimeWinsPerPropertyAndLateReadingsAreRecordedNotApplied() throws {
        var fold = TwinFold(options: .init(autoCreate: true))
        _ = fold.apply(reading: envelope(id: "a", at: 1000, ["flow": 1, "rpm": 100]), offset: 0)
        _ = fold.apply(reading: envelope(id: "b", at: 3000, ["flow": 3]), offset: 1)
        let late = try XCTUnwrap(change(fold.apply(reading: envelope(id: "c", at: 2000, ["flow": 2, "rpm": 200]), offset: 2)))
        let record = try XCTUnwrap(fold.twins["t/pump-1"])
        XCTAssertEqual(record.properties.map(\.value), [3, 200], "flow keeps the newer 3; rpm takes 200 (newer than 100)")
        XCTAssertEqual(late.changes.map(\.path), ["/properties/flow", "/properties/rpm"])
        XCTAssertEqual(late.changes.map(\.late), [true, false])
        XCTAssertEqual(late.changes[0].old, 3)
        XCTAssertEqual(late.changes[0].new, 2, "the late value is in the change event, so history is complete")
        XCTAssertTrue(late.late)
        XCTAssertEqual(late.version, 3)
        XCTAssertEqual(record.version, 3)
        XCTAssertEqual(fold.lateReadings, 1)
    }

    func testEqualEventTimesBreakTiesOnEventIdWhateverTheOrder() {
        var ab = TwinFold(options: .init(autoCreate: true)), ba = ab
        _ = ab.apply(reading: envelope(id: "a", at: 1000, ["flow": 1]), offset: 0)
        _ = ab.apply(reading: envelope(id: "b", at: 1000, ["flow": 2]), offset: 1)
        _ = ba.apply(reading: envelope(id: "b", at: 1000, ["flow": 2]), offset: 0)
        _ = ba.apply(reading: envelope(id: "a", at: 1000, ["flow": 1]), offset: 1)
        XCTAssertEqual(ab.twins["t/pump-1"]?.properties.first?.value, 2)
        XCTAssertEqual(ba.twins["t/pump-1"]?.properties.first?.value, 2)
    }

    func testARepeatedEventIdOrOffsetChangesNothing() {
        var fold = TwinFold(options: .init(autoCreate: true))
        _ = fold.apply(reading: envelope(id: "a", at: 1000, ["flow": 1]), offset: 0)
        _ = fold.apply(reading: envelope(id: "b", at: 2000, ["flow": 2]), offset: 1)
        let before = fold.twins
        guard case .duplicate = fold.apply(reading: envelope(id: "a", at: 1000, ["flow": 1]), offset: 7) else { return XCTFail("same event id") }
        guard case .duplicate = fold.apply(reading: envelope(id: "z", at: 5000, ["flow": 9]), offset: 1) else { return XCTFail("replayed offset") }
        XCTAssertEqual(fold.twins["t/pump-1"]?.properties, before["t/pump-1"]?.properties)
        XCTAssertEqual(fold.twins["t/pump-1"]?.version, 2)
        XCTAssertEqual(fold.duplicates, 2)
    }

    func testUnknownTwinsAreDeadLetteredWhenAutoCreateIsOff() {
        var fold = TwinFold(options: .init(autoCreate: false))
        guard case .deadLetter(let reason) = fold.apply(reading: envelope(id: "a", at: 1, ["flow": 1]), offset: 0) else { return XCTFail() }
        XCTAssertEqual(reason.code, "unknown_twin")
        XCTAssertNotNil(change(fold.apply(command: command(.create, id: "c1", model: "pump@1"), offset: 0)))
        XCTAssertNotNil(change(fold.apply(reading: envelope(id: "a", at: 1, ["flow": 1]), offset: 1)))
    }

    var catalog: ModelCatalog {
        ModelCatalog(resolve: { ["pump", "pump@1"].contains($0) ? "pump@1" : ["tank", "tank@1"].contains($0) ? "tank@1" : nil },
                     relationshipTarget: { model, rel in model.hasPrefix("pump") && rel == "feeds" ? "tank" : nil },
                     hasParameter: { model, name in model.hasPrefix("pump") && name == "ratedFlow" },
                     unit: { _, _ in nil })
    }

    func testCommandsCreatePatchParametersRelateAndDecommission() throws {
        var fold = TwinFold(options: .init(autoCreate: false, catalog: catalog))
        let created = try XCTUnwrap(change(fold.apply(command: command(.create, id: "c1", model: "pump", metadata: ["site": "north", "line": 2]), offset: 0)))
        XCTAssertEqual(created.kind, .command)
        XCTAssertEqual(created.version, 1)
        XCTAssertEqual(fold.twins["t/pump-1"]?.model, "pump@1", "a model reference is stored canonical")
        _ = fold.apply(command: command(.create, "tank-7", id: "c2", model: "tank"), offset: 1)
        _ = fold.apply(command: command(.create, "pump-2", id: "c3", model: "pump"), offset: 2)

        let patched = try XCTUnwrap(change(fold.apply(command: command(.patch, id: "c4", metadata: ["line": .null, "owner": "ops"]), offset: 3)))
        XCTAssertEqual(fold.twins["t/pump-1"]?.extras.metadata, ["site": "north", "owner": "ops"], "JSON Merge Patch: null removes, others merge")
        XCTAssertEqual(Set(patched.changes.map(\.path)), ["/metadata/line", "/metadata/owner"])

        let badParameter = try XCTUnwrap(change(fold.apply(command: command(.setParameters, id: "c5", parameters: ["speed": 3]), offset: 4)))
        XCTAssertEqual(badParameter.kind, .rejected)
        XCTAssertEqual(badParameter.reason?.code, "unknown_parameter")
        XCTAssertEqual(badParameter.version, 2, "a rejection leaves the version alone")
        XCTAssertNotNil(change(fold.apply(command: command(.setParameters, id: "c6", parameters: ["ratedFlow": 40]), offset: 5)))
        XCTAssertEqual(fold.twins["t/pump-1"]?.extras.parameters, ["ratedFlow": 40])

        let wrongModel = try XCTUnwrap(change(fold.apply(command: command(.relate, id: "c7", relationship: .init(name: "feeds", target: "pump-2")), offset: 6)))
        XCTAssertEqual(wrongModel.reason?.code, "wrong_target_model")
        XCTAssertEqual(wrongModel.reason?.expected, "tank")
        XCTAssertEqual(wrongModel.reason?.actual, "pump")
        let unknownRel = try XCTUnwrap(change(fold.apply(command: command(.relate, id: "c8", relationship: .init(name: "drains", target: "tank-7")), offset: 7)))
        XCTAssertEqual(unknownRel.reason?.code, "unknown_relationship")
        let related = try XCTUnwrap(change(fold.apply(command: command(.relate, id: "c9", relationship: .init(name: "feeds", target: "tank-7")), offset: 8)))
        XCTAssertEqual(related.kind, .command)
        XCTAssertEqual(fold.twins["t/pump-1"]?.extras.relationships, [.init(name: "feeds", target: "tank-7")])
        let remote = try XCTUnwrap(change(fold.apply(command: command(.relate, id: "c10", relationship: .init(name: "feeds", target: "tank-9")), offset: 9,
                                                     targetModel: "tank@1")))
        XCTAssertEqual(remote.kind, .command, "a target held elsewhere is checked against the model the caller supplies")

        let gone = try XCTUnwrap(change(fold.apply(command: command(.decommission, id: "c11"), offset: 10)))
        XCTAssertEqual(gone.changes.map(\.path), ["/lifecycle"])
        guard case .deadLetter(let reason) = fold.apply(reading: envelope(id: "r", at: 1, ["flow": 1]), offset: 0) else { return XCTFail() }
        XCTAssertEqual(reason.code, "unknown_twin", "readings of a decommissioned twin are dead-lettered")
        XCTAssertEqual(change(fold.apply(command: command(.patch, id: "c12", metadata: ["a": 1]), offset: 11))?.reason?.code, "unknown_twin")
    }

    func testIfVersionConflictIsRejectedNotOverwritten() throws {
        var fold = TwinFold(options: .init(autoCreate: true))
        _ = fold.apply(command: command(.create, id: "c1", ifVersion: 0, model: "pump@1"), offset: 0)
        _ = fold.apply(reading: envelope(id: "a", at: 1000, ["flow": 1]), offset: 0)
        let conflict = try XCTUnwrap(change(fold.apply(command: command(.patch, id: "c2", ifVersion: 1, metadata: ["a": 1]), offset: 1)))
        XCTAssertEqual(conflict.kind, .rejected)
        XCTAssertEqual(conflict.reason?.code, "version_conflict")
        XCTAssertEqual(conflict.reason?.expected, "1")
        XCTAssertEqual(conflict.reason?.actual, "2")
        XCTAssertEqual(fold.twins["t/pump-1"]?.extras.metadata, [:])
        XCTAssertEqual(change(fold.apply(command: command(.patch, id: "c3", ifVersion: 2, metadata: ["a": 1]), offset: 2))?.kind, .command)
        XCTAssertEqual(change(fold.apply(command: command(.create, id: "c4", model: "pump@1"), offset: 3))?.reason?.code, "already_exists")
        guard case .duplicate = fold.apply(command: command(.patch, id: "c3", metadata: ["a": 2]), offset: 4) else { return XCTFail("retried command id") }
    }

    func testCheckpointsRoundTripAndRejectCorruption() throws {
        var fold = TwinFold(options: .init(autoCreate: true))
        _ = fold.apply(command: command(.create, id: "c1", model: "pump@1", metadata: ["site": "n"]), offset: 0)
        _ = fold.apply(reading: envelope(id: "a", at: 1000, ["flow": 1.5, "on": true, "mode": "auto", "big": 12345678901234]), offset: 3)
        _ = fold.apply(reading: envelope("pump-2", id: "b", at: 1000, ["flow": -2]), offset: 4)
        _ = fold.apply(command: command(.decommission, "pump-2", id: "c2"), offset: 1)
        let checkpoint = Checkpoint(partition: 3, stateOffset: 41, twins: fold.twins)
        var bytes = checkpoint.encoded()
        let decoded = try Checkpoint(bytes: bytes)
        XCTAssertEqual(decoded.twins, fold.twins)
        XCTAssertEqual(decoded.stateOffset, 41)
        XCTAssertEqual(decoded.partition, 3)
        bytes[bytes.count / 2] ^= 0x40
        XCTAssertThrowsError(try Checkpoint(bytes: bytes))
        XCTAssertThrowsError(try Checkpoint(bytes: Array(bytes.prefix(10))))
    }

    func testStateDocumentsCarryEverythingARestoreNeeds() throws {
        var fold = TwinFold(options: .init(autoCreate: true))
        _ = fold.apply(command: command(.create, id: "c1", model: "pump@1", metadata: ["site": "n"], parameters: ["ratedFlow": 3]), offset: 0)
        _ = fold.apply(reading: envelope(id: "a", at: 1000, ["flow": 1.5, "on": true]), offset: 3)
        let record = try XCTUnwrap(fold.twins["t/pump-1"])
        let document = record.state(tenant: "t", twinId: "pump-1").encoded()
        XCTAssertEqual(TwinRecord(try TwinState(bytes: document)), record)
    }

    /// The store writes documents straight from its records (`TwinRecord.write`): the bytes must
    /// be those of building the `TwinState` and writing it, whatever the record holds.
    func testARecordWritesTheBytesOfItsStateDocument() throws {
        let catalog = ModelCatalog(resolve: { $0 }, relationshipTarget: { _, _ in "*" }, hasParameter: { _, _ in true },
                                   unit: { _, name in name == "flow" ? "m3/h" : nil })
        var fold = TwinFold(options: .init(autoCreate: true, catalog: catalog))
        _ = fold.apply(command: command(.create, id: "c1", model: "pump@1", metadata: ["site": "n\"/~"], parameters: ["ratedFlow": 3]), offset: 0)
        _ = fold.apply(command: command(.relate, id: "c2", relationship: .init(name: "feeds", target: "tank-1")), offset: 1)
        for i in 0..<20 {
            _ = fold.apply(reading: envelope(id: "id-\(i)", at: 1_000 + Int64(i), ["flow": .number(JSONNumber(1.5 + Double(i))), "on": true, "na\"me/~": "x"]), offset: Int64(3 + i))
        }
        var records = [try XCTUnwrap(fold.twins["t/pump-1"])]
        var hexes = TwinRecord(model: nil)
        hexes.recent = [0, 1, 0xf, 0x10, 0xdead_beef, 0x0123_4567_89ab_cdef, .max]
        records.append(hexes)
        _ = fold.apply(command: command(.decommission, id: "c3"), offset: 2)
        records.append(try XCTUnwrap(fold.twins["t/pump-1"]))
        for (i, record) in records.enumerated() {
            for required in [[], ["flow", "pressure", "rpm"]] {
                var built = JSONWriter(), direct = JSONWriter()
                record.state(tenant: "t", twinId: "pump-1", required: required).write(to: &built) { catalog.unit("pump@1", $0) }
                record.write(to: &direct, tenant: "t", twinId: "pump-1", required: required) { catalog.unit("pump@1", $0) }
                XCTAssertEqual(direct.string, built.string, "record \(i), required \(required)")
            }
        }
    }
}

extension TwinFoldTests {
    func testAPatchMigratesToAnotherVersionOfTheSameModelOnly() throws {
        let catalog = ModelCatalog(resolve: { ["pump@1", "pump@2", "tank@1"].contains($0) ? $0 : nil }, relationshipTarget: { _, _ in nil },
                                   hasParameter: { _, _ in false }, unit: { _, _ in nil })
        var fold = TwinFold(options: .init(autoCreate: false, catalog: catalog))
        _ = fold.apply(command: command(.create, id: "c1", model: "pump@1"), offset: 0)
        var upgrade = command(.patch, id: "c2")
        upgrade.model = "pump@2"
        let applied = try XCTUnwrap(change(fold.apply(command: upgrade, offset: 1)))
        XCTAssertEqual(applied.changes.map(\.path), ["/model"])
        XCTAssertEqual(fold.twins["t/pump-1"]?.model, "pump@2")
        var sideways = command(.patch, id: "c3")
        sideways.model = "tank@1"
        XCTAssertEqual(change(fold.apply(command: sideways, offset: 2))?.reason?.code, "model_change")
    }
}
