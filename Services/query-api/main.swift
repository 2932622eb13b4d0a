import Contracts
import HTTP
import Pipeline
import ServiceKit

// query-api: materialises twin.state.v1 and serves GET /v1/twins/{id}.
await ServiceRuntime.main(name: "query-api", defaultHTTPPort: 8080) { context, routes in
    let maxTwins = try context.environment.int("VIEW_MAX_TWINS", default: 1_000_000, range: 1...100_000_000,
                                               doc: "Twins the query view holds.")
    let view = TwinView(maxTwins: maxTwins)
    let defaultTenant = context.defaultTenant
    routes.get("/v1/twins/{id}") { request in
        let id = request.parameter("id") ?? ""
        // Tenant from the API key arrives with the query-API issue; until then `?tenant=` or the default.
        let tenant = request.queryParameters["tenant"] ?? defaultTenant
        guard TwinID.isValid(id) else {
            return .problem(.badRequest, title: "invalid twin id", detail: "twin ids are 1-128 characters of letters, digits and . _ - :",
                            extensions: [("requestId", .string(request.requestID))])
        }
        guard let entry = view.twin(tenant: tenant, id: id) else {
            return .problem(.notFound, title: "twin not found", detail: "no twin '\(id)'", extensions: [("requestId", .string(request.requestID))])
        }
        return .json(entry.document, headers: ["ETag": "\"\(entry.version)\""])
    }
    context.metrics.gauge("twinstream_view_twins", help: "Twins held in the query view.") { Double(view.count) }
    return try StateTopicFollower(context: context, purpose: "view", apply: view.apply)
}
