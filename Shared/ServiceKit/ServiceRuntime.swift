import Foundation
import HTTP
import Kafka

#if canImport(Glibc)
import Glibc
#endif

/// The process around every TwinStream service: configuration, JSON logging, metrics, the HTTP
/// port with `/healthz`, `/readyz` and `/metrics`, signal handling and graceful shutdown.
/// A service's `main` is one call:
///
/// ```swift
/// await ServiceRuntime.main(name: "validator", defaultHTTPPort: 8082) { context, routes in
///     try StreamStage(context: context, stage: "validator", inputs: [.telemetryIngested], processor: ...)
/// }
/// ```
public enum ServiceRuntime {
    /// glibc's fast bins keep small freed chunks unmerged, and every allocation of 1 KiB or more
    /// merges all of them first. A stage frees a whole batch's small chunks at once and makes a
    /// few large allocations per batch, so it paid for merging thousands of chunks each time, and
    /// for carving them up again. Off (0), chunks are merged as they are freed and no merge-all
    /// pass runs. Side by side (`pipeline-ab.sh`, same build, 6 rounds) it saved the ingestor 8% and
    /// the validator 4% CPU per reading, every round. The C library's default is 128.
    static func tuneAllocator(_ environment: EnvironmentReader) throws {
        let bytes = try environment.int("MALLOC_FAST_BIN_BYTES", default: 0, range: 0...160,
                                        doc: "Largest chunk glibc keeps in its unmerged fast bins (glibc's default 128; 0 turns them off).")
        #if canImport(Glibc)
        // `mallopt` is declared in <malloc.h>, which the Glibc module does not import.
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        let mxfast: Int32 = 1  // M_MXFAST
        if let process = dlopen(nil, RTLD_NOW), let symbol = dlsym(process, "mallopt") {
            _ = unsafeBitCast(symbol, to: Mallopt.self)(mxfast, Int32(bytes))
        }
        #endif
    }

    /// Builds the service with `build` (which may add HTTP routes), runs it until it returns or a
    /// SIGTERM/SIGINT arrives, drains it, and exits: 0 after a clean stop, 1 after a failure,
    /// 2 for bad configuration. A second signal during the drain exits at once with 1.
    public static func main(name: String, defaultHTTPPort: Int,
                            build: (ServiceContext, inout Router) async throws -> any Service) async -> Never {
        // Signals first, so a SIGTERM that arrives while starting is not lost. SIGHUP too: it asks
        // for a reload (API keys) and must never end a service, whether or not it reloads anything.
        let signals = SignalListener([.terminate, .interrupt, .hangup])
        ignoreSIGPIPE()
        let environment = EnvironmentReader()
        var bootLogger = Logger(service: name)
        let context: ServiceContext
        var router = Router()
        let host: String
        let port: Int
        let shutdownTimeout: Duration
        let service: any Service
        do {
            bootLogger.level = try environment.logLevel()
            host = environment.string("HTTP_HOST", default: "0.0.0.0", doc: "Address the HTTP port binds to.")
            port = try environment.int("HTTP_PORT", default: defaultHTTPPort, range: 0...65535, doc: "Port of /healthz, /readyz, /metrics and the service's API.")
            shutdownTimeout = try environment.duration("SHUTDOWN_TIMEOUT", default: .seconds(25), doc: "Longest drain after SIGTERM before the process gives up and exits 1.")
            try tuneAllocator(environment)
            let metrics = MetricsRegistry()
            metrics.registerProcessMetrics()
            let kafka = try makeKafkaConfiguration(environment, logger: bootLogger)
            context = ServiceContext(name: name, environment: environment, logger: bootLogger, metrics: metrics, kafka: kafka, readiness: Readiness())
            service = try await build(context, &router)
        } catch {
            bootLogger.critical("cannot start: \(error)")
            exit(2)
        }
        let logger = bootLogger
        logger.info("starting", environment.startupMetadata())
        addOperationalRoutes(&router, context: context)

        let server = HTTPServer(configuration: .init(host: host, port: port), router: router)
        do {
            let bound = try server.start()
            logger.info("http listening", ["host": .string(host), "port": .int(bound)])
        } catch {
            logger.critical("cannot listen on \(host):\(port): \(error)")
            exit(2)
        }

        let running = Task { try await service.run() }
        let outcome = Task<Bool, Never> {
            do {
                try await running.value
                return true
            } catch is CancellationError {
                return true
            } catch {
                logger.error("service failed: \(error)")
                return false
            }
        }
        // Wait for whichever comes first: the service ends on its own, or a shutdown signal.
        let signalled = Task<Void, Never> {
            var count = 0
            for await signal in signals.signals where signal.requestsShutdown {
                count += 1
                if count == 1 {
                    logger.notice("shutdown requested, draining", ["signal": .string(signal.description)])
                    running.cancel()
                    Task {
                        try? await Task.sleep(for: shutdownTimeout)
                        logger.error("drain did not finish within \(shutdownTimeout); exiting")
                        exit(1)
                    }
                } else {
                    logger.error("second \(signal) during drain; exiting now")
                    exit(1)
                }
            }
        }
        let clean = await outcome.value
        signalled.cancel()
        await server.shutdown(gracePeriod: .seconds(2))
        logger.info("stopped", ["clean": .bool(clean)])
        exit(clean ? 0 : 1)
    }

    /// `/healthz` (the process answers), `/readyz` (every readiness check passes) and `/metrics`,
    /// and the HTTP request metrics of every route (`countHTTPRequests`).
    static func addOperationalRoutes(_ router: inout Router, context: ServiceContext) {
        countHTTPRequests(&router, metrics: context.metrics)
        let readiness = context.readiness
        let metrics = context.metrics
        let name = context.name
        router.get("/healthz") { _ in
            .json(#"{"status":"ok","service":"\#(name)"}"#)
        }
        router.get("/readyz") { _ in
            let (ready, failing) = readiness.evaluate()
            let body = #"{"ready":\#(ready),"failing":[\#(failing.map(JSONText.quoted).joined(separator: ","))]}"#
            return .json(body, status: ready ? .ok : HTTPStatus(code: 503))
        }
        router.get("/metrics") { _ in
            HTTPResponse(status: .ok, headers: ["Content-Type": MetricsRegistry.contentType], body: Array(metrics.render().utf8))
        }
    }

    /// Counts every answer by route pattern, method and status (`twinstream_http_requests_total`)
    /// and times it by route (`twinstream_http_request_seconds`): the query API's and HTTP
    /// ingest's request rate, latency and errors on the dashboard and in `TwinStreamHTTPErrors`.
    /// Label values are route patterns (`/v1/twins/{id}`), never raw paths, so they stay few.
    static func countHTTPRequests(_ router: inout Router, metrics: MetricsRegistry) {
        let requests = metrics.counterFamily("twinstream_http_requests_total", help: "HTTP requests answered, by route pattern, method and status.",
                                             labelNames: ["route", "method", "status"])
        let seconds = metrics.histogramFamily("twinstream_http_request_seconds", help: "Time to produce an HTTP answer (a stream: until its head), by route pattern.",
                                              labelNames: ["route"])
        router.use { request, next in
            let started = ContinuousClock.now
            let route = request.route ?? "unmatched"
            func record(_ status: Int) {
                requests.labels(route, request.method.rawValue, String(status)).inc()
                seconds.labels(route).observe(ContinuousClock.now - started)
            }
            do {
                let response = try await next(request)
                record(response.status.code)
                return response
            } catch let error as HTTPError {
                record(error.status.code)
                throw error
            } catch {
                record(500)
                throw error
            }
        }
    }
}
