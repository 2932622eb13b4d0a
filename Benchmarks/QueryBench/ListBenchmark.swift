import Contracts
import HTTP
import Models
import TwinQuery
import QueryAPI
import Views
import ServiceKit

struct NoPublisher: CommandPublisher {
    func publish(_ command: TwinCommand, traceparent: String?) async throws(CommandPublishError) {}
}

/// Best and median milliseconds of the list route over `twins` synthetic twins.
func runListBenchmark(twins: Int, rounds: Int = 7) async -> (best: Double, median: Double) {
    let views = QueryViews()
    for twin in benchmarkTwins(twins) { views.twins.apply(twin.state) }
    let models = try! ModelRegistry(directory: "Schemas/models")
    let api = QueryAPI(views: views, models: models, auth: .disabled(tenant: "default"), publisher: NoPublisher())
    var router = Router()
    api.register(on: &router)
    let request = HTTPRequest(method: .get, target: "/v1/twins?filter=temperature%3E80%20and%20model%3Dpump&limit=100")
    let clock = ContinuousClock()
    var times: [Double] = []
    for _ in 0..<rounds {
        var status = 0
        let t = await clock.measure { status = await router.respond(to: request).status.code }
        precondition(status == 200)
        times.append(Double(t.components.seconds) * 1_000 + Double(t.components.attoseconds) / 1e15)
    }
    times.sort()
    return (times[0], times[times.count / 2])
}

