import ServiceKit

/// The model catalog a service validates twins against.
/// TODO(models): replaced by the model registry (`MODELS_DIR`) when it lands.
public func loadModelCatalog(_ environment: EnvironmentReader, logger: Logger) throws -> ModelCatalog {
    .permissive
}
