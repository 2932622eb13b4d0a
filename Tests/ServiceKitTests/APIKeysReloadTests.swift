import Foundation
import HTTP
import Synchronization
import XCTest

@testable import ServiceKit

/// API keys rotate without a restart: the keys file is reloaded when it changes and on SIGHUP, a
/// file that does not load keeps the previous keys, and requests in flight are not disturbed.
final class APIKeysReloadTests: XCTestCase {
    private func keysFile() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("apikeys-reload-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir + "/api-keys.json"
    }

    private let logger = Logger(service: "test", sink: .discard)

    private func isValid(_ watcher: APIKeysWatcher, _ key: String) -> Bool {
        if case .authenticated = watcher.keys.authenticate(key: key) { return true }
        return false
    }

    /// Polls `condition` every 20 ms until it holds or `timeout` passes.
    private func eventually(_ timeout: Duration = .seconds(10), _ condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return condition()
    }

    func testAChangedFileTakesEffectAndABadOneKeepsThePreviousKeys() async throws {
        let path = try keysFile()
        let old = try APIKeysFile.addKey(tenant: "acme", scopes: [.read], to: path)
        let metrics = MetricsRegistry()
        let watcher = try APIKeysWatcher(path: path, interval: .milliseconds(50), logger: logger, metrics: metrics)
        let running = Task { try await watcher.run() }
        defer { running.cancel() }
        XCTAssertTrue(isValid(watcher, old.key))

        // Rotate: add the new key, remove the old one (each an atomic rename, as in production).
        let new = try APIKeysFile.addKey(tenant: "acme", scopes: [.read], to: path)
        try APIKeysFile.remove(id: old.entry.id, from: path)
        let rotated = await eventually { self.isValid(watcher, new.key) && !self.isValid(watcher, old.key) }
        XCTAssertTrue(rotated, "the new key never took effect or the old one stayed valid")

        // A broken file is refused: the keys in force stay, the failure is counted.
        try Array("[{\"id\": \"oops\"".utf8).withUnsafeBufferPointer { try Data(buffer: $0).write(to: URL(fileURLWithPath: path)) }
        let refused = await eventually { metrics.render().contains("twinstream_api_keys_reload_failures_total 1") }
        XCTAssertTrue(refused, metrics.render())
        XCTAssertTrue(isValid(watcher, new.key), "a file that does not load must not take the keys away")
        XCTAssertTrue(metrics.render().contains("twinstream_api_keys 1"), metrics.render())
    }

    func testSIGHUPReloadsAChangeThePollerHasNotSeenYet() async throws {
        let path = try keysFile()
        _ = try APIKeysFile.addKey(tenant: "acme", scopes: [.read], to: path)
        let watcher = try APIKeysWatcher(path: path, interval: .seconds(3600), logger: logger)
        let running = Task { try await watcher.run() }
        defer { running.cancel() }
        let new = try APIKeysFile.addKey(tenant: "acme", scopes: [.read], to: path)
        XCTAssertFalse(isValid(watcher, new.key), "nothing reloads before the interval or a SIGHUP")
        kill(getpid(), SIGHUP)
        let reloaded = await eventually { self.isValid(watcher, new.key) }
        XCTAssertTrue(reloaded, "SIGHUP did not reload the keys file")
    }

    /// A request authorised with a key finishes normally while that key is removed; the next
    /// request with it is refused; the server never restarts.
    func testARequestInFlightFinishesWhileItsKeyIsRemoved() async throws {
        let path = try keysFile()
        let old = try APIKeysFile.addKey(tenant: "acme", scopes: [.read], to: path)
        let watcher = try APIKeysWatcher(path: path, interval: .seconds(3600), logger: logger)
        let auth = APIAuth.watched(watcher)
        let gate = Gate()
        var router = Router()
        router.get("/slow") { request in
            let who = try auth.authorize(request, requiring: .read)
            gate.enter()
            while !gate.released { try await Task.sleep(for: .milliseconds(10)) }
            return .json(#"{"tenant":"\#(who.tenant)"}"#)
        }
        let server = HTTPServer(configuration: .init(host: "127.0.0.1", port: 0), router: router)
        let port = try server.start()
        defer { Task { await server.shutdown(gracePeriod: .seconds(1)) } }
        let headers: HTTPHeaders = ["Authorization": "Bearer \(old.key)"]

        let inFlight = Task { try await HTTPClient(port: port).get("/slow", headers: headers) }
        let started = await eventually { gate.hasEntered }
        XCTAssertTrue(started, "the request never reached its handler")
        try APIKeysFile.remove(id: old.entry.id, from: path)
        XCTAssertTrue(watcher.reload(), "the changed file must reload")
        gate.open()
        let answer = try await inFlight.value
        XCTAssertEqual(answer.status.code, 200, "a request in flight must finish with the key it started with: \(answer.text)")
        let after = try await HTTPClient(port: port).get("/slow", headers: headers)
        XCTAssertEqual(after.status.code, 401, "the removed key must be refused from now on")
    }
}

/// A handler's entry flag and the test's release flag.
private final class Gate: Sendable {
    private let entered = Atomic<Bool>(false)
    private let release = Atomic<Bool>(false)
    func enter() { entered.store(true, ordering: .sequentiallyConsistent) }
    func open() { release.store(true, ordering: .sequentiallyConsistent) }
    var hasEntered: Bool { entered.load(ordering: .sequentiallyConsistent) }
    var released: Bool { release.load(ordering: .sequentiallyConsistent) }
}
