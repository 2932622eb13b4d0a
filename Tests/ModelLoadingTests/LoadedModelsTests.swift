import Foundation
import ModelLoading
import Models
import ServiceKit
import XCTest

/// Model loading as a service does it at start-up, from `MODELS_DIR` and `MODEL_PREFIX_RULES`.
final class LoadedModelsTests: XCTestCase {
    static let modelsDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Schemas/models").path
    let logger = Logger(service: "test", sink: .discard)

    func testTheShippedModelsLoadAndPrefixRulesResolve() throws {
        let env = EnvironmentReader(["MODELS_DIR": Self.modelsDirectory, "MODEL_PREFIX_RULES": "pump-=pump@1,room-=room"])
        let models = try LoadedModels(env, logger: logger)
        XCTAssertNotNil(models.registry.model(referencedBy: "room"))
        guard case .resolved(let model, _) = models.resolver.resolve(tenant: "t", twinId: "pump-3", envelopeModel: nil) else {
            return XCTFail("pump-3 should resolve through its prefix rule")
        }
        XCTAssertEqual(model.description, "pump@1")
    }

    func testAMissingDirectoryStopsTheStartWithItsName() {
        let env = EnvironmentReader(["MODELS_DIR": "/nonexistent/models"])
        XCTAssertThrowsError(try LoadedModels(env, logger: logger)) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent/models"), "\(error)")
        }
    }

    func testARuleNamingAnUnknownModelStopsTheStart() {
        let env = EnvironmentReader(["MODELS_DIR": Self.modelsDirectory, "MODEL_PREFIX_RULES": "tank-=tank@1"])
        XCTAssertThrowsError(try LoadedModels(env, logger: logger))
    }
}
