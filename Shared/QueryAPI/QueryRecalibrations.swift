import Contracts
import HTTP
import JSON
import Simulator
import Views

/// `POST /v1/twins/{id}/recalibrations {"simulationId": "..."}`: an operator applies a
/// calibration (the drift monitor's proposal in `suggest` mode, or any calibration of the twin)
/// with one call. The API reads the result from its simulation view, checks it by the monitor's
/// rule (`CalibrationVerdict`: converged, RMS down by `RECALIBRATE_MIN_GAIN`, parameters in the
/// model's range) and sends `setParameters` whose cause is the simulation id, so the twin's
/// change shows why its parameters moved.
extension QueryAPI {
    func registerRecalibrations(on router: inout Router) {
        router.post("/v1/twins/{id}/recalibrations", maxBodySize: configuration.maxBodyBytes) { [self] in try await recalibrate($0) }
    }

    func recalibrate(_ request: HTTPRequest) async throws -> HTTPResponse {
        let principal = try authorize(request, .write)
        let twin = try pathTwin(request, principal)
        let body = try Self.jsonObject(request, allowed: ["simulationId"])
        guard let id = body["simulationId"]?.stringValue else { throw Self.invalidBody("/simulationId", "name the calibration: {\"simulationId\": \"...\"}") }
        guard SimulationIDs.isValid(id) else { throw Self.invalidBody("/simulationId", "simulation ids are 1-128 characters of letters, digits and . _ - :") }
        guard let entry = views.simulations.entry(tenant: principal.tenant, simulationId: id) else {
            throw HTTPError(.notFound, code: .init("simulationNotFound"), detail: "no simulation '\(id)' is known (or it is older than the retained window)")
        }
        guard entry.twinId == twin.twinId else {
            throw Self.unprocessable("wrongTwin", "simulation \(id) calibrated twin \(entry.twinId), not \(twin.twinId)")
        }
        guard entry.kind == SimulationSpec.Kind.calibrate.rawValue else {
            throw Self.unprocessable("notACalibration", "simulation \(id) is a \(entry.kind ?? "simulation"), not a calibration")
        }
        guard entry.isFinal else {
            throw HTTPError(.conflict, code: .init("simulationNotFinished"), detail: "simulation \(id) is \(entry.status); apply it once it has completed",
                            headers: ["Retry-After": "5"])
        }
        guard let document = entry.document, let result = try? SimulationResult(bytes: document) else {
            throw Self.unprocessable("simulationFailed", "simulation \(id) ended \(entry.status)" + (entry.reason.map { ": \($0.message)" } ?? ""))
        }
        guard let model = (result.model ?? twin.model).flatMap({ models.model(referencedBy: $0) }), twin.model == model.description else {
            throw Self.unprocessable("modelChanged", "simulation \(id) calibrated model \(result.model ?? "?"), the twin now has \(twin.model ?? "none")")
        }
        let verdict = CalibrationVerdict.judgeAll(result, model: model, minGain: configuration.recalibrateMinGain)
        switch verdict {
        case .better: break
        case .notImproved(let reason, let message):
            throw Self.unprocessable(reason == "not_converged" ? "notConverged" : "notImproved", "simulation \(id) is not applied: \(message)")
        case .outOfRange(let message):
            throw Self.unprocessable("outOfRange", "simulation \(id) is not applied: \(message)")
        case .failed(_, let message):
            throw Self.unprocessable("simulationFailed", "simulation \(id) is not applied: \(message)")
        }
        var parameters: JSONObject = [:]
        for (name, value) in (result.fit?.parameters ?? [:]).sorted(by: { $0.key < $1.key }) { parameters[name] = .double(value) }
        let command = TwinCommand(commandId: Self.newCommandId(), tenant: principal.tenant, twinId: twin.twinId, kind: .setParameters,
                                  issuedAt: nowMs, issuedBy: principal.keyId, parameters: parameters, cause: id)
        return try await submit(command, request)
    }
}
