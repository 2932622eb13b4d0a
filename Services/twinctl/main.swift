import Foundation

// twinctl: the operator CLI — embedded broker, local stack, fleet simulator, topic tools.
let usage = """
usage: twinctl COMMAND [options]
  broker   [--topic NAME[:PARTITIONS]]... [--partitions N] [--brokers-count N] [--admin-port P] [--debug CONTEXTS]
                                                run the embedded broker (platform topics with N partitions,
                                                default 6); prints `client KAFKA_...=...` (the settings
                                                `up` gives its services for it), then bootstrap.servers=...
                                                --debug mock,protocol: librdkafka debug of the cluster
                                                (every log append, every request) on stderr. With --admin-port
                                                (0: any free port) prints admin=URL and takes fault
                                                injections on 127.0.0.1: POST /down[?broker=N] and
                                                /up[?broker=N] (the broker refuses connections, then
                                                takes them again), POST /errors?request=KIND&errors=A,B
                                                (the next KIND requests — Produce, Fetch, OffsetCommit,
                                                FindCoordinator, JoinGroup, Heartbeat, ... — fail with
                                                librdkafka error names, e.g. REQUEST_TIMED_OUT,
                                                NOT_LEADER_FOR_PARTITION, NOT_COORDINATOR, in order)
  up       [--twins N] [--interval-ms MS] [--base-port P] [--log-dir DIR] [--state-dir DIR] [--models DIR] [--no-fleet]
           [--faults SPEC] [--seed S]          broker + six services + simulated fleet (with faults, see fleet);
                                                Ctrl-C stops all; DRIFT_* settings pass through the environment;
                                                records the broker's address in .twinstream/state/bootstrap
  fleet    [--brokers B] [--twins N] [--interval-ms MS] [--ticks N]   publish simulated telemetry: each twin's
           [--seed S] [--step-ms MS] [--start TIME] [--noise off]     model stepped by the solver, its own
           [--truth FILE] [--true-state FILE] [--models DIR]         parameters (--truth), noisy sensors
           [--faults SPEC]   inject faults, ';'-separated KIND:ARGS[@TIME[+DURATION]], TIME from the fleet's start:
             shift:TWINS:PARAM=VALUE|*FACTOR|+DELTA   the twins' physics use another parameter value
             stuck:TWINS:PROPERTY      the sensor repeats the value it read when the fault began
             silent:TWINS              the twins send nothing (readings resume when the window ends)
             late:RATE[:DELAY]         readings held back DELAY (default 30s), sent after newer ones
             duplicate:RATE            readings sent twice (same bytes, same event id)
             malformed:RATE            readings replaced by invalid JSON or a number sent as a string
           TWINS: id[,id...]; RATE: 1% or 0.01; TIME, DURATION, DELAY: 500ms, 90s, 10m, 1h. Each fault prints
           a JSON line when it fires; --seed makes the hits reproducible. Example:
             --faults 'shift:room-3:tau=*0.5@10m;stuck:pump-2:temperature@5m;silent:pump-3@8m+5m;duplicate:1%'
  produce  --topic T [--key K] [--tenant T] [--header name=value]... [--value V]
                                                publish --value or each stdin line as a message
  tail     --topic T [--group G] [--count N] [--timeout SECONDS]    print messages as JSON lines
  topics   create|list [--replication-factor N]  create the platform topics on a real cluster
  bench    produce|consume|relay --topic T [--count N] [--size BYTES] [--partitions N] [--to T2]
                                                raw Kafka client rates; relay copies T to T2 unparsed
  load     --rate R --twins N --seconds S [--prefix load-] [--tick-ms 10] [--max-behind-ms 1000]
                                                offer pre-made pump@1 readings to telemetry.raw.v1 at a
                                                fixed rate (benchmarks); prints offered/sent/delivered
  seed-twins [--brokers B] --count N [--tenant T] [--model pump@1] [--prefix pump-] [--relate-every K]
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
Options --brokers B default to $KAFKA_BROKERS, then the address a running `twinctl up` recorded in
.twinstream/state/bootstrap (or --state-dir DIR), then localhost:9092. `twinctl COMMAND --help` prints
that command's usage.
"""

let arguments = Array(CommandLine.arguments.dropFirst())
// How `twinctl up` starts a service (see `runChild`); not a command for users.
if arguments.first == "__child" { runChild(Array(arguments.dropFirst())) }
/// Commands that talk to a Kafka broker: checked to answer before they start (see `BrokerAddress`).
let brokerCommands: Set<String> = ["fleet", "produce", "tail", "bench", "seed-twins", "load"]
do {
    var args = try Arguments(arguments)
    if let command = args.positionals.first, args.flag("help") || arguments.contains("-h") {
        print(commandUsage(command, in: usage) ?? usage)
        exit(0)
    }
    // A fault plan that does not fit is a mistake in the call, whether or not a broker answers.
    if args.positionals.first == "fleet" { _ = try fleetOptions(args) }
    if let command = args.positionals.first, brokerCommands.contains(command) {
        let brokers = BrokerAddress(args)
        try brokers.checkAnswers()
        args.resolvedBrokers = brokers.servers
    }
    switch args.positionals.first {
    case "broker": try await runBroker(args)
    case "up": try await runUp(args)
    case "fleet": try await runFleet(args)
    case "produce": try await runProduce(args)
    case "tail": try await runTail(args)
    case "topics": try await runTopics(args)
    case "bench": try await runBench(args)
    case "load": try await runLoad(args)
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
} catch let error as CommandFailure {
    printError("twinctl: \(error)")
    exit(1)
} catch let error as UsageError {
    printError("twinctl: \(error)\n\n\(usage)")
    exit(2)
} catch {
    printError("twinctl: \(error)")
    exit(1)
}

/// The lines of `usage` about `command`: its line (or lines) and their continuation lines.
func commandUsage(_ command: String, in usage: String) -> String? {
    var out: [Substring] = []
    var inside = false
    for line in usage.split(separator: "\n", omittingEmptySubsequences: false) {
        if line.hasPrefix("  ") && !line.hasPrefix("   ") {
            inside = line.dropFirst(2).split(separator: " ").first.map(String.init) == command
        } else if !line.hasPrefix("   ") {
            inside = false
        }
        if inside { out.append(line) }
    }
    return out.isEmpty ? nil : "usage: twinctl\n" + out.joined(separator: "\n")
}
