import Contracts
import Foundation
import Kafka
import ServiceKit

/// `twinctl broker`: runs the embedded broker with the platform's topics until SIGTERM/SIGINT.
func runBroker(_ args: Arguments) async throws {
    let signals = SignalListener()
    let broker = try EmbeddedBroker(brokers: try args.int("brokers-count", default: 1), topics: Topic.all)
    for extra in args.strings("topic") {
        let parts = extra.split(separator: ":")
        guard let name = parts.first, let partitions = parts.count > 1 ? Int32(parts[1]) : Topic.partitionCount else {
            throw UsageError("--topic expects NAME[:PARTITIONS], got '\(extra)'")
        }
        try broker.createTopic(String(name), partitions: partitions)
    }
    printNow("bootstrap.servers=\(broker.bootstrapServers)")
    printError("embedded broker running; topics: \(Topic.allCases.map(\.name).joined(separator: ", ")). Ctrl-C stops it.")
    for await signal in signals.signals where signal.requestsShutdown { break }
    broker.shutdown()
}
