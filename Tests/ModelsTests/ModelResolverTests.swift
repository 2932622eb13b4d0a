import Contracts
import JSON
import XCTest
@testable import Models

final class ModelResolverTests: XCTestCase {
    private var registry: ModelRegistry!

    override func setUpWithError() throws {
        registry = try TestSupport.shippedRegistry()
    }

    func testModelRefParseAndFormat() throws {
        XCTAssertEqual(try ModelRef(parsing: "pump@1"), ModelRef(id: "pump", version: 1))
        XCTAssertEqual(try ModelRef(parsing: "pump"), ModelRef(id: "pump"))
        XCTAssertEqual(ModelRef(id: "pump", version: 12).description, "pump@12")
        XCTAssertEqual(ModelRef(id: "pump").description, "pump")
        XCTAssertEqual(try ModelRef(parsing: "acme.pump-x_2@3").id, "acme.pump-x_2")
        for bad in ["", "@1", "pump@", "pump@0", "pump@01", "pump@x", "pump@1@2", "1pump", "pump v1", "pump@-1", "pump@1234567890"] {
            XCTAssertThrowsError(try ModelRef(parsing: bad), bad) { error in
                XCTAssertEqual((error as? ModelError)?.code, .invalidModelRef)
            }
        }
    }

    func testPrefixRuleParsing() throws {
        let rules = try ModelPrefixRule.parseList(" pump-=pump@1, room-=room ,bat-=battery@1,")
        XCTAssertEqual(rules.map(\.description), ["pump-=pump@1", "room-=room", "bat-=battery@1"])
        XCTAssertEqual(try ModelPrefixRule.parseList(""), [])
        let cases: [(String, String)] = [
            ("pump-pump@1", #"model prefix rule 1 "pump-pump@1": missing "=""#),
            ("pump-=pump@1,=room", #"model prefix rule 2 "=room": empty prefix"#),
            ("pump-=pump@x", #"model prefix rule 1 "pump-=pump@x": "pump@x" is not a model reference"#),
            ("a=pump,a=room", #"model prefix rule 2 "a=room": prefix "a" appears twice"#),
            ("a=b=c", #"model prefix rule 1 "a=b=c": more than one "=""#),
        ]
        for (text, message) in cases {
            XCTAssertThrowsError(try ModelPrefixRule.parseList(text), text) { error in
                let e = error as? ModelError
                XCTAssertEqual(e?.code, .invalidPrefixRules)
                XCTAssertTrue(e?.message.hasPrefix(message) ?? false, "\(e?.message ?? "")")
                XCTAssertTrue(e?.message.hasSuffix("expected prefix=model[@version], e.g. pump-=pump@1") ?? false)
            }
        }
        XCTAssertThrowsError(try ModelResolver(registry: registry, prefixRules: "boiler-=boiler")) { error in
            XCTAssertEqual((error as? ModelError)?.code, .unknownModel)
        }
    }

    func testPrecedenceAssignmentThenEnvelopeThenPrefixRule() throws {
        let resolver = try ModelResolver(registry: registry, prefixRules: "pump-=pump@1,room-=room")
        // Prefix rule only.
        guard case .resolved(let byRule, .prefixRule) = resolver.resolve(tenant: "t", twinId: "pump-7", envelopeModel: nil) else {
            return XCTFail("expected a prefix-rule resolution")
        }
        XCTAssertEqual(byRule.description, "pump@1")
        // The envelope beats the rule.
        guard case .resolved(let byEnvelope, .envelope) = resolver.resolve(tenant: "t", twinId: "pump-7", envelopeModel: "pump@2") else {
            return XCTFail("expected an envelope resolution")
        }
        XCTAssertEqual(byEnvelope.description, "pump@2")
        // An assignment beats both.
        try resolver.assign(tenant: "t", twinId: "pump-7", model: ModelRef(id: "battery", version: 1))
        guard case .resolved(let assigned, .assignment) = resolver.resolve(tenant: "t", twinId: "pump-7", envelopeModel: "pump@2") else {
            return XCTFail("expected an assignment resolution")
        }
        XCTAssertEqual(assigned.description, "battery@1")
        // Assignments are per tenant.
        XCTAssertEqual(resolver.model(tenant: "other", twinId: "pump-7", envelopeModel: nil)?.description, "pump@1")
        XCTAssertEqual(resolver.assignment(tenant: "t", twinId: "pump-7")?.description, "battery@1")
        XCTAssertEqual(resolver.assignmentCount, 1)
        resolver.unassign(tenant: "t", twinId: "pump-7")
        XCTAssertEqual(resolver.model(tenant: "t", twinId: "pump-7", envelopeModel: nil)?.description, "pump@1")
        // Nothing names a model.
        guard case .unknown = resolver.resolve(tenant: "t", twinId: "sensor-1", envelopeModel: nil) else { return XCTFail() }
        XCTAssertNil(resolver.model(tenant: "t", twinId: "sensor-1", envelopeModel: nil))
    }

    func testLatestVersusPinnedVersion() throws {
        let resolver = try ModelResolver(registry: registry)
        XCTAssertEqual(resolver.model(tenant: "t", twinId: "p", envelopeModel: "pump")?.version, 2)
        XCTAssertEqual(resolver.model(tenant: "t", twinId: "p", envelopeModel: "pump@2")?.version, 2)
        XCTAssertEqual(resolver.model(tenant: "t", twinId: "p", envelopeModel: "pump@1")?.version, 1)
        let latest = try ModelResolver(registry: registry, prefixRules: "pump-=pump")
        XCTAssertEqual(latest.model(tenant: "t", twinId: "pump-1", envelopeModel: nil)?.version, 2)
        XCTAssertEqual(try resolver.assign(tenant: "t", twinId: "p", model: ModelRef(id: "pump")).version, 2)
        XCTAssertThrowsError(try resolver.assign(tenant: "t", twinId: "p", model: ModelRef(id: "pump", version: 5))) { error in
            XCTAssertEqual((error as? ModelError)?.code, .unknownModel)
        }
    }

    func testLongestPrefixWins() throws {
        let resolver = try ModelResolver(registry: registry, prefixRules: "p=room,pump-=pump@1,pump-v2-=pump@2")
        XCTAssertEqual(resolver.model(tenant: "t", twinId: "pump-v2-9", envelopeModel: nil)?.description, "pump@2")
        XCTAssertEqual(resolver.model(tenant: "t", twinId: "pump-9", envelopeModel: nil)?.description, "pump@1")
        XCTAssertEqual(resolver.model(tenant: "t", twinId: "plant", envelopeModel: nil)?.description, "room@2")
        XCTAssertNil(resolver.model(tenant: "t", twinId: "x", envelopeModel: nil))
    }

    func testUnusableEnvelopeModelIsAReason() throws {
        let resolver = try ModelResolver(registry: registry, prefixRules: "pump-=pump@1")
        guard case .failed(let unknown) = resolver.resolve(tenant: "t", twinId: "pump-1", envelopeModel: "pump@7") else { return XCTFail() }
        XCTAssertEqual(unknown.code, "unknown_model")
        XCTAssertEqual(unknown.pointer, "/model")
        XCTAssertEqual(unknown.expected, "pump@1, pump@2")
        XCTAssertEqual(unknown.actual, "pump@7")
        guard case .failed(let malformed) = resolver.resolve(tenant: "t", twinId: "pump-1", envelopeModel: "pump@@") else { return XCTFail() }
        XCTAssertEqual(malformed.code, "invalid_model_ref")
        guard case .failed(let other) = resolver.resolve(tenant: "t", twinId: "pump-1", envelopeModel: "boiler") else { return XCTFail() }
        XCTAssertEqual(other.expected, "one of battery, pump, room")
    }

    /// Assignments can be made from one thread while others resolve.
    func testConcurrentAssignAndResolve() throws {
        let resolver = try ModelResolver(registry: registry, prefixRules: "pump-=pump@1")
        DispatchQueue.concurrentPerform(iterations: 8) { worker in
            for i in 0..<500 {
                let id = "pump-\(worker)-\(i)"
                if worker % 2 == 0 {
                    _ = try? resolver.assign(tenant: "t", twinId: id, model: ModelRef(id: "pump", version: 2))
                } else {
                    _ = resolver.resolve(tenant: "t", twinId: id, envelopeModel: nil)
                }
            }
        }
        XCTAssertEqual(resolver.assignmentCount, 4 * 500)
        XCTAssertEqual(resolver.model(tenant: "t", twinId: "pump-0-3", envelopeModel: nil)?.version, 2)
    }

    /// The two versions of one model loaded at once check readings differently.
    func testTwoVersionsValidateDifferently() throws {
        let resolver = try ModelResolver(registry: registry)
        let reading: JSONObject = ["flow": 40, "pressure": 4, "temperature": 100, "rpm": 1450]
        let v1 = try XCTUnwrap(resolver.model(tenant: "t", twinId: "p", envelopeModel: "pump@1"))
        let v2 = try XCTUnwrap(resolver.model(tenant: "t", twinId: "p", envelopeModel: "pump"))
        XCTAssertTrue(v1.check(values: reading).isValid)
        XCTAssertEqual(v2.check(values: reading).errors.map(\.code), ["out_of_range"])
        XCTAssertTrue(v2.check(values: reading.merging(["temperature": 90, "bearingTemperature": 60])).isValid)
    }
}
