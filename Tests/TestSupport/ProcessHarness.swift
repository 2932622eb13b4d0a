import Contracts
import Foundation
import JSON
import ServiceKit
import Kafka
import Synchronization

/// Helpers for tests that run the built executables as real processes (end-to-end and fault tests).
public enum Harness {
    /// The folder with the package's built products (the test bundle is built beside them).
    public static var productsDirectory: URL {
        if let dir = ProcessInfo.processInfo.environment["TWINSTREAM_BIN_DIR"] { return URL(fileURLWithPath: dir) }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        // swift-testing / xctest may run from inside the .xctest bundle folder.
        while dir.path != "/" && !FileManager.default.fileExists(atPath: dir.appendingPathComponent("twinctl").path) {
            dir = dir.deletingLastPathComponent()
        }
        return dir
    }

    /// `EmbeddedBroker.clientProperties` as the `KAFKA_*` variables of a service's environment
    /// (what `twinctl up` gives its services), merged under `environment`.
    public static func embeddedBrokerEnvironment(_ environment: [String: String]) -> [String: String] {
        EnvironmentReader.addingKafkaDefaults(EmbeddedBroker.clientProperties, to: environment)
    }

    /// A free TCP port for a service the test starts. Taken below the kernel's ephemeral range
    /// (32768-60999 here), where the kernel never hands ports to outgoing connections, so the port
    /// cannot be taken between this check and the service's own bind; a counter keeps tests of
    /// this process from getting the same one twice.
    public static func freePort() -> Int { freePortRange(1) }

    /// `count` consecutive free ports (see `freePort`).
    public static func freePortRange(_ count: Int) -> Int {
        for _ in 0..<2_000 {
            let base = nextPort.withLock { next -> Int in
                if next + count > 32_000 { next = 20_000 }
                defer { next += count }
                return next
            }
            if (0..<count).allSatisfy({ isFree(base + $0) }) { return base }
        }
        preconditionFailure("no \(count) consecutive free ports between 20000 and 32000")
    }

    /// Where the next search starts: a random point per test process, so concurrent test runs
    /// on one machine rarely collide (each checks the ports it takes anyway).
    private static let nextPort = Mutex(20_000 + Int.random(in: 0..<10_000))

    /// True when `port` can be bound on every address, as the services bind it.
    public static func isFree(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = INADDR_ANY
        addr.sin_port = UInt16(port).bigEndian
        return withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
    }

    /// A GET to 127.0.0.1:`port`; nil when nothing answers.
    public static func get(port: Int, _ path: String, key: String? = nil) async -> (status: Int, body: [UInt8])? {
        await httpGet(host: "127.0.0.1", port: port, path: path, headers: key.map { [("Authorization", "Bearer \($0)")] } ?? [])
    }

    /// A property's value in a query-API twin document.
    public static func property(_ body: [UInt8], _ name: String) -> JSON? {
        (try? JSON(parsing: body))?["properties"]?[name]?["value"]
    }

    /// Polls `condition` every 200 ms until it holds or `timeout` passes.
    public static func eventually(timeout: Duration = .seconds(30), _ condition: () async throws -> Bool) async rethrows -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return true }
            try? await Task.sleep(for: .milliseconds(200))
        }
        return try await condition()
    }
}

/// A child process whose stdout lines are collected; SIGKILLed when dropped.
public final class ChildProcess: @unchecked Sendable {
    public let process = Process()
    private let lock = NSLock()
    private var lines: [String] = []
    private var partial = Data()
    private var outputEnded = false
    public let name: String

    public init(_ executable: String, _ arguments: [String] = [], environment: [String: String] = [:], stderrTo log: URL? = nil,
         directory: URL? = nil) throws {
        name = executable
        process.executableURL = Harness.productsDirectory.appendingPathComponent(executable)
        if let directory { process.currentDirectoryURL = directory }
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        let pipe = Pipe()
        process.standardOutput = pipe
        if let log {
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            process.standardError = try FileHandle(forWritingTo: log)
        } else {
            process.standardError = FileHandle.nullDevice
        }
        try process.run()
        // The child has its copy of the write end; ours would keep the pipe from ever ending.
        try? pipe.fileHandleForWriting.close()
        // Read on a thread of its own until end of file, so `waitForOutputEnd` knows when all
        // the output has been taken in.
        let handle = pipe.fileHandleForReading
        // Weakly: dropping the ChildProcess must still run its deinit (which kills the process).
        Thread.detachNewThread { [weak self] in
            while true {
                let data = handle.availableData
                guard let self else { return }
                if data.isEmpty { break }
                self.lock.withLock {
                    self.partial.append(data)
                    while let newline = self.partial.firstIndex(of: 0x0A) {
                        self.lines.append(String(decoding: self.partial[self.partial.startIndex..<newline], as: UTF8.self))
                        self.partial.removeSubrange(self.partial.startIndex...newline)
                    }
                }
            }
            guard let self else { return }
            self.lock.withLock {
                if !self.partial.isEmpty { self.lines.append(String(decoding: self.partial, as: UTF8.self)) }
                self.partial = Data()
                self.outputEnded = true
            }
        }
    }

    public var output: [String] { lock.withLock { lines } }

    /// Waits until the process's standard output reached its end (everything it printed was
    /// read), up to `timeout`; false if it did not.
    public func waitForOutputEnd(timeout: Duration = .seconds(10)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !lock.withLock({ outputEnded }) && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(10)) }
        return lock.withLock { outputEnded }
    }

    public func signal(_ sig: Int32) { kill(process.processIdentifier, sig) }

    /// True once the process ended by a signal it did not handle (a crash, or SIGKILL).
    public var endedBySignal: Bool { !process.isRunning && process.terminationReason == .uncaughtSignal }

    /// Waits for the process to exit (up to `timeout`), returning its status; SIGKILLs it after.
    public func waitForExit(timeout: Duration = .seconds(30)) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(50)) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return nil
        }
        return process.terminationStatus
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}

/// Every message of a topic, from the beginning to its current end.
public func readTopic(_ topic: Topic, bootstrap: String) async throws -> [KafkaMessage] {
    let consumer = try KafkaConsumer(configuration: KafkaConfiguration(bootstrapServers: bootstrap),
                                     readingFromBeginning: (0..<Topic.partitionCount).map { TopicPartition(topic.name, $0) })
    var messages: [KafkaMessage] = []
    repeat { messages += try await consumer.poll(maxMessages: 5000, timeout: .milliseconds(200)) } while !consumer.isCaughtUp
    await consumer.close()
    return messages
}
