import Models
import TwinQuery

// Read-path and validation benchmarks (not run in CI):
//   swift build -c release --product QueryBench && .build/release/QueryBench [twins]
// 1. a compound filter over N twins, and a first page (filter, count, top 100 by -temperature);
// 2. model checks per second of a pump reading with one unit conversion, on one core.

let twins = CommandLine.arguments.dropFirst().first.flatMap(Int.init) ?? 100_000
let filter = runFilterBenchmark(twins: twins)
print(String(format: "filter over %d twins: %.1f ms per pass (%d matched); first page: %.1f ms", filter.twins, filter.perQueryMs, filter.matched, filter.perPageMs))
let checks = runModelCheckBenchmark(registryDirectory: "Schemas/models", iterations: 2_000_000)
print(String(format: "model check (pump reading, one °F conversion): %.0f checks/s", checks))

// 3. GET /v1/twins?filter=... through the query API's router (no sockets): the view snapshot,
//    filter, page and JSON rendering of 100 twins, as the service answers it.
let apiMs = await runListBenchmark(twins: twins)
print(String(format: "GET /v1/twins?filter=temperature>80 and model=pump&limit=100 over %d twins: %.1f ms (best of 7), %.1f ms (median)", twins, apiMs.best, apiMs.median))
