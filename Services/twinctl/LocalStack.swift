import Foundation
import Sockets

/// What a running `twinctl up` leaves in its state directory (`--state-dir`, default
/// `.twinstream/state` under the directory it was started from) for the other commands:
/// `bootstrap` (the embedded broker's address), `api` (the query API's URL) and `local-api-key`.
/// Commands started from the same directory (or given the same `--state-dir`) find the stack
/// without being told.
struct LocalStackRecord {
    /// The default state directory, relative to the current directory.
    static let defaultStateDir = ".twinstream/state"

    let directory: URL

    init(stateDir: String?) {
        directory = URL(fileURLWithPath: stateDir ?? Self.defaultStateDir)
    }

    init(_ args: Arguments) { self.init(stateDir: args.string("state-dir")) }

    var bootstrapFile: URL { directory.appendingPathComponent("bootstrap") }
    var apiFile: URL { directory.appendingPathComponent("api") }
    var keyFile: URL { directory.appendingPathComponent("local-api-key") }

    /// The first line of one of the record's files, nil when absent or empty.
    func read(_ file: URL) -> String? {
        guard let data = FileManager.default.contents(atPath: file.path) else { return nil }
        let line = String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        return trimmed.isEmpty ? nil : trimmed
    }

    /// Records the running stack's addresses (each file replaced atomically).
    func write(bootstrap: String, api: String) throws {
        try Data((bootstrap + "\n").utf8).write(to: bootstrapFile, options: .atomic)
        try Data((api + "\n").utf8).write(to: apiFile, options: .atomic)
    }

    /// Removes the addresses, unless another stack has replaced them since.
    func clear(bootstrap: String) {
        guard read(bootstrapFile) == bootstrap else { return }
        try? FileManager.default.removeItem(at: bootstrapFile)
        try? FileManager.default.removeItem(at: apiFile)
    }
}

/// The brokers a command talks to and where that address came from (for error messages).
struct BrokerAddress {
    let servers: String
    let origin: String

    /// `--brokers`, else `$KAFKA_BROKERS`, else the address a running `twinctl up` recorded in
    /// `<state dir>/bootstrap`, else `localhost:9092`.
    init(_ args: Arguments) {
        if let given = args.string("brokers") {
            (servers, origin) = (given, "--brokers")
        } else if let env = ProcessInfo.processInfo.environment["KAFKA_BROKERS"], !env.isEmpty {
            (servers, origin) = (env, "KAFKA_BROKERS")
        } else {
            let record = LocalStackRecord(args)
            if let recorded = record.read(record.bootstrapFile) {
                (servers, origin) = (recorded, "recorded by twinctl up in \(record.bootstrapFile.path)")
            } else {
                (servers, origin) = ("localhost:9092", "the default: no --brokers, no KAFKA_BROKERS, no \(record.bootstrapFile.path) from a running twinctl up here")
            }
        }
    }

    /// Throws, within about `timeout`, when no listed broker accepts a TCP connection: a command
    /// would otherwise wait in silence while librdkafka retries for ever.
    func checkAnswers(timeout: Duration = .seconds(3)) throws {
        let hosts = servers.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        for entry in hosts {
            let target = entry.split(separator: "/").last.map(String.init) ?? entry  // PLAINTEXT://host:port
            guard let colon = target.lastIndex(of: ":"), let port = UInt16(target[target.index(after: colon)...]) else { continue }
            let host = String(target[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            if let socket = try? TCPSocket.connect(host: host, port: port, timeout: timeout) {
                socket.close()
                return
            }
        }
        throw CommandFailure("nothing answers at \(servers) (\(origin)). Start the local stack with `twinctl up` "
            + "(then commands run from the same directory find it), or name the brokers with --brokers HOST:PORT (or KAFKA_BROKERS)")
    }
}

/// A command that cannot do what it was asked, with what to do instead: printed without the
/// usage text, exit status 1.
struct CommandFailure: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}

/// The files `twinctl up` and `seed-twins` need, found wherever twinctl is started from.
enum LocalFiles {
    /// The twin model directory: `--models DIR`, else `$MODELS_DIR`, else `Schemas/models` in the
    /// current directory, in a folder above the executable (a build inside the source tree:
    /// `.build/debug/twinctl`), or in the source tree twinctl was built from. A directory counts
    /// when it holds `model.schema.json`. Fails at once naming the flag.
    static func modelsDirectory(_ args: Arguments) throws -> URL {
        let isModels = { (dir: URL) in FileManager.default.fileExists(atPath: dir.appendingPathComponent("model.schema.json").path) }
        if let given = args.string("models") ?? args.string("models-dir") ?? ProcessInfo.processInfo.environment["MODELS_DIR"].flatMap({ $0.isEmpty ? nil : $0 }) {
            let dir = URL(fileURLWithPath: given).standardizedFileURL
            guard isModels(dir) else {
                throw CommandFailure("\(dir.path) is not a twin model directory (no model.schema.json in it); give the folder of the model files with --models DIR")
            }
            return dir
        }
        for root in searchRoots() {
            let dir = root.appendingPathComponent("Schemas/models")
            if isModels(dir) { return dir.standardizedFileURL }
        }
        throw CommandFailure("cannot find the twin model files (Schemas/models) from \(FileManager.default.currentDirectoryPath), "
            + "beside \(executableDirectory().path) or in the source tree twinctl was built from; give their folder with --models DIR")
    }

    /// The current directory, each folder above the executable, and each folder above this source
    /// file (the tree twinctl was built from).
    static func searchRoots() -> [URL] {
        var roots = [URL(fileURLWithPath: FileManager.default.currentDirectoryPath)]
        for start in [executableDirectory(), URL(fileURLWithPath: #filePath).deletingLastPathComponent()] {
            var dir = start
            while dir.path != "/" {
                roots.append(dir)
                dir = dir.deletingLastPathComponent()
            }
        }
        return roots
    }
}
