import Contracts
import Foundation
import HTTP
import JSON
import Kafka
import Models
import Views
import TwinQuery
import ServiceKit

/// Where the query API sends commands. `publish` returns once the command is durable (the broker
/// acknowledged it), so a 202 means the state-updater will see it.
public protocol CommandPublisher: Sendable {
    func publish(_ command: TwinCommand, traceparent: String?) async throws(CommandPublishError)
}

public enum CommandPublishError: Error, Sendable {
    /// The producer's queue is full: the client should retry shortly.
    case queueFull
    /// The broker did not take it (timeout, unreachable, fatal error).
    case unavailable(String)
}

/// Publishes commands on `twin.commands.v1`, keyed `tenant/twinId` (the state-updater's partition
/// of that twin), and waits for the delivery report.
public struct KafkaCommandPublisher: CommandPublisher {
    let producer: KafkaProducer

    public init(producer: KafkaProducer) { self.producer = producer }

    public func publish(_ command: TwinCommand, traceparent: String?) async throws(CommandPublishError) {
        try await producer.sendDurably(topic: Topic.twinCommands.name, key: command.key, value: command.encoded(), contract: TwinCommand.contract,
                                       tenant: command.tenant, traceparent: traceparent)
    }
}

extension KafkaProducer {
    /// Sends one message with the platform's headers and waits for the broker: what a 202 of the
    /// API promises. A full queue (after 250 ms) and any other failure become `CommandPublishError`.
    func sendDurably(topic: String, key: String, value: [UInt8], contract: String, tenant: String, traceparent: String?) async throws(CommandPublishError) {
        let headers = [KafkaHeader(MessageHeader.contract, contract), KafkaHeader(MessageHeader.tenant, tenant),
                       KafkaHeader(MessageHeader.traceparent, TraceContext.continuing(traceparent).description)]
        do {
            _ = try await send(OutgoingMessage(topic: topic, key: key, value: value, headers: headers), queueFullTimeout: .milliseconds(250))
        } catch let error as KafkaError where error.isQueueFull {
            throw .queueFull
        } catch {
            throw .unavailable("\(error)")
        }
    }
}

extension QueryAPI {
    // MARK: POST /v1/twins

    func createTwin(_ request: HTTPRequest) async throws -> HTTPResponse {
        let principal = try authorize(request, .write)
        let body = try Self.jsonObject(request, allowed: ["twinId", "model", "metadata", "desired", "parameters"])
        guard let id = body["twinId"]?.stringValue else { throw Self.invalidBody("/twinId", "required: a string") }
        guard TwinID.isValid(id) else { throw Self.invalidBody("/twinId", "twin ids are 1-128 characters of letters, digits and . _ - :") }
        guard let modelText = body["model"]?.stringValue else { throw Self.invalidBody("/model", "required: a model such as pump or pump@1") }
        guard let model = resolveModel(modelText) else {
            throw Self.unprocessable("unknownModel", "no model '\(modelText)' is loaded; GET /v1/models lists them")
        }
        let metadata = try Self.optionalObject(body, "metadata")
        let desired = try Self.optionalObject(body, "desired")
        let parameters = try checkedParameters(body, model: model)
        if views.twins.twin(tenant: principal.tenant, id: id) != nil {
            throw HTTPError(.conflict, code: .init("twinExists"), detail: "twin '\(id)' already exists; PATCH it instead")
        }
        let command = TwinCommand(commandId: Self.newCommandId(), tenant: principal.tenant, twinId: id, kind: .create,
                                  issuedAt: nowMs, issuedBy: principal.keyId, model: model.ref.description,
                                  metadata: metadata.map(JSON.object), desired: desired.map(JSON.object), parameters: parameters)
        return try await submit(command, request)
    }

    // MARK: PATCH /v1/twins/{id}

    func patchTwin(_ request: HTTPRequest) async throws -> HTTPResponse {
        let principal = try authorize(request, .write)
        if let type = request.headers.first("Content-Type")?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased(),
           type != "application/merge-patch+json" && type != "application/json" {
            throw HTTPError(.unsupportedMediaType, code: .init("unsupportedMediaType"),
                            detail: "send a JSON Merge Patch as application/merge-patch+json (or application/json)")
        }
        let twin = try pathTwin(request, principal)
        let ifVersion = try Self.ifVersion(request)
        let body = try Self.jsonObject(request, allowed: ["model", "metadata", "desired", "parameters"])
        guard !body.isEmpty else { throw Self.invalidBody("", "the patch changes nothing") }
        var command = TwinCommand(commandId: Self.newCommandId(), tenant: principal.tenant, twinId: twin.twinId, kind: .patch,
                                  issuedAt: nowMs, ifVersion: ifVersion, issuedBy: principal.keyId)
        if body["parameters"] != nil {
            guard body.count == 1 else {
                throw Self.unprocessable("mixedPatch", "send parameters in a patch of their own (they are a separate command)")
            }
            guard let model = twin.model.flatMap({ models.model(referencedBy: $0) }) else {
                throw Self.unprocessable("unknownModel", "the twin's model \(twin.model ?? "(none)") is not loaded")
            }
            command.kind = .setParameters
            command.parameters = try checkedParameters(body, model: model, allowNull: true)
        } else {
            if let value = body["model"] {
                guard let text = value.stringValue, let model = resolveModel(text) else {
                    throw Self.unprocessable("unknownModel", "no model '\(value.stringValue ?? value.serializedString())' is loaded")
                }
                command.model = model.ref.description
            }
            for field in ["metadata", "desired"] {
                guard let value = body[field] else { continue }
                guard value.objectValue != nil || value.isNull else { throw Self.invalidBody("/\(field)", "expected an object (a merge patch) or null") }
            }
            command.metadata = body["metadata"].map { $0.isNull ? .object([:]) : $0 }
            command.desired = body["desired"].map { $0.isNull ? .object([:]) : $0 }
        }
        return try await submit(command, request)
    }

    // MARK: DELETE /v1/twins/{id}

    func deleteTwin(_ request: HTTPRequest) async throws -> HTTPResponse {
        let principal = try authorize(request, .write)
        let twin = try pathTwin(request, principal)
        let command = TwinCommand(commandId: Self.newCommandId(), tenant: principal.tenant, twinId: twin.twinId, kind: .decommission,
                                  issuedAt: nowMs, ifVersion: try Self.ifVersion(request), issuedBy: principal.keyId)
        return try await submit(command, request)
    }

    // MARK: PUT/DELETE /v1/twins/{id}/relationships/{rel}/{target}

    func relate(_ request: HTTPRequest) async throws -> HTTPResponse {
        let principal = try authorize(request, .write)
        let twin = try pathTwin(request, principal)
        let (name, targetId) = try relationshipPath(request)
        guard let target = views.twins.twin(tenant: principal.tenant, id: targetId) else {
            throw HTTPError(.notFound, code: .init("targetNotFound"), detail: "no twin '\(targetId)' to relate to")
        }
        if let model = twin.model.flatMap({ models.model(referencedBy: $0) }) {
            guard let declared = model.relationships.first(where: { $0.name == name }) else {
                let known = model.relationships.map(\.name).joined(separator: ", ")
                throw Self.unprocessable("unknownRelationship", "model \(model.ref) declares no relationship '\(name)'" + (known.isEmpty ? "" : "; it declares: \(known)"))
            }
            if let targetModel = target.model.flatMap(ModelRef.parse),
               declared.target.id != "*" && (declared.target.id != targetModel.id || (declared.target.version.map { $0 != targetModel.version } ?? false)) {
                throw Self.unprocessable("wrongTargetModel", "'\(name)' must point at a \(declared.target) twin; '\(targetId)' is a \(target.model ?? "twin of unknown model")")
            }
        }
        let command = TwinCommand(commandId: Self.newCommandId(), tenant: principal.tenant, twinId: twin.twinId, kind: .relate,
                                  issuedAt: nowMs, ifVersion: try Self.ifVersion(request), issuedBy: principal.keyId,
                                  relationship: .init(name: name, target: targetId, targetModel: target.model))
        return try await submit(command, request)
    }

    func unrelate(_ request: HTTPRequest) async throws -> HTTPResponse {
        let principal = try authorize(request, .write)
        let twin = try pathTwin(request, principal)
        let (name, targetId) = try relationshipPath(request)
        guard twin.relationships.contains(where: { $0.name == name && $0.target == targetId }) else {
            throw HTTPError(.notFound, code: .init("relationshipNotFound"), detail: "'\(twin.twinId)' has no relationship '\(name)' to '\(targetId)'")
        }
        let command = TwinCommand(commandId: Self.newCommandId(), tenant: principal.tenant, twinId: twin.twinId, kind: .unrelate,
                                  issuedAt: nowMs, ifVersion: try Self.ifVersion(request), issuedBy: principal.keyId,
                                  relationship: .init(name: name, target: targetId))
        return try await submit(command, request)
    }

    private func relationshipPath(_ request: HTTPRequest) throws(HTTPError) -> (String, String) {
        let name = request.parameter("rel") ?? ""
        guard ModelRef.isValidId(name) else {
            throw HTTPError(.badRequest, code: .init("invalidRelationship"), detail: "relationship names are letters, digits, _ and -")
        }
        return (name, try pathTwinId(request, "target"))
    }

    // MARK: Publishing

    /// Publishes the command, records it as pending and answers 202 with where to poll.
    func submit(_ command: TwinCommand, _ request: HTTPRequest) async throws -> HTTPResponse {
        do {
            try await publisher.publish(command, traceparent: request.headers.first(MessageHeader.traceparent))
        } catch {
            throw Self.publishProblem(error, "command")
        }
        views.commands.issued(command)
        let location = "/v1/commands/\(command.commandId)"
        var w = JSONWriter(capacity: 256)
        w.beginObject()
        w.field("commandId", command.commandId)
        w.field("twinId", command.twinId)
        w.field("kind", command.kind.rawValue)
        w.field("status", "pending")
        w.field("location", location)
        w.endObject()
        return .json(w.bytes, status: .accepted, headers: ["Location": location])
    }

    /// The 503 answer when a command, simulation request or cancel could not be made durable.
    static func publishProblem(_ error: CommandPublishError, _ what: String) -> HTTPError {
        switch error {
        case .queueFull:
            HTTPError(HTTPStatus(code: 503), code: .init("queueFull"), detail: "too many \(what)s in flight; retry shortly", headers: ["Retry-After": "1"])
        case .unavailable(let detail):
            HTTPError(HTTPStatus(code: 503), code: .init("brokerUnavailable"), detail: "the \(what) could not be made durable: \(detail)", headers: ["Retry-After": "5"])
        }
    }

    static func newCommandId() -> String { "cmd-" + UUID().uuidString.lowercased() }

    // MARK: Request bodies and headers

    /// `If-Match: "5"` (or `W/"5"`, or a bare 5) → 5; `*` or no header → nil.
    static func ifVersion(_ request: HTTPRequest) throws(HTTPError) -> Int64? {
        let values = request.headers.values(for: "If-Match")
        guard let raw = values.first else { return nil }
        guard values.count == 1 else { throw HTTPError(.badRequest, code: .init("invalidIfMatch"), detail: "send one If-Match header") }
        var text = Substring(raw.trimmingCharacters(in: .whitespaces))
        if text == "*" { return nil }
        if text.hasPrefix("W/") { text = text.dropFirst(2) }
        if text.hasPrefix("\"") && text.hasSuffix("\"") && text.count >= 2 { text = text.dropFirst().dropLast() }
        guard let version = Int64(text), version >= 0 else {
            throw HTTPError(.badRequest, code: .init("invalidIfMatch"), detail: "If-Match must be a version ETag such as \"12\", got \(raw)")
        }
        return version
    }

    static func jsonObject(_ request: HTTPRequest, allowed: Set<String>) throws(HTTPError) -> JSONObject {
        guard !request.body.isEmpty else { throw invalidBody("", "a JSON object is required") }
        let json: JSON
        do {
            json = try JSON(parsing: request.body)
        } catch {
            throw invalidBody("", "not JSON: \(error)")
        }
        guard let object = json.objectValue else { throw invalidBody("", "expected a JSON object, got \(json.typeName)") }
        if let unknown = object.keys.first(where: { !allowed.contains($0) }) {
            throw invalidBody("/\(JSONPointer.escape(unknown))", "unknown member; allowed: \(allowed.sorted().joined(separator: ", "))")
        }
        return object
    }

    static func optionalObject(_ body: JSONObject, _ name: String) throws(HTTPError) -> JSONObject? {
        guard let value = body[name] else { return nil }
        guard let object = value.objectValue else { throw invalidBody("/\(name)", "expected an object") }
        return object
    }

    /// `parameters` checked against the model: known names, numbers (or null to reset, in a patch).
    func checkedParameters(_ body: JSONObject, model: TwinModel, allowNull: Bool = false) throws(HTTPError) -> JSONObject? {
        guard let parameters = try Self.optionalObject(body, "parameters") else { return nil }
        for (name, value) in parameters {
            guard let parameter = model.parameter(named: name) else {
                let known = model.parameters.map(\.name).joined(separator: ", ")
                throw Self.unprocessable("unknownParameter", "model \(model.ref) has no parameter '\(name)'" + (known.isEmpty ? "" : "; it has: \(known)"))
            }
            if value.isNull && allowNull { continue }
            guard let number = value.doubleValue else { throw Self.invalidBody("/parameters/\(JSONPointer.escape(name))", "expected a number") }
            if let min = parameter.minimum, number < min { throw Self.unprocessable("parameterOutOfRange", "\(name) must be at least \(min)") }
            if let max = parameter.maximum, number > max { throw Self.unprocessable("parameterOutOfRange", "\(name) must be at most \(max)") }
        }
        return parameters
    }

    static func invalidBody(_ pointer: String, _ detail: String) -> HTTPError {
        var error = HTTPError(.badRequest, code: .init("invalidBody"), detail: pointer.isEmpty ? detail : "\(pointer): \(detail)")
        error.extensions = [("pointer", .string(pointer))]
        return error
    }

    static func unprocessable(_ code: String, _ detail: String) -> HTTPError {
        HTTPError(.unprocessableContent, code: .init(code), detail: detail)
    }
}
