import Foundation
import JSON
import JSONSchema

/// Every twin model a service knows, loaded once at start-up from a directory
/// (`Schemas/models/`). Immutable and `Sendable`; several versions of one model coexist.
///
/// Loading validates each `*.json` file (except `model.schema.json`) against
/// `model.schema.json` (draft 2020-12), then applies the semantic rules (`TwinModel.init`), then
/// checks across files: no duplicate `id@version`, and every relationship target exists. Any
/// problem rejects the whole directory, naming the file and the JSON pointer of each problem:
/// `room.v1.json: /telemetry/temperature/unit: unknown unit "degX"`.
public final class ModelRegistry: Sendable {
    /// The name of the schema file inside a model directory.
    public static let schemaFileName = "model.schema.json"

    /// Every model, sorted by id then version.
    public let models: [TwinModel]
    let byId: [String: [TwinModel]]
    /// `"pump"` (latest) and `"pump@1"` → model: an envelope's `model` text resolves with one lookup.
    let byRefText: [String: TwinModel]

    /// Loads every model file of `directory`. Throws `ModelError`: `.loadFailed` when the directory
    /// or `model.schema.json` cannot be read, else the problems found (one, or `.invalidModels`
    /// listing each).
    public convenience init(directory: String) throws(ModelError) {
        let fm = FileManager.default
        let names: [String]
        do {
            names = try fm.contentsOfDirectory(atPath: directory).sorted()
        } catch {
            throw ModelError(code: .loadFailed, message: "cannot list the model directory \(directory): \(error.localizedDescription)")
        }
        let schemaPath = (directory as NSString).appendingPathComponent(ModelRegistry.schemaFileName)
        guard let schemaData = fm.contents(atPath: schemaPath) else {
            throw ModelError(code: .loadFailed, file: ModelRegistry.schemaFileName,
                             message: "cannot read \(schemaPath): every model directory needs the model schema")
        }
        let schema: CompiledSchema
        do {
            schema = try JSONSchema.compile(try JSON(parsing: schemaData))
        } catch {
            throw ModelError(code: .loadFailed, file: ModelRegistry.schemaFileName, message: "not a usable JSON Schema: \(error)")
        }
        var files: [(name: String, bytes: [UInt8])] = []
        for name in names where name.hasSuffix(".json") && name != ModelRegistry.schemaFileName && !name.hasPrefix(".") {
            let path = (directory as NSString).appendingPathComponent(name)
            guard let data = fm.contents(atPath: path) else {
                throw ModelError(code: .loadFailed, file: name, message: "cannot read \(path)")
            }
            files.append((name, Array(data)))
        }
        try self.init(files: files, schema: schema)
    }

    /// Loads models from in-memory files (name and bytes), validating each against `schema`
    /// (the compiled `model.schema.json`). The same rules and errors as `init(directory:)`.
    public convenience init(files: [(name: String, bytes: [UInt8])], schema: CompiledSchema) throws(ModelError) {
        var problems: [ModelError] = []
        var models: [TwinModel] = []
        for (name, bytes) in files {
            let document: JSON
            do {
                document = try JSON(parsing: bytes)
            } catch {
                problems.append(ModelError(code: .loadFailed, file: name, pointer: "", message: "not valid JSON: \(error)"))
                continue
            }
            let result = schema.validate(document)
            if !result.isValid {
                problems += ModelRegistry.schemaProblems(result.errors, file: name)
                continue
            }
            do {
                models.append(try TwinModel(document: document, file: name))
            } catch {
                problems += error.problems.isEmpty ? [error] : error.problems
            }
        }
        try self.init(models: models, earlierProblems: problems)
    }

    /// A registry of models already built (tests, tools). Checks duplicates and relationship targets.
    public convenience init(models: [TwinModel]) throws(ModelError) {
        try self.init(models: models, earlierProblems: [])
    }

    private init(models: [TwinModel], earlierProblems: [ModelError]) throws(ModelError) {
        var problems = earlierProblems
        var byId: [String: [TwinModel]] = [:]
        for m in models {
            if let other = byId[m.id]?.first(where: { $0.version == m.version }) {
                problems.append(ModelError(code: .invalidModel, file: m.file, pointer: "/version",
                                           message: "\(m.ref) is also defined in \(other.file ?? "another model")"))
                continue
            }
            byId[m.id, default: []].append(m)
        }
        for id in byId.keys { byId[id]!.sort { $0.version < $1.version } }
        for m in models {
            for r in m.relationships {
                guard let versions = byId[r.target.id] else {
                    problems.append(ModelError(code: .invalidModel, file: m.file, pointer: "/relationships/\(JSONPointer.escape(r.name))/target",
                                               message: "relationship \"\(r.name)\" targets model \"\(r.target.id)\", which is not loaded"))
                    continue
                }
                if let v = r.target.version, !versions.contains(where: { $0.version == v }) {
                    problems.append(ModelError(code: .invalidModel, file: m.file, pointer: "/relationships/\(JSONPointer.escape(r.name))/target",
                                               message: "relationship \"\(r.name)\" targets \(r.target), but only versions \(versions.map { String($0.version) }.joined(separator: ", ")) of \(r.target.id) are loaded"))
                }
            }
        }
        switch problems.count {
        case 0: break
        case 1: throw problems[0]
        default:
            let files = Set(problems.compactMap(\.file)).count
            throw ModelError(code: .invalidModels, message: "\(problems.count) problems in \(files) model file\(files == 1 ? "" : "s")",
                             problems: problems)
        }
        var byRefText: [String: TwinModel] = [:]
        for (id, versions) in byId {
            byRefText[id] = versions.last
            for v in versions { byRefText["\(id)@\(v.version)"] = v }
        }
        self.byId = byId
        self.byRefText = byRefText
        self.models = byId.keys.sorted().flatMap { byId[$0]! }
    }

    /// Schema errors as problems: the pointer is the instance location.
    static func schemaProblems(_ errors: [ValidationError], file: String) -> [ModelError] {
        errors.map { ModelError(code: .invalidModel, file: file, pointer: $0.instanceLocation.description, message: $0.message) }
    }

    /// The model `id` at exactly `version`.
    public func model(id: String, version: Int) -> TwinModel? {
        byId[id]?.first { $0.version == version }
    }

    /// The highest loaded version of `id`.
    public func latest(id: String) -> TwinModel? { byId[id]?.last }

    /// The model a reference names (`pump` → latest, `pump@1` → version 1).
    public func model(_ ref: ModelRef) -> TwinModel? {
        if let v = ref.version { return model(id: ref.id, version: v) }
        return latest(id: ref.id)
    }

    /// The model named by reference text (`pump` or `pump@1`) with a single lookup; nil when the
    /// text is malformed or names no loaded model.
    public func model(referencedBy text: String) -> TwinModel? { byRefText[text] }

    /// Every version of `id`, oldest first.
    public func versions(id: String) -> [TwinModel] { byId[id] ?? [] }

    /// The ids of all loaded models, sorted.
    public var ids: [String] { byId.keys.sorted() }
}
