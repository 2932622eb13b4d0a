import Foundation

// Running the real tools that read the files under Deploy/ (docker-compose, promtool, prometheus,
// amtool): found on PATH, never installed by a test. `scripts/bootstrap.sh` installs them; a
// missing tool fails the test with the package to install.

/// The output of a finished command.
struct CommandResult {
    let status: Int32
    let stdout: String
    let stderr: String

    /// Both streams, for failure messages.
    var output: String { stdout + stderr }
}

/// A tool that is missing or misbehaved, with what to do about it.
struct ToolFailure: Error, CustomStringConvertible {
    let description: String
}

/// The directory holding Package.swift, found by walking up from this source file.
func repositoryRoot(from file: String = #filePath) throws -> URL {
    var directory = URL(fileURLWithPath: file).deletingLastPathComponent()
    while directory.path != "/" {
        if FileManager.default.fileExists(atPath: directory.appendingPathComponent("Package.swift").path) {
            return directory
        }
        directory = directory.deletingLastPathComponent()
    }
    throw ToolFailure(description: "no Package.swift above \(file)")
}

/// `name` on PATH, or nil.
func findExecutable(_ name: String) -> URL? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
    for directory in path.split(separator: ":") where !directory.isEmpty {
        let candidate = URL(fileURLWithPath: String(directory)).appendingPathComponent(name)
        if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
    }
    return nil
}

/// `name` on PATH, or a failure naming the Debian package that provides it.
func requireTool(_ name: String, package: String) throws -> URL {
    guard let found = findExecutable(name) else {
        throw ToolFailure(description: """
            \(name) is not on PATH: install Debian's \(package) (scripts/bootstrap.sh does, and CI runs it). \
            This test checks the shipped files with the real tool and does not install anything itself.
            """)
    }
    return found
}

/// Runs a command with output captured in temporary files (no pipe can fill up and stall it),
/// killing it after `timeout` seconds.
func runProcess(_ executable: URL, _ arguments: [String], in directory: URL, timeout: TimeInterval) throws -> CommandResult {
    let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("tool-run-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: scratch) }
    let outURL = scratch.appendingPathComponent("stdout")
    let errURL = scratch.appendingPathComponent("stderr")
    _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
    let out = try FileHandle(forWritingTo: outURL)
    let err = try FileHandle(forWritingTo: errURL)
    defer {
        try? out.close()
        try? err.close()
    }

    let process = Process()
    configure(process, executable, arguments, in: directory, stdout: out, stderr: err)
    let exited = DispatchSemaphore(value: 0)
    process.terminationHandler = { _ in exited.signal() }
    try process.run()
    if exited.wait(timeout: .now() + timeout) == .timedOut {
        process.terminate()
        process.waitUntilExit()
        throw ToolFailure(description: "\(executable.path) \(arguments.joined(separator: " ")) did not finish in \(Int(timeout)) s")
    }
    process.waitUntilExit()
    let stdout = (try? String(contentsOf: outURL, encoding: .utf8)) ?? ""
    let stderr = (try? String(contentsOf: errURL, encoding: .utf8)) ?? ""
    return CommandResult(status: process.terminationStatus, stdout: stdout, stderr: stderr)
}

/// A tool's process: no input, output to the given files.
private func configure(_ process: Process, _ executable: URL, _ arguments: [String], in directory: URL, stdout: FileHandle, stderr: FileHandle) {
    process.executableURL = executable
    process.arguments = arguments
    process.currentDirectoryURL = directory
    process.standardInput = FileHandle.nullDevice
    process.standardOutput = stdout
    process.standardError = stderr
}

/// A long-running tool (a Prometheus server) started for one test, its output in `log`;
/// `stop()` (or deinit) ends it with SIGTERM, then SIGKILL.
final class ToolProcess: @unchecked Sendable {
    let process = Process()
    let log: URL

    init(_ executable: URL, _ arguments: [String], log: URL, in directory: URL) throws {
        self.log = log
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        configure(process, executable, arguments, in: directory, stdout: handle, stderr: handle)
        try process.run()
    }

    /// The last `bytes` of its output, for failure messages.
    func tail(_ bytes: Int = 4000) -> String {
        let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        return String(text.suffix(bytes))
    }

    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    deinit { stop() }
}
