import Foundation
import HTTP
import JSON

/// `twinctl simulate TWIN --kind forecast --horizon 24h [--step 1m] [--what-if tau=9000]...
/// [--samples N --uncertain tau=normal:7200:600]... [--threshold temperature>24] [--sweep P=0,500,1000]...
/// [--fit tau,C] [--seed N] [--svg out.svg] [--api URL] [--key KEY]`: submits a simulation through
/// the query API, shows its progress, prints a summary and writes an SVG chart.
func runSimulate(_ args: Arguments) async throws {
    guard let twinId = args.positionals.dropFirst().first else { throw UsageError("simulate needs a twin id") }
    let api = try APIEndpoint(args)
    let twin = try await api.json(.get, "/v1/twins/\(twinId)")
    guard let modelRef = twin["model"]?.stringValue else { throw UsageError("twin \(twinId) has no model") }
    let model = try await api.json(.get, "/v1/models/\(modelRef)")
    let body = try simulationBody(args, model: model)
    let posted = try await api.json(.post, "/v1/twins/\(twinId)/simulations", body: body)
    guard let location = posted["location"]?.stringValue, let id = posted["simulationId"]?.stringValue else {
        throw UsageError("unexpected answer: \(posted)")
    }
    printNow("\(id): \(body["kind"]?.stringValue ?? "") of \(twinId) (\(modelRef)) submitted" + (posted["historyPoints"]?.intValue.map { ", \($0) history points" } ?? ""))
    var result = JSON.null
    var lastStatus = ""
    while true {
        result = try await api.json(.get, location)
        let status = result["status"]?.stringValue ?? "?"
        if status == "running", let p = result["progress"]?.doubleValue {
            print("\r  running \(Int((p * 100).rounded()))%   ", terminator: "")
            fflush(nil)
        } else if status != lastStatus {
            if lastStatus == "running" { print("") }
            printNow("  \(status)")
        }
        lastStatus = status
        if ["completed", "failed", "cancelled", "refused"].contains(status) { break }
        try await Task.sleep(for: .milliseconds(250))
    }
    if lastStatus == "running" { print("") }
    printSimulationSummary(result)
    if let path = args.string("svg") {
        guard result["status"]?.stringValue == "completed" else { throw UsageError("no chart: the simulation did not complete") }
        let svg = SimulationChart.svg(result, title: "\(twinId) — \(result["kind"]?.stringValue ?? "") (\(modelRef))")
        try Data(svg.utf8).write(to: URL(fileURLWithPath: path))
        printNow("chart: \(path)")
    }
    if result["status"]?.stringValue != "completed" { exit(1) }
}

/// The query API's address and key: `--api` (default: the address a running `twinctl up` recorded
/// in `.twinstream/state/api`, else http://127.0.0.1:8080) and `--key` (default
/// `$TWINSTREAM_API_KEY`, else the key `twinctl up` keeps in `.twinstream/state/local-api-key`).
struct APIEndpoint {
    let client: HTTPClient
    let key: String?
    /// The URL and where it came from, for the error when nothing answers there.
    let address: String

    init(_ args: Arguments) throws {
        let record = LocalStackRecord(args)
        let recorded = record.read(record.apiFile)
        let text = args.string("api") ?? recorded ?? "http://127.0.0.1:8080"
        address = text + (args.string("api") != nil ? " (--api)" : recorded != nil ? " (recorded by twinctl up in \(record.apiFile.path))" : " (the default)")
        guard let url = URL(string: text), url.scheme == "http", let host = url.host else { throw UsageError("--api expects http://HOST:PORT") }
        client = HTTPClient(host: host, port: url.port ?? 80, timeout: .seconds(30))
        key = args.string("key") ?? ProcessInfo.processInfo.environment["TWINSTREAM_API_KEY"] ?? record.read(record.keyFile)
    }

    /// Sends a request and returns its JSON answer; a problem answer becomes an error with its detail.
    func json(_ method: HTTPMethod, _ target: String, body: JSON? = nil) async throws -> JSON {
        var headers: HTTPHeaders = [:]
        if let key { headers.set("Authorization", "Bearer \(key)") }
        if body != nil { headers.set("Content-Type", "application/json") }
        let response: HTTPClient.Response
        do {
            response = try await client.send(method, target, headers: headers, body: body.map { Array($0.serializedString().utf8) } ?? [])
        } catch {
            throw CommandFailure("nothing answers at \(address): \(error). Start the local stack with `twinctl up` "
                + "(commands run from the same directory find it), or give the query API's URL with --api http://HOST:PORT")
        }
        let json = (try? JSON(parsing: response.body)) ?? .null
        if response.status.code == 401 {
            throw CommandFailure("\(method.rawValue) \(target): 401: \(key == nil ? "no API key" : "the API key is not accepted") — give one with --key KEY "
                + "or TWINSTREAM_API_KEY (twinctl up keeps its own in .twinstream/state/local-api-key; --state-dir DIR for another)")
        }
        guard (200..<300).contains(response.status.code) else {
            throw APIError(description: "\(method.rawValue) \(target): \(response.status.code) \(json["code"]?.stringValue ?? ""): \(json["detail"]?.stringValue ?? response.text)")
        }
        return json
    }
}

/// An answer of the API that is not a success (printed without the usage text).
struct APIError: Error, CustomStringConvertible {
    let description: String
}

/// The request body from the options; `--what-if name=value` goes to parameters, inputs or
/// initial states by what the model says the name is.
func simulationBody(_ args: Arguments, model: JSON) throws -> JSON {
    var kind = args.string("kind") ?? "forecast"
    var body = JSONObject()
    let parameterNames = Set(model["parameters"]?.objectValue?.keys ?? [])
    let behaviour = model["behaviour"]
    let states = Set(behaviour?["states"]?.objectValue?.keys ?? [])
    var inputs = Set(behaviour?["inputs"]?.objectValue?.keys ?? [])
    for (_, input) in behaviour?["inputs"]?.objectValue ?? [:] { if let t = input["telemetry"]?.stringValue { inputs.insert(t) } }
    var parameters = JSONObject(), inputValues = JSONObject(), initial = JSONObject()
    for item in args.strings("what-if") {
        let (name, text) = try pair(item, "--what-if")
        guard let value = Double(text) else { throw UsageError("--what-if \(item): expected name=number") }
        if parameterNames.contains(name) { parameters[name] = .double(value) } else if inputs.contains(name) { inputValues[name] = .double(value) }
        else if states.contains(name) { initial[name] = .double(value) } else {
            throw UsageError("--what-if \(name): not a parameter, input or state of the model (parameters: \(parameterNames.sorted().joined(separator: ", ")); inputs: \(inputs.sorted().joined(separator: ", ")); states: \(states.sorted().joined(separator: ", ")))")
        }
    }
    if kind == "forecast" && !args.strings("what-if").isEmpty { kind = "whatIf" }
    if args.string("samples") != nil && args.string("kind") == nil { kind = "monteCarlo" }
    if !args.strings("sweep").isEmpty && args.string("kind") == nil { kind = "sweep" }
    body["kind"] = .string(kind)
    if kind != "calibrate" { body["horizon"] = .string(args.string("horizon") ?? "24h") }
    if let step = args.string("step") { body["step"] = .string(step) }
    if !parameters.isEmpty { body["parameters"] = .object(parameters) }
    if !inputValues.isEmpty { body["inputs"] = .object(inputValues) }
    if !initial.isEmpty { body["initial"] = .object(initial) }
    if let samples = args.string("samples") {
        guard let n = Int(samples) else { throw UsageError("--samples expects a whole number") }
        body["samples"] = .int(n)
    }
    if let seed = args.string("seed") {
        guard let n = Int(seed) else { throw UsageError("--seed expects a whole number") }
        body["seed"] = .int(n)
    }
    var uncertain = JSONObject()
    for item in args.strings("uncertain") {
        let (name, spec) = try pair(item, "--uncertain")
        let parts = spec.split(separator: ":").map(String.init)
        guard parts.count == 3, ["normal", "uniform", "lognormal"].contains(parts[0]), let a = Double(parts[1]), let b = Double(parts[2]) else {
            throw UsageError("--uncertain \(item): expected name=normal:MEAN:SD, name=uniform:LOW:HIGH or name=lognormal:MU:SIGMA")
        }
        uncertain[name] = .object([parts[0]: .array([.double(a), .double(b)])])
    }
    if !uncertain.isEmpty { body["uncertain"] = .object(uncertain) }
    if kind == "monteCarlo" && uncertain.isEmpty {
        // Without --uncertain: ±10 % (1 sd) on every parameter named in --what-if, else on each parameter.
        let names = parameters.isEmpty ? Array(parameterNames).sorted() : parameters.keys.sorted()
        for name in names {
            let mean = parameters[name]?.doubleValue ?? model["parameters"]?[name]?["default"]?.doubleValue ?? 0
            uncertain[name] = .object(["normal": .array([.double(mean), .double(abs(mean) * 0.1)])])
        }
        body["uncertain"] = .object(uncertain)
    }
    if let text = args.string("threshold") {
        let op: Character = text.contains(">") ? ">" : "<"
        let parts = text.split(separator: op, maxSplits: 1).map(String.init)
        guard parts.count == 2, let level = Double(parts[1]) else { throw UsageError("--threshold expects series>LEVEL or series<LEVEL") }
        body["threshold"] = .object(["series": .string(parts[0]), (op == ">" ? "above" : "below"): .double(level)])
    }
    var sweep = JSONObject()
    for item in args.strings("sweep") {
        let (name, list) = try pair(item, "--sweep")
        let values = list.split(separator: ",").compactMap { Double($0) }
        guard !values.isEmpty else { throw UsageError("--sweep \(item): expected name=v1,v2,...") }
        sweep[name] = .array(values.map { .double($0) })
    }
    if !sweep.isEmpty { body["sweep"] = .object(sweep) }
    if let fit = args.string("fit") { body["fit"] = .array(fit.split(separator: ",").map { .string(String($0)) }) }
    if let series = args.string("series") { body["series"] = .array(series.split(separator: ",").map { .string(String($0)) }) }
    return .object(body)
}

private func pair(_ item: String, _ option: String) throws -> (String, String) {
    guard let eq = item.firstIndex(of: "=") else { throw UsageError("\(option) \(item): expected name=value") }
    return (String(item[..<eq]), String(item[item.index(after: eq)...]))
}

/// A compact summary of a finished simulation.
func printSimulationSummary(_ r: JSON) {
    let status = r["status"]?.stringValue ?? "?"
    if let reason = r["reason"] {
        printNow("\(status): \(reason["code"]?.stringValue ?? "") \(reason["pointer"]?.stringValue.map { "at \($0) " } ?? "")— \(reason["message"]?.stringValue ?? "")")
        return
    }
    guard status == "completed" else { return }
    let times = r["times"]?.arrayValue?.compactMap(\.doubleValue) ?? []
    if let horizon = times.last { printNow("horizon \(formatDuration(horizon)), \(times.count) points" + (r["timings"]?["runSeconds"]?.doubleValue.map { String(format: ", computed in %.3f s", $0) } ?? "")) }
    if let bands = r["bands"]?.objectValue {
        for (name, band) in bands {
            let p5 = band["p5"]?.arrayValue?.last?.doubleValue ?? .nan, p50 = band["p50"]?.arrayValue?.last?.doubleValue ?? .nan
            let p95 = band["p95"]?.arrayValue?.last?.doubleValue ?? .nan
            printNow(String(format: "  %@ at the horizon: p5 %.3f  p50 %.3f  p95 %.3f", name, p5, p50, p95))
        }
        if let p = r["probability"], let t = r["threshold"] {
            let level = t["above"]?.doubleValue ?? t["below"]?.doubleValue ?? .nan
            printNow(String(format: "  P(%@ %@ %g within the horizon) = %.3f  (95%% interval %.3f–%.3f, %d samples, %d redraws)",
                            t["series"]?.stringValue ?? "", t["above"] != nil ? ">" : "<", level, p["value"]?.doubleValue ?? .nan,
                            p["low"]?.doubleValue ?? .nan, p["high"]?.doubleValue ?? .nan, r["samples"]?.intValue ?? 0, r["redraws"]?.intValue ?? 0))
        }
    } else if let series = r["series"]?.objectValue {
        for (name, values) in series {
            let v = values.arrayValue?.compactMap(\.doubleValue) ?? []
            guard let first = v.first, let last = v.last else { continue }
            printNow(String(format: "  %@: %.3f → %.3f  (min %.3f, max %.3f)", name, first, last, v.min()!, v.max()!))
        }
    }
    if let points = r["points"]?.arrayValue {
        printNow("  \(r["quantity"]?.stringValue ?? "") per point: final / min / max" + (r["threshold"] != nil ? " / seconds beyond the threshold" : ""))
        for p in points {
            let coordinates = (p["coordinates"]?.objectValue ?? [:]).map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            var line = String(format: "    %@: %.3f / %.3f / %.3f", coordinates, p["final"]?.doubleValue ?? .nan, p["minimum"]?.doubleValue ?? .nan, p["maximum"]?.doubleValue ?? .nan)
            if let s = p["secondsBeyond"]?.doubleValue { line += String(format: " / %.0f s", s) }
            printNow(line)
        }
    }
    if let fit = r["fit"] {
        for (name, value) in fit["parameters"]?.objectValue ?? [:] {
            let se = fit["standardErrors"]?[name]?.doubleValue
            printNow("  \(name) = \(value)" + (se.map { String(format: " ± %.4g", $0) } ?? "") + "  (was \(r["parameters"]?[name]?.doubleValue.map { String($0) } ?? "?"))")
        }
        for (name, before) in fit["rmsBefore"]?.objectValue ?? [:] {
            printNow(String(format: "  %@ RMS %.4g → %.4g (noise %.4g)", name, before.doubleValue ?? .nan, fit["rmsAfter"]?[name]?.doubleValue ?? .nan, fit["noise"]?[name]?.doubleValue ?? .nan))
        }
        printNow("  \(fit["points"]?.intValue ?? 0) points, \(fit["iterations"]?.intValue ?? 0) iterations, converged \(fit["converged"]?.boolValue ?? false), improved \(fit["improved"]?.boolValue ?? false): \(fit["message"]?.stringValue ?? "")")
    }
}

func formatDuration(_ seconds: Double) -> String {
    if seconds >= 3600, seconds.truncatingRemainder(dividingBy: 3600) == 0 { return "\(Int(seconds / 3600))h" }
    if seconds >= 60, seconds.truncatingRemainder(dividingBy: 60) == 0 { return "\(Int(seconds / 60))m" }
    return "\(seconds)s"
}
