// swift-tools-version:6.0
import PackageDescription

/// TwinStream: six pipeline services and the operator CLI, talking only over Kafka.
/// No package dependencies: Foundation, Dispatch, Glibc and Debian's librdkafka.
let strict: [SwiftSetting] = [.swiftLanguageMode(.v6)]

func shared(_ name: String, _ deps: [Target.Dependency] = []) -> Target {
    .target(name: name, dependencies: deps, path: "Shared/\(name)", swiftSettings: strict)
}

func service(_ name: String, _ deps: [Target.Dependency]) -> Target {
    .executableTarget(name: name, dependencies: deps, path: "Services/\(name)", swiftSettings: strict)
}

func tests(_ name: String, _ deps: [Target.Dependency]) -> Target {
    .testTarget(name: name, dependencies: deps, path: "Tests/\(name)", swiftSettings: strict)
}

let package = Package(
    name: "TwinStream",
    products: [
        .executable(name: "ingestor", targets: ["ingestor"]),
        .executable(name: "validator", targets: ["validator"]),
        .executable(name: "state-updater", targets: ["state-updater"]),
        .executable(name: "simulator-worker", targets: ["simulator-worker"]),
        .executable(name: "query-api", targets: ["query-api"]),
        .executable(name: "drift-monitor", targets: ["drift-monitor"]),
        .executable(name: "twinctl", targets: ["twinctl"]),
    ],
    targets: [
        .systemLibrary(
            name: "CRdKafka",
            path: "Shared/CRdKafka",
            pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"])]
        ),
        // A SIGABRT handler for every process that links librdkafka: see Shared/CrashGuard/CrashGuard.c.
        .target(name: "CrashGuard", path: "Shared/CrashGuard"),
        shared("Durations"),
        shared("JSON"),
        shared("JSONSchema", ["JSON"]),
        shared("Sockets", ["Durations"]),
        shared("HTTP", ["Sockets", "Durations"]),
        shared("Kafka", ["CRdKafka", "CrashGuard", "Durations"]),
        shared("Contracts", ["JSON"]),
        shared("ServiceKit", ["HTTP", "Kafka", "Contracts", "JSON", "Durations"]),
        shared("Models", ["JSON", "JSONSchema", "Contracts"]),
        shared("ModelLoading", ["Models", "ServiceKit"]),
        shared("Simulation", ["Models", "JSON"]),
        shared("Drift"),
        shared("LoadGen"),
        shared("Fleet", ["Simulation", "Models", "Contracts", "JSON"]),
        shared("Simulator", ["Simulation", "Models", "Contracts", "JSON", "Kafka", "ServiceKit", "Durations"]),
        shared("DriftMonitor", ["Drift", "Models", "Contracts", "JSON", "TwinQuery", "ServiceKit", "Durations", "Stage", "Kafka", "Simulator"]),
        shared("Stage", ["Kafka", "Contracts", "ServiceKit", "JSON", "Durations"]),
        shared("Ingest", ["Stage", "Kafka", "Contracts", "ServiceKit", "HTTP", "JSON", "Durations"]),
        shared("Validation", ["Stage", "Kafka", "Contracts", "JSON", "Models"]),
        shared("TwinStore", ["Stage", "Models", "Kafka", "Contracts", "ServiceKit", "JSON", "Durations"]),
        shared("TwinQuery", ["JSON", "Contracts", "Durations"]),
        shared("Views", ["TwinQuery", "Kafka", "Contracts", "ServiceKit", "JSON", "Durations"]),
        shared("QueryAPI", ["Views", "TwinQuery", "Contracts", "Kafka", "ServiceKit", "HTTP", "JSON", "Models", "Durations", "Simulator"]),

        service("ingestor", ["Ingest", "Stage", "ServiceKit", "Kafka", "Contracts", "Durations"]),
        service("validator", ["Validation", "Stage", "ModelLoading", "ServiceKit", "Contracts"]),
        service("state-updater", ["TwinStore", "Stage", "ModelLoading", "ServiceKit", "Contracts"]),
        service("simulator-worker", ["Simulator", "ModelLoading", "ServiceKit"]),
        service("query-api", ["QueryAPI", "Views", "TwinQuery", "ModelLoading", "ServiceKit", "Kafka", "Durations"]),
        service("drift-monitor", ["DriftMonitor", "Stage", "ModelLoading", "ServiceKit", "Contracts"]),
        service("twinctl", ["ServiceKit", "Kafka", "Contracts", "HTTP", "JSON", "JSONSchema", "Models", "Durations", "Fleet", "Simulation", "Sockets", "LoadGen"]),

        // Fuzz targets: built with `-Xswiftc -sanitize=fuzzer -Xswiftc -DFUZZING` they are libFuzzer
        // binaries; built normally they replay the corpus files given as arguments.
        .executableTarget(name: "fuzz-http", dependencies: ["HTTP"], path: "Tests/Fuzz/HTTPFuzz", exclude: ["corpus"], swiftSettings: strict),
        .executableTarget(name: "fuzz-jsonschema", dependencies: ["JSONSchema", "JSON"], path: "Tests/Fuzz/JSONSchemaFuzz", exclude: ["corpus"], swiftSettings: strict),

        // Benchmarks (not run in CI): `swift build -c release --product SchemaBench && .build/release/SchemaBench`.
        .executableTarget(name: "SchemaBench", dependencies: ["JSONSchema", "JSON"], path: "Benchmarks/SchemaBench", swiftSettings: strict),
        // `swift build -c release --product QueryBench && .build/release/QueryBench [twins]` (from the package root).
        .executableTarget(name: "QueryBench", dependencies: ["TwinQuery", "Views", "Models", "QueryAPI", "HTTP", "ServiceKit", "Contracts"], path: "Benchmarks/QueryBench", swiftSettings: strict),
        // `swift build -c release --product StageBench && .build/release/StageBench [messages]`.
        .executableTarget(name: "StageBench", dependencies: ["Stage", "Ingest", "Validation", "ModelLoading", "Contracts", "JSON", "Kafka", "Models"], path: "Benchmarks/StageBench", swiftSettings: strict),
        // `swift build -c release --product StateBench && .build/release/StateBench [twins]`.
        .executableTarget(name: "StateBench", dependencies: ["TwinStore", "Stage", "Contracts", "JSON", "Kafka", "ServiceKit", "Views", "Models"], path: "Benchmarks/StateBench", swiftSettings: strict),

        // `Benchmarks/simulation.sh`: SimBench (release) beside a SciPy peer on one core.
        .executableTarget(name: "SimBench", dependencies: ["Simulation", "Models", "Simulator", "Contracts"], path: "Benchmarks/SimBench", swiftSettings: strict),
        // `Benchmarks/drift.sh`: DriftBench (release) beside River on the same streams, one core.
        .executableTarget(name: "DriftBench", dependencies: ["Drift"], path: "Benchmarks/DriftBench", swiftSettings: strict),
        // The drift monitor's own rate and memory per twin, in process: `Benchmarks/drift.sh` (or `--monitor`).
        .executableTarget(name: "DriftMonitorBench", dependencies: ["DriftMonitor", "Contracts", "JSON", "Models"], path: "Benchmarks/DriftMonitorBench", swiftSettings: strict),

        // Shared by test targets: the seeded stream generator and reference fold of the state tests.
        .target(name: "TestSupport", dependencies: ["Contracts", "JSON", "Kafka", "ServiceKit", "Stage"], path: "Tests/TestSupport", swiftSettings: strict),

        tests("DurationsTests", ["Durations"]),
        tests("JSONTests", ["JSON", "Contracts"]),
        tests("JSONSchemaTests", ["JSONSchema", "JSON"]),
        tests("HTTPTests", ["HTTP", "Sockets", "Contracts", "Durations"]),
        tests("KafkaTests", ["Kafka", "CrashGuard"]),
        tests("ContractsTests", ["Contracts", "JSON", "JSONSchema"]),
        tests("ServiceKitTests", ["ServiceKit", "HTTP", "Kafka", "Contracts"]),
        tests("ModelsTests", ["Models", "JSON", "JSONSchema", "Contracts"]),
        tests("SimulationTests", ["Simulation", "Models", "JSON"]),
        tests("LoadGenTests", ["LoadGen"]),
        tests("FleetTests", ["Fleet", "Simulation", "Simulator", "Models", "Contracts", "JSON"]),
        tests("SimulatorTests", ["Simulator", "Simulation", "Models", "Contracts", "JSON", "Kafka", "ServiceKit"]),
        tests("DriftMonitorTests", ["DriftMonitor", "Drift", "Simulation", "Simulator", "TestSupport", "Models", "ModelLoading", "Contracts", "JSON", "Kafka", "ServiceKit", "Stage"]),
        .testTarget(name: "DriftTests", dependencies: ["Drift"], path: "Tests/DriftTests", exclude: ["Fixtures"], swiftSettings: strict),
        tests("ModelLoadingTests", ["ModelLoading", "Models", "ServiceKit"]),
        tests("StageTests", ["Stage", "Contracts", "JSON", "Kafka", "ServiceKit", "TestSupport"]),
        tests("IngestTests", ["Ingest", "Stage", "Contracts", "JSON", "Kafka", "ServiceKit", "HTTP", "TestSupport"]),
        tests("ValidationTests", ["Validation", "Ingest", "Stage", "ModelLoading", "Contracts", "JSON", "Models", "Kafka"]),
        tests("TwinStoreTests", ["TwinStore", "Stage", "ModelLoading", "Contracts", "JSON", "Models", "ServiceKit", "Kafka", "TestSupport"]),
        tests("TwinQueryTests", ["TwinQuery", "JSON", "Contracts"]),
        tests("ViewsTests", ["Views", "TwinQuery", "Contracts", "JSON", "Kafka", "ServiceKit", "TwinStore", "TestSupport"]),
        tests("QueryAPITests", ["QueryAPI", "Views", "TwinQuery", "TwinStore", "ModelLoading", "JSONSchema", "Contracts", "JSON", "HTTP", "ServiceKit", "Models", "Kafka", "TestSupport", "Simulator"]),
        tests("EndToEndTests", ["Kafka", "Contracts", "ServiceKit", "JSON", "HTTP", "TestSupport", "Durations"]),
        // The whole stack under faults (kills, broker outages, poison, bursts); the slow ones only
        // with FAULTS=full.
        tests("FaultTests", ["Kafka", "Contracts", "ServiceKit", "JSON", "HTTP", "TestSupport"]),
    ]
)
