import Models
import ServiceKit

/// The twin models a service works with, loaded at start-up from `MODELS_DIR`; an invalid model
/// stops the service with a message naming the file and the JSON pointer.
public struct LoadedModels: Sendable {
    public let registry: ModelRegistry
    public let resolver: ModelResolver

    public init(_ environment: EnvironmentReader, logger: Logger) throws {
        let directory = environment.string("MODELS_DIR", default: "Schemas/models", doc: "Directory of twin model files (*.json and model.schema.json).")
        let rules = environment.string("MODEL_PREFIX_RULES", default: "",
                                       doc: "Model of twins whose id has a prefix, for readings that name no model: e.g. pump-=pump@1,room-=room.")
        registry = try ModelRegistry(directory: directory)
        resolver = try ModelResolver(registry: registry, prefixRules: rules)
        logger.info("twin models loaded", ["directory": .string(directory), "models": .string(registry.models.map(\.description).joined(separator: ","))])
    }
}
