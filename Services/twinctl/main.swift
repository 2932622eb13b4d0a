import Foundation

// twinctl: the operator CLI — embedded broker, local stack, fleet simulator, topic tools.
let usage = """
usage: twinctl COMMAND [options]
  broker   [--topic NAME[:PARTITIONS]]... [--partitions N]   run the embedded broker (platform topics with
                                                N partitions, default 6); prints bootstrap.servers=...
  up       [--twins N] [--interval-ms MS] [--base-port P] [--log-dir DIR] [--no-fleet]
                                                broker + six services + simulated fleet; Ctrl-C stops all
  fleet    --brokers B [--twins N] [--interval-ms MS] [--ticks N]   publish simulated telemetry: each twin's
           [--seed S] [--step-ms MS] [--start TIME] [--noise off]     model stepped by the solver, its own
           [--truth FILE] [--true-state FILE] [--models DIR]         parameters (--truth), noisy sensors
  produce  --topic T [--key K] [--tenant T] [--header name=value]... [--value V]
                                                publish --value or each stdin line as a message
  tail     --topic T [--group G] [--count N] [--timeout SECONDS]    print messages as JSON lines
  topics   create|list [--replication-factor N]  create the platform topics on a real cluster
  bench    produce|consume --topic T [--count N] [--size BYTES] [--partitions N]
  seed-twins --brokers B --count N [--tenant T] [--model pump@1] [--prefix pump-] [--relate-every K]
                                                publish N twin states (<prefix>000000…) to twin.state.v1
  keys     add --tenant T --scopes read,write,ingest,simulate,admin [--file PATH]
                                                print a new API key once, append its hash to the keys file
  keys     list [--file PATH] | remove ID [--file PATH]
                                                keys file: --file, else $API_KEYS_FILE, else ./api-keys.json
  simulate TWIN [--kind forecast|whatIf|monteCarlo|sweep|calibrate] [--horizon 24h] [--step 1m]
           [--what-if NAME=VALUE]... [--samples N] [--uncertain NAME=normal:MEAN:SD]... [--seed N]
           [--threshold SERIES>LEVEL] [--sweep NAME=V1,V2,...]... [--fit NAME,NAME] [--series A,B]
           [--svg OUT.svg] [--api http://127.0.0.1:8080] [--key KEY]
                                                run a simulation through the query API: progress, summary,
                                                SVG chart; the key defaults to $TWINSTREAM_API_KEY, then
                                                the one `twinctl up` keeps (.twinstream/state/local-api-key)
  replay   [--reason CODE]... [--stage S] [--tenant T] [--twin ID] [--since TIME] [--until TIME] [--dry-run]
           [--from-topic telemetry.deadletter.v1]   re-drive dead-letters to telemetry.raw.v1 from their
                                                originals (idempotent: event ids are deterministic)
  health   URL                                  exit 0 when URL answers 200 (container health checks)
  schema-suite DIR [--format-assertion] [--remotes DIR]   run JSON Schema Test Suite files
Options --brokers B default to $KAFKA_BROKERS, then localhost:9092.
"""

let arguments = Array(CommandLine.arguments.dropFirst())
do {
    let args = try Arguments(arguments)
    switch args.positionals.first {
    case "broker": try await runBroker(args)
    case "up": try await runUp(args)
    case "fleet": try await runFleet(args)
    case "produce": try await runProduce(args)
    case "tail": try await runTail(args)
    case "topics": try await runTopics(args)
    case "bench": try await runBench(args)
    case "seed-twins": try await runSeedTwins(args)
    case "health": try await runHealth(args)
    case "simulate": try await runSimulate(args)
    case "keys": try runKeys(args)
    case "replay": try await runReplay(args)
    case "schema-suite": try runSchemaSuite(args)
    case nil, "help":
        print(usage)
    default:
        throw UsageError("unknown command '\(args.positionals[0])'")
    }
} catch let error as UsageError {
    printError("twinctl: \(error)\n\n\(usage)")
    exit(2)
} catch {
    printError("twinctl: \(error)")
    exit(1)
}
