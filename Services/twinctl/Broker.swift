import Contracts
import Foundation
import HTTP
import Kafka
import ServiceKit

/// `twinctl broker`: runs the embedded broker with the platform's topics until SIGTERM/SIGINT.
/// With `--admin-port P` it also answers fault-injection requests on 127.0.0.1:P (see
/// `brokerAdminRouter`), so tests and operators can fail the broker under a whole running stack.
func runBroker(_ args: Arguments) async throws {
    let signals = SignalListener()
    // More partitions than the platform's 6 let benchmarks hold more data: the mock broker keeps
    // only the last ~5 MiB of each partition.
    let partitions = Int32(try args.int("partitions", default: Int(Topic.partitionCount)))
    let broker = try EmbeddedBroker(brokers: try args.int("brokers-count", default: 1), topics: Topic.allCases.map { ($0.name, partitions) },
                                    debug: args.string("debug"))
    for extra in args.strings("topic") {
        let parts = extra.split(separator: ":")
        guard let name = parts.first, let partitions = parts.count > 1 ? Int32(parts[1]) : Topic.partitionCount else {
            throw UsageError("--topic expects NAME[:PARTITIONS], got '\(extra)'")
        }
        try broker.createTopic(String(name), partitions: partitions)
    }
    var admin: HTTPServer?
    if args.string("admin-port") != nil {
        let server = HTTPServer(configuration: .init(host: "127.0.0.1", port: try args.int("admin-port", default: 0)), router: brokerAdminRouter(broker))
        let port: Int
        do { port = try server.start() } catch { throw CommandFailure("cannot listen on the admin port: \(error)") }
        admin = server
        printNow("admin=http://127.0.0.1:\(port)")
    }
    // The KAFKA_* settings `twinctl up` gives its services for this broker, one `client NAME=VALUE`
    // line each, so scripts that start services themselves (Benchmarks/e2e) run them the same way.
    for (property, value) in EmbeddedBroker.clientProperties.sorted(by: { $0.key < $1.key }) {
        printNow("client \(EnvironmentReader.kafkaVariable(forProperty: property))=\(value)")
    }
    printNow("bootstrap.servers=\(broker.bootstrapServers)")
    printError("embedded broker running; topics: \(Topic.allCases.map(\.name).joined(separator: ", ")). Ctrl-C stops it.")
    for await signal in signals.signals where signal.requestsShutdown { break }
    await admin?.shutdown(gracePeriod: .seconds(1))
    broker.shutdown()
}

/// The broker's fault-injection routes (loopback only; a test tool, no authentication):
/// - `POST /down[?broker=N]`: broker N (1-based), or every broker, closes its connections and
///   refuses new ones — clients see the cluster away, as in a network partition;
/// - `POST /up[?broker=N]`: brings it (or them) back;
/// - `POST /errors?request=KIND&errors=CODE,CODE`: the next requests of KIND (`Produce`, `Fetch`,
///   `OffsetCommit`, `FindCoordinator`, `JoinGroup`, `Heartbeat`, … or the protocol's number) fail
///   with the librdkafka error names given, one per request, in order (e.g. `REQUEST_TIMED_OUT`,
///   `NOT_LEADER_FOR_PARTITION`, `NOT_COORDINATOR`).
/// Each answers 204, or 400 with a problem saying what was wrong.
func brokerAdminRouter(_ broker: EmbeddedBroker) -> Router {
    var router = Router()
    @Sendable func brokers(_ request: HTTPRequest) -> [Int32]? {
        guard let text = request.queryParameters["broker"] else { return Array(1...max(1, broker.brokerCount)) }
        guard let id = Int32(text), (1...broker.brokerCount).contains(id) else { return nil }
        return [id]
    }
    @Sendable func badBroker() -> HTTPResponse {
        .problem(HTTPStatus(code: 400), title: "no such broker", detail: "broker= takes an id from 1 to \(broker.brokerCount), or leave it out for every broker")
    }
    router.post("/down") { request in
        guard let ids = brokers(request) else { return badBroker() }
        for id in ids { broker.setBrokerDown(id) }
        return .empty()
    }
    router.post("/up") { request in
        guard let ids = brokers(request) else { return badBroker() }
        for id in ids { broker.setBrokerUp(id) }
        return .empty()
    }
    router.post("/errors") { request in
        let kind = request.queryParameters["request"] ?? ""
        guard let apiKey = EmbeddedBroker.requestKinds[kind] ?? Int16(kind) else {
            return .problem(HTTPStatus(code: 400), title: "unknown request kind",
                            detail: "request= takes one of \(EmbeddedBroker.requestKinds.keys.sorted().joined(separator: ", ")) or a protocol API key number")
        }
        let errors = (request.queryParameters["errors"] ?? "").split(separator: ",").map(String.init)
        do {
            try broker.pushRequestErrors(apiKey: apiKey, errors)
        } catch {
            return .problem(HTTPStatus(code: 400), title: "unknown error name", detail: "\(error); errors= takes librdkafka error names such as REQUEST_TIMED_OUT,NOT_LEADER_FOR_PARTITION")
        }
        return .empty()
    }
    return router
}
