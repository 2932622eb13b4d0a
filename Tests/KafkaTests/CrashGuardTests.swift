import CrashGuard
import Foundation
import Glibc
import XCTest

/// An assertion inside librdkafka aborts on one of its threads, which block every signal. The
/// Swift runtime's crash backtracer then waited forever (CI sat 70 minutes on one such abort): a
/// crashed service must die at once so its orchestrator restarts it, and a crashed test run must
/// end.
final class CrashGuardTests: XCTestCase {
    func testAnAbortOnAThreadThatBlocksEverySignalKillsTheProcessAtOnceAndSaysWhere() throws {
        if ProcessInfo.processInfo.environment["TWINSTREAM_CRASH_GUARD_CHILD"] == "1" {
            // As a librdkafka assertion does: abort on a thread that blocks every signal.
            _ = twinstream_crash_guard_install()
            Thread.detachNewThread {
                var all = sigset_t()
                sigfillset(&all)
                pthread_sigmask(SIG_BLOCK, &all, nil)
                Thread.current.name = "rdk:main"  // the kernel thread name the guard reports
                abort()
            }
            Thread.sleep(forTimeInterval: 60)
        }
        // This test binary again, running only this test, as the child that aborts; spawned and
        // reaped directly (Foundation's Process did not reap a child killed while stuck).
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("crash-guard-\(UUID().uuidString).log")
        defer { try? FileManager.default.removeItem(at: log) }
        let arguments = [ProcessInfo.processInfo.arguments[0],
                         "KafkaTests.CrashGuardTests/testAnAbortOnAThreadThatBlocksEverySignalKillsTheProcessAtOnceAndSaysWhere"]
        let environment = ProcessInfo.processInfo.environment.merging(["TWINSTREAM_CRASH_GUARD_CHILD": "1"]) { _, new in new }.map { "\($0)=\($1)" }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, log.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var argv = arguments.map { strdup($0) } + [nil]
        var envp = environment.map { strdup($0) } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid: pid_t = 0
        XCTAssertEqual(posix_spawn(&pid, arguments[0], &actions, nil, &argv, &envp), 0)
        var status: Int32 = 0
        let deadline = Date().addingTimeInterval(60)
        var reaped = false
        while !reaped && Date() < deadline {
            reaped = waitpid(pid, &status, WNOHANG) == pid
            if !reaped { usleep(50_000) }
        }
        let hung = !reaped
        if hung { kill(pid, SIGKILL); waitpid(pid, &status, 0) }
        let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        XCTAssertFalse(hung, "the aborted process was still alive after 60 s:\n\(output.suffix(2000))")
        XCTAssertEqual(status & 0x7f, SIGABRT, "killed by signal \(status & 0x7f), exit status \((status >> 8) & 0xff):\n\(output.suffix(2000))")
        XCTAssertTrue(output.contains(#"*** aborted on thread "rdk:main""#), output)
    }
}
