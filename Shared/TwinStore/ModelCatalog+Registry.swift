import Models

extension ModelCatalog {
    /// The catalog of a loaded registry: references resolve to `id@version` (`pump` to its
    /// latest version), relationships and parameters are those the model declares.
    public init(registry: ModelRegistry) {
        self.init(
            resolve: { ref in registry.model(referencedBy: ref)?.description },
            relationshipTarget: { model, name in
                registry.model(referencedBy: model)?.relationships.first { $0.name == name }?.target.id
            },
            hasParameter: { model, name in registry.model(referencedBy: model)?.parameter(named: name) != nil },
            unit: { model, name in registry.model(referencedBy: model)?.telemetry(named: name)?.unit },
            requiredTelemetry: { model in registry.model(referencedBy: model)?.requiredTelemetry ?? [] })
    }
}
