/// Twin models: see `Schemas/models/`. (Filled in by the ingestion/validation issue.)
public enum Models {}
