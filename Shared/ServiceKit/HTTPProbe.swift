import Durations
import Dispatch
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A one-shot HTTP/1.1 GET for health probes (`twinctl health`, `twinctl up`, tests): connects,
/// sends `Connection: close`, reads to EOF within `timeout`. Runs on its own queue, never on the
/// cooperative pool. Returns nil when nothing answers or the answer is not HTTP.
public func httpGet(host: String, port: Int, path: String, headers: [(String, String)] = [],
                    timeout: Duration = .seconds(5)) async -> (status: Int, body: [UInt8])? {
    await withCheckedContinuation { continuation in
        DispatchQueue.global().async {
            continuation.resume(returning: blockingGet(host: host, port: port, path: path, headers: headers, timeout: timeout))
        }
    }
}

private func blockingGet(host: String, port: Int, path: String, headers: [(String, String)], timeout: Duration) -> (status: Int, body: [UInt8])? {
    var hints = addrinfo()
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    var result: UnsafeMutablePointer<addrinfo>?
    guard getaddrinfo(host, String(port), &hints, &result) == 0, let info = result else { return nil }
    defer { freeaddrinfo(result) }
    let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var tv = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: Int(timeout.microseconds % 1_000_000))
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    guard connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else { return nil }
    let extra = headers.map { "\($0.0): \($0.1)\r\n" }.joined()
    let request = Array("GET \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nConnection: close\r\nAccept: */*\r\n\(extra)\r\n".utf8)
    var sent = 0
    while sent < request.count {
        let n = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard n > 0 else { return nil }
        sent += n
    }
    var response: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 16_384)
    while response.count < 64 * 1024 * 1024 {
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { break }
        response += buffer[0..<n]
    }
    return parseResponse(response)
}

/// Splits a complete `Connection: close` response into status and body (Content-Length or
/// chunked bodies are decoded; otherwise the body runs to EOF).
func parseResponse(_ bytes: [UInt8]) -> (status: Int, body: [UInt8])? {
    let separator: [UInt8] = [13, 10, 13, 10]
    guard let headEnd = bytes.indices.first(where: { bytes[$0...].starts(with: separator) }) else { return nil }
    let head = String(decoding: bytes[..<headEnd], as: UTF8.self)
    let lines = head.split(separator: "\r\n")
    guard let statusLine = lines.first, statusLine.hasPrefix("HTTP/1."),
          let status = Int(statusLine.split(separator: " ").dropFirst().first ?? "") else { return nil }
    var body = Array(bytes[(headEnd + 4)...])
    let headers = lines.dropFirst().map { $0.lowercased() }
    if headers.contains(where: { $0.hasPrefix("transfer-encoding:") && $0.contains("chunked") }) {
        var decoded: [UInt8] = []
        var i = 0
        while i < body.count {
            guard let lineEnd = body[i...].firstIndex(of: 10) else { break }
            let sizeText = String(decoding: body[i..<lineEnd], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard let size = Int(sizeText.split(separator: ";").first ?? "", radix: 16), size > 0 else { break }
            let start = lineEnd + 1
            guard start + size <= body.count else { break }
            decoded += body[start..<(start + size)]
            i = start + size + 2
        }
        body = decoded
    } else if let cl = headers.first(where: { $0.hasPrefix("content-length:") }),
              let length = Int(cl.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)), length <= body.count {
        body = Array(body[..<length])
    }
    return (status, body)
}
