import Glibc

// The standard `process_*` metrics every Prometheus client exports, read from /proc/self at
// scrape time so they cost nothing between scrapes.

extension MetricsRegistry {
    /// Registers `process_cpu_seconds_total`, `process_resident_memory_bytes`,
    /// `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds` and
    /// `process_start_time_seconds` (Linux only: they read /proc). Values that cannot be read
    /// are reported as NaN rather than failing the scrape.
    public func registerProcessMetrics() {
        let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
        let pageSize = Double(sysconf(Int32(_SC_PAGESIZE)))

        counter("process_cpu_seconds_total", help: "Total user and system CPU time spent in seconds.") {
            guard let fields = ProcessStat.read(), fields.count > 12,
                  let user = Double(fields[11]), let system = Double(fields[12]) else { return .nan }
            return (user + system) / ticksPerSecond
        }
        gauge("process_resident_memory_bytes", help: "Resident memory size in bytes.") {
            ProcessStat.statm(field: 1).map { $0 * pageSize } ?? .nan
        }
        gauge("process_virtual_memory_bytes", help: "Virtual memory size in bytes.") {
            ProcessStat.statm(field: 0).map { $0 * pageSize } ?? .nan
        }
        gauge("process_open_fds", help: "Number of open file descriptors.") {
            ProcessStat.openFileDescriptors().map(Double.init) ?? .nan
        }
        gauge("process_max_fds", help: "Maximum number of open file descriptors.") {
            var limit = rlimit()
            guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return .nan }
            return limit.rlim_cur == rlim_t.max ? .infinity : Double(limit.rlim_cur)
        }
        // The start time never changes: compute it once instead of at every scrape.
        let startTime = ProcessStat.startTimeSeconds(ticksPerSecond: ticksPerSecond) ?? .nan
        gauge("process_start_time_seconds", help: "Start time of the process since unix epoch in seconds.") { startTime }
    }
}

/// Readers for the few /proc files the process metrics need.
enum ProcessStat {
    /// Whole contents of a /proc file; their reported size is 0, so read until EOF.
    static func readFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                bytes.append(contentsOf: chunk[0..<n])
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                break
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Fields of /proc/self/stat after the command name, so index 0 is field 3 (`state`).
    /// The name is in parentheses and may itself contain spaces or parentheses, hence the
    /// split after the last `)`.
    static func read() -> [Substring]? {
        guard let text = readFile("/proc/self/stat"), let close = text.lastIndex(of: ")") else { return nil }
        return text[text.index(after: close)...].split(separator: " ")
    }

    /// One field of /proc/self/statm, in pages (0: size, 1: resident).
    static func statm(field: Int) -> Double? {
        guard let text = readFile("/proc/self/statm") else { return nil }
        let fields = text.split(separator: " ")
        return fields.count > field ? Double(fields[field]) : nil
    }

    /// Entries in /proc/self/fd, minus the descriptor used to list it.
    static func openFileDescriptors() -> Int? {
        guard let dir = opendir("/proc/self/fd") else { return nil }
        defer { closedir(dir) }
        var count = 0
        while let entry = readdir(dir) {
            let isDot = withUnsafeBytes(of: entry.pointee.d_name) { name in name[0] == 46 && (name[1] == 0 || (name[1] == 46 && name[2] == 0)) }
            if !isDot { count += 1 }
        }
        return count - 1
    }

    /// Boot time from /proc/stat plus the process's start (field 22 of /proc/self/stat, in
    /// clock ticks since boot).
    static func startTimeSeconds(ticksPerSecond: Double) -> Double? {
        guard let fields = read(), fields.count > 19, let ticks = Double(fields[19]),
              let stat = readFile("/proc/stat"),
              let line = stat.split(separator: "\n").first(where: { $0.hasPrefix("btime ") }),
              let boot = Double(line.dropFirst(6)) else { return nil }
        return boot + ticks / ticksPerSecond
    }
}
