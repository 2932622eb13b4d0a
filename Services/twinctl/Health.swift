import Foundation
import ServiceKit

/// `twinctl health URL`: exits 0 when `http://HOST:PORT/PATH` answers 200 (container health checks).
func runHealth(_ args: Arguments) async throws {
    guard let text = args.positionals.dropFirst().first, let url = URL(string: text), url.scheme == "http",
          let host = url.host else { throw UsageError("health needs an http:// URL") }
    let path = url.path.isEmpty ? "/" : url.path + (url.query.map { "?" + $0 } ?? "")
    let answer = await httpGet(host: host, port: url.port ?? 80, path: path, timeout: .seconds(3))
    guard let answer else {
        printError("no answer from \(text)")
        exit(1)
    }
    printNow("\(answer.status) \(String(decoding: answer.body.prefix(200), as: UTF8.self))")
    exit(answer.status == 200 ? 0 : 1)
}

/// Polls `/readyz` on loopback until it answers 200 or `timeout` passes.
func waitUntilReady(port: Int, timeout: Duration) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if await httpGet(host: "127.0.0.1", port: port, path: "/readyz", timeout: .seconds(2))?.status == 200 { return true }
        try? await Task.sleep(for: .milliseconds(250))
    }
    return false
}
