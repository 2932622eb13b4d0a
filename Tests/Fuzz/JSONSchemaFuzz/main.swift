// Fuzz target for JSON + JSONSchema: the input is `schema 0x00 instance`; both are parsed, the
// schema compiled and the instance validated both ways. Any crash, hang or disagreement between
// `isValid` and `validate` is a bug.
//
// libFuzzer build:
//   swift build -c release --scratch-path .build-fuzz --product fuzz-jsonschema \
//     -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING -Xswiftc -parse-as-library
//   .build-fuzz/release/fuzz-jsonschema -max_total_time=120 -timeout=5 WORKDIR Tests/Fuzz/JSONSchemaFuzz/corpus
// Normal build: a corpus replayer, `fuzz-jsonschema FILE...` runs each file once.
import JSON
import JSONSchema

#if !FUZZING
import Foundation
#endif

/// Limits sized for fuzzing: small enough that no input can run for long, large enough that
/// real recursion in the schemas still gets exercised.
let fuzzOptions = JSONSchemaOptions(maxEvaluationDepth: 200, maxEvaluationSteps: 20_000, regexStepLimit: 20_000)

/// Runs one input. Never traps on bad input: parse and compile errors are expected outcomes.
func runOne(_ bytes: UnsafeRawBufferPointer) {
    let split = bytes.firstIndex(of: 0) ?? bytes.count
    let schemaBytes = UnsafeRawBufferPointer(rebasing: bytes[0..<split])
    let instanceBytes = split < bytes.count ? UnsafeRawBufferPointer(rebasing: bytes[(split + 1)...]) : UnsafeRawBufferPointer(rebasing: bytes[0..<0])
    guard let schemaJSON = try? JSON(parsing: schemaBytes) else { return }
    // Serializer round trip must be lossless for anything the parser accepts.
    let text = schemaJSON.serialized(options: .sortedKeys)
    guard let reparsed = try? JSON(parsing: text), reparsed == schemaJSON else {
        fatalError("serialize/parse round trip changed the value: \(text.count) bytes")
    }
    let instance = (try? JSON(parsing: instanceBytes)) ?? .string(String(decoding: instanceBytes, as: UTF8.self))
    guard let schema = try? JSONSchema.compile(schemaJSON, options: fuzzOptions) else { return }
    let result = schema.validate(instance)
    let fast = schema.isValid(instance)
    if result.isValid != fast {
        // Budget exhaustion may cut the two walks at different points; anything else is a bug.
        let budget = result.errors.contains { $0.message.contains("budget") || $0.message.contains("maximum depth") || $0.message.contains("too expensive") }
        if !budget { fatalError("isValid (\(fast)) disagrees with validate (\(result.isValid))") }
    }
    if result.isValid != result.errors.isEmpty { fatalError("valid result with errors, or invalid without") }
}

#if FUZZING
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    runOne(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

/// libFuzzer's entry point for programs that bring their own `main`.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

/// SwiftPM links executables with `main` aliased to `<product>_main`; under `-parse-as-library`
/// nothing defines that symbol, so define it here and hand control to libFuzzer's driver.
@_cdecl("fuzz_jsonschema_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments) { data, size in
        runOne(UnsafeRawBufferPointer(start: data, count: size))
        return 0
    }
}
#else
/// Corpus replayer: runs every file (or every file in every directory) named on the command line.
/// Written as a function called from a global initialiser so that this branch contains only
/// declarations, which also parse under `-parse-as-library`.
func replayCorpus(_ paths: ArraySlice<String>) -> Int {
    var count = 0
    for path in paths {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            print("no such file: \(path)")
            continue
        }
        let files = isDirectory.boolValue
            ? ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().map { path + "/" + $0 }
            : [path]
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else { continue }
            data.withUnsafeBytes { runOne($0) }
            count += 1
        }
    }
    print("replayed \(count) inputs")
    return count
}

let replayed = replayCorpus(CommandLine.arguments.dropFirst())
#endif
