// Fuzz target for the HTTP request parser.
//
// libFuzzer build (dev package or main package):
//   swift build -c release --product fuzz-http -Xswiftc -sanitize=fuzzer,address \
//     -Xswiftc -parse-as-library -Xswiftc -DFUZZING -Xswiftc -enable-experimental-feature -Xswiftc Extern
//   .build/release/fuzz-http -max_total_time=120 -max_len=4096 Tests/Fuzz/HTTPFuzz/corpus
// Normal build: a corpus replayer, `fuzz-http FILE...` runs every file through the same check.

import HTTP

#if canImport(Glibc)
import Glibc
#endif

/// Small limits so the fuzzer reaches every limit check with short inputs.
let fuzzLimits = HTTPRequestParser.Limits(maxHeaderLineLength: 200, maxHeaderCount: 12, maxHeadSize: 1500, maxBodySize: 600)

/// What one parse produced, comparable between runs: heads and bodies as summaries, and
/// whether it ended in an error.
struct Outcome: Equatable {
    var events: [String] = []
    var failed = false
    var status = 0
}

/// Feeds `bytes` in the given piece sizes; checks invariants as events arrive.
func parse(_ bytes: [UInt8], pieces: (Int) -> Int) -> Outcome {
    var parser = HTTPRequestParser(limits: fuzzLimits)
    var outcome = Outcome()
    var offset = 0
    var piece = 0
    var currentLimit = fuzzLimits.maxBodySize
    while offset < bytes.count {
        let size = max(1, pieces(piece))
        piece += 1
        let end = min(bytes.count, offset + size)
        parser.append(bytes[offset..<end])
        offset = end
        do {
            while let event = try parser.next() {
                switch event {
                case .head(let head):
                    precondition(!head.method.rawValue.isEmpty, "empty method")
                    precondition(head.version == .http1_0 || head.version == .http1_1, "bad version")
                    precondition(head.headers.count <= fuzzLimits.maxHeaderCount, "too many headers accepted")
                    if case .contentLength(let length) = head.framing { precondition(length >= 0, "negative length") }
                    precondition(!(head.version == .http1_0 && head.framing == .chunked), "chunked in HTTP/1.0")
                    // Exercise per-request limits the way the server does (deterministic per head).
                    currentLimit = head.method == .put ? 100 : fuzzLimits.maxBodySize
                    parser.bodyLimit = currentLimit
                    outcome.events.append("head \(head.method) \(head.target) \(head.version) \(head.headers.count) "
                        + "\(head.framing) \(head.keepAlive) \(head.pathSegments)")
                case .complete(let body):
                    precondition(body.count <= currentLimit, "body over its limit")
                    outcome.events.append("body \(body.count) \(body.reduce(0) { $0 &* 31 &+ Int($1) })")
                }
            }
        } catch {
            precondition(error.status.code >= 400 && error.status.code < 600, "error without an error status")
            precondition(parser.phase == .failed, "parser not failed after an error")
            outcome.failed = true
            outcome.status = error.status.code
            return outcome
        }
        precondition(parser.bufferedByteCount <= bytes.count, "buffer grew beyond the input")
    }
    return outcome
}

/// One fuzz input: parsed whole and in data-dependent pieces, the two must agree.
func fuzzOne(_ bytes: [UInt8]) {
    let whole = parse(bytes) { _ in bytes.count }
    let seed = bytes.first.map(Int.init) ?? 1
    let pieced = parse(bytes) { index in (seed &+ index &* 7) % 13 + 1 }
    // The same events must come out however the bytes are split; only the status of an
    // error may differ (a too-long line can be refused before its end arrives).
    precondition(whole.failed == pieced.failed, "split changed success: \(whole) vs \(pieced)")
    if !whole.failed {
        precondition(whole.events == pieced.events, "split changed events: \(whole.events) vs \(pieced.events)")
    } else {
        let shorter = min(whole.events.count, pieced.events.count)
        precondition(Array(whole.events.prefix(shorter)) == Array(pieced.events.prefix(shorter)), "split changed events")
    }
}

#if FUZZING
/// libFuzzer entry point.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    fuzzOne(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}

/// libFuzzer's driver, for the entry point below.
@_extern(c, "LLVMFuzzerRunDriver")
func runFuzzerDriver(_ argc: UnsafeMutablePointer<CInt>,
                     _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                     _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

/// SwiftPM links executables with `--defsym main=<module>_main` and -parse-as-library emits
/// no such symbol (swiftlang/swift-package-manager#8731), so provide it and hand over to
/// libFuzzer. Built with plain swiftc this is unused and libFuzzer's own main runs.
@_cdecl("fuzz_http_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    var count = argc
    var arguments = argv
    return runFuzzerDriver(&count, &arguments) { data, size in fuzzerTestOneInput(data, size) }
}
#else
/// Reads a whole file with stdio (no Foundation in the fuzz target).
func readFile(_ path: String) -> [UInt8]? {
    guard let file = fopen(path, "rb") else { return nil }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
        if count == 0 { break }
        bytes.append(contentsOf: chunk[0..<count])
    }
    return bytes
}

/// Replays every file named on the command line; exits non-zero if one cannot be read.
func replayCorpus() -> Int {
    var replayed = 0
    for path in CommandLine.arguments.dropFirst() {
        guard let bytes = readFile(path) else {
            print("cannot read \(path)")
            exit(1)
        }
        fuzzOne(bytes)
        replayed += 1
    }
    print("replayed \(replayed) input(s) without a failure")
    return replayed
}

// A declaration, not a statement: statements at top level are rejected even in the inactive
// branch when the fuzzing build passes -parse-as-library.
let replayedInputs = replayCorpus()
#endif
