import Contracts
import Foundation
import Kafka
import ServiceKit

/// `twinctl broker`: runs the embedded broker with the platform's topics until SIGTERM/SIGINT.
func runBroker(_ args: Arguments) async throws {
    let signals = SignalListener()
    // More partitions than the platform's 6 let benchmarks hold more data: the mock broker keeps
    // only the last ~5 MiB of each partition.
    let partitions = Int32(try args.int("partitions", default: Int(Topic.partitionCount)))
    let broker = try EmbeddedBroker(brokers: try args.int("brokers-count", default: 1), topics: Topic.allCases.map { ($0.name, partitions) })
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
