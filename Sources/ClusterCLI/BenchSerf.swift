import ArgumentParser
import Cluster
import FoundationEssentials
import Glibc
import UV

/// What `cluster bench agents` and `cluster bench serf` measure of a set of agent processes at
/// rest, the same way for both: total CPU time (user and system, every thread) from
/// `/proc/<pid>/stat` over a window, and each process's resident set at its end.
struct ProcessesAtRest {
    let pids: [pid_t]

    /// utime + stime of process `pid` in clock ticks (all its threads), from /proc; nil if it
    /// cannot be read (the process ended).
    static func cpuTicks(of pid: pid_t) -> UInt64? {
        guard let bytes = try? UVFile.read(path: "/proc/\(pid)/stat") else { return nil }
        // The command name (field 2) is in parentheses and may hold spaces: count from after it.
        guard let close = bytes.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let fields = bytes[(close + 1)...].split(separator: UInt8(ascii: " "))
        // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
        guard fields.count > 12,
              let user = UInt64(String(decoding: fields[11], as: UTF8.self)),
              let system = UInt64(String(decoding: fields[12], as: UTF8.self)) else { return nil }
        return user + system
    }

    /// The measurement: CPU seconds of all the processes together over about `seconds` of wall
    /// time (nothing asks them anything meanwhile), and their resident sets at its end.
    struct Sample {
        var cpuSeconds: Double
        var wallSeconds: Double
        var rssKiB: [Double]

        /// The keys both benchmarks print.
        func fields(settleMs: Double) -> [(String, String)] {
            let agents = Double(rssKiB.count)
            let sorted = rssKiB.sorted()
            return [
                ("seconds", format(wallSeconds, 1)), ("cpu_s", format(cpuSeconds, 2)),
                // % of one core, all agents together, and per agent.
                ("cpu_pct_total", format(cpuSeconds / wallSeconds * 100, 2)),
                ("cpu_pct_per_agent", format(cpuSeconds / wallSeconds * 100 / agents, 3)),
                ("rss_kb_median", format(percentile(sorted, 50), 0)), ("rss_kb_max", format(sorted.last ?? 0, 0)),
                ("rss_kb_total", format(sorted.reduce(0, +), 0)), ("settle_ms", format(settleMs, 0)),
            ]
        }
    }

    /// Measures over `seconds`; throws naming the first process that ended meanwhile.
    func measure(seconds: Double, name: (pid_t) -> String) throws -> Sample {
        let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
        func total() throws -> UInt64 {
            var sum: UInt64 = 0
            for pid in pids {
                guard let ticks = Self.cpuTicks(of: pid) else { throw ValidationError("\(name(pid)) ended") }
                sum += ticks
            }
            return sum
        }
        let before = try total()
        let wallBefore = UVLoop.hrtimeNs()
        pause(seconds: seconds)
        let after = try total()
        let wall = Double(UVLoop.hrtimeNs() - wallBefore) / 1e9
        var rss: [Double] = []
        for pid in pids {
            guard let kib = BenchAgents.residentKiB(of: pid) else { throw ValidationError("\(name(pid)) ended") }
            rss.append(Double(kib))
        }
        return Sample(cpuSeconds: Double(after - before) / ticksPerSecond, wallSeconds: wall, rssKiB: rss)
    }
}

/// `cluster bench serf`: the yardstick of `cluster bench agents --membership gossip`: N `serf
/// agent` processes (HashiCorp Serf, memberlist's LAN profile: a probe every second) on
/// 127.0.0.1, the first alone and each other joining it; once every agent's `serf members` lists
/// all N alive, their CPU and memory are measured as `bench agents` measures its agents, and one
/// JSON line with the same keys is printed (`impl`: `serf`).
struct BenchSerf: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serf", abstract: "CPU and memory of N Serf agents at rest (the yardstick of `bench agents --membership gossip`).")

    @Option(help: "Serf agent processes.") var nodes = 64
    @Option(help: "How long the settled agents are measured.", transform: DurationArgument.parse)
    var seconds = DurationArgument(.seconds(10), text: "10s")
    @Option(help: "The serf executable (default: `serf` on the PATH).") var serf: String?
    @Option(help: "Ports are taken from here up (each checked free by binding it; below the kernel's ephemeral range).")
    var firstPort = 21000
    @OptionGroup var output: BenchOutput

    func validate() throws {
        guard (1...256).contains(nodes) else { throw ValidationError("--nodes must be 1...256") }
        guard (1024...60000).contains(firstPort) else { throw ValidationError("--first-port must be 1024...60000") }
    }

    /// `name` found in a directory of $PATH, or nil.
    static func onPath(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") where access("\(dir)/\(name)", X_OK) == 0 { return "\(dir)/\(name)" }
        return nil
    }

    func run() throws {
        guard let serf = serf ?? Self.onPath("serf") else {
            printError("cluster bench serf: no serf executable on the PATH (Debian: apt-get install serf), or give --serf")
            throw ExitCode(69)  // EX_UNAVAILABLE
        }
        // Started through setpriv --pdeathsig: killed with this process, whatever ends it.
        guard let setpriv = Self.onPath("setpriv") else {
            printError("cluster bench serf: setpriv (util-linux) not found: it ties each serf agent's life to this process")
            throw ExitCode(69)
        }
        let version = Self.version(of: serf)
        // Two ports per agent (the gossip's TCP and UDP on one, the RPC), each checked free.
        var next = firstPort
        func freePort() throws -> Int {
            while next < 65535 {
                defer { next += 1 }
                if UVPortCheck.canBind(host: "127.0.0.1", port: next) { return next }
            }
            throw ValidationError("no free ports left above \(firstPort)")
        }
        var agents: [SerfAgent] = []
        defer {
            for agent in agents { agent.process.signal(SIGKILL) }
            for agent in agents { _ = agent.process.waitForExit(seconds: .infinity) }
        }
        let started = UVLoop.hrtimeNs()
        for i in 1...nodes {
            progress("serf: starting \(i) of \(nodes)")
            let bind = try freePort(), rpc = try freePort()
            var arguments = ["--pdeathsig", "KILL", serf, "agent", "-node", "s\(i)", "-bind", "127.0.0.1:\(bind)",
                             "-rpc-addr", "127.0.0.1:\(rpc)", "-profile", "lan", "-log-level", "warn"]
            if let first = agents.first { arguments += ["-join", "127.0.0.1:\(first.bind)"] }
            let process = try UVChildProcess(path: setpriv, arguments: arguments)
            let agent = SerfAgent(id: "s\(i)", bind: bind, rpc: rpc, process: process)
            agents.append(agent)
            let banner = Array("agent running".utf8)
            guard process.waitForOutput(seconds: 20, until: { $0.firstRange(of: banner) != nil }) else {
                progressDone()
                throw ValidationError("serf agent \(agent.id) did not start: \(String(decoding: process.output, as: UTF8.self).suffix(500))")
            }
        }
        // Settled: every agent lists all N alive. Asked in turn, each until it does (one that did
        // is not asked again): each `serf members` is a process start, dear on a loaded machine.
        progress("serf: waiting until every agent lists \(nodes) alive")
        var pending = agents[...]
        let deadline = started + 180_000_000_000
        while let agent = pending.first, UVLoop.hrtimeNs() < deadline {
            if (try? agent.aliveMembers(serf: serf)) == nodes {
                pending.removeFirst()
            } else {
                pause(seconds: 0.2)
            }
        }
        guard pending.isEmpty else {
            progressDone()
            throw ValidationError("\(pending.count) serf agents did not list \(nodes) alive within 180 s (first: \(pending[0].id))")
        }
        let settleMs = Double(UVLoop.hrtimeNs() - started) / 1e6
        progress("serf: settled, warming up")
        pause(seconds: 2)
        progress("serf: measuring \(seconds)")
        let names = Dictionary(uniqueKeysWithValues: agents.map { ($0.process.pid, "serf agent \($0.id)") })
        let sample = try ProcessesAtRest(pids: agents.map(\.process.pid))
            .measure(seconds: Double(seconds.duration.nanoseconds) / 1e9) { names[$0] ?? "?" }
        // Still all alive everywhere? Asked of the first agent (asking all would only add to the wait).
        let alive = (try? agents[0].aliveMembers(serf: serf)) ?? 0
        progressDone()
        output.emit([
            ("impl", "\"serf\""), ("mode", "\"agents\""), ("membership", "\"serf\""), ("version", "\"\(version)\""),
            ("nodes", "\(nodes)"), ("profile", "\"lan\""), ("probe_interval_ms", "1000"),
        ] + sample.fields(settleMs: settleMs) + [("alive_after", "\(alive)")])
        if alive != nodes { throw ExitCode.failure }
    }

    /// The first line of `serf version` ("Serf v0.8.2-dev" as Debian's package prints it).
    static func version(of serf: String) -> String {
        guard let process = try? UVChildProcess(path: serf, arguments: ["version"]), process.waitForExit(seconds: 10) == 0 else { return "?" }
        let line = String(decoding: process.output, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? "?"
        return line.filter { $0 != "\"" && $0 != "\\" }
    }
}

/// One `serf agent` process of `cluster bench serf`.
struct SerfAgent {
    let id: String
    let bind: Int
    let rpc: Int
    let process: UVChildProcess

    /// How many members `serf members` on this agent lists as alive.
    func aliveMembers(serf: String) throws -> Int {
        let query = try UVChildProcess(path: serf, arguments: ["members", "-rpc-addr", "127.0.0.1:\(rpc)", "-status", "alive"])
        guard let status = query.waitForExit(seconds: 10) else {
            query.signal(SIGKILL)
            _ = query.waitForExit(seconds: .infinity)
            throw ValidationError("serf members on \(id) did not answer within 10 s")
        }
        guard status == 0 else { throw ValidationError("serf members on \(id) failed (\(status))") }
        return String(decoding: query.output, as: UTF8.self).split(separator: "\n").filter { $0.contains("alive") }.count
    }
}
