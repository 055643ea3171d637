import ArgumentParser
import Cluster
import ClusterCore
import Dispatch
import FoundationEssentials
import Glibc
import UV

/// `cluster bench etcd`: five etcd members beside five `cluster agent` processes (this
/// executable), on 127.0.0.1, on the same heartbeat interval and election timeout, measured the
/// same way, one side after the other: a planned handover (etcd's `move-leader`, the
/// `transfer-leadership` request of its gRPC gateway; ours, the JSON `transfer` request), the
/// leader killed (SIGKILL) until a majority of the members name one new leader, and the CPU of
/// the five processes at rest. Each side prints one JSON line with the same keys. A side whose
/// program is missing (etcd) is skipped, saying how to install it.
///
/// Both sides are watched alike: the members' status asked in turn over TCP (etcd's
/// `/v3/maintenance/status`, ours `status`) by one client loop, each request on a connection of
/// its own. Durable writes are each member's count of them (etcd's
/// `etcd_disk_wal_fsync_duration_seconds_count`, ours `cluster_persist_duration_seconds_count`),
/// read from its `/metrics` before a handover and a second after it.
struct BenchEtcd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "etcd",
        abstract: "Five etcd members beside five cluster agents: handover, leader crash, CPU at rest.")

    enum Side: String, ExpressibleByArgument, CaseIterable { case both, etcd, cluster }

    @Option(help: "both, etcd or cluster.") var side: Side = .both
    @Option(help: "Members on each side.") var nodes = 5
    @Option(help: "rest, handover, crash, or a comma list run in order.") var scenario = "rest,handover,crash"
    @Option(help: "Handover and crash trials.") var trials = 20
    @Option(help: "Heartbeat interval.", transform: DurationArgument.parse) var heartbeatInterval = DurationArgument(.milliseconds(50), text: "50ms")
    @Option(help: "Election timeout.", transform: DurationArgument.parse) var electionTimeout = DurationArgument(.milliseconds(500), text: "500ms")
    @Option(help: "Seconds measured at rest.") var restSeconds = 10.0
    @Option(help: "The etcd program.") var etcd = "etcd"
    @Option(help: "Write each handover's time (ms) to FILE-IMPL (one per line).") var samplesFile: String?
    @OptionGroup var output: BenchOutput

    static let installHint = "apt-get install etcd-server etcd-client"

    func validate() throws {
        guard (3...9).contains(nodes) else { throw ValidationError("--nodes must be 3...9") }
        guard (1...1000).contains(trials) else { throw ValidationError("--trials must be 1...1000") }
        guard heartbeatInterval.duration < electionTimeout.duration else {
            throw ValidationError("--heartbeat-interval must be shorter than --election-timeout")
        }
        guard restSeconds > 0 && restSeconds <= 600 else { throw ValidationError("--rest-seconds must be in (0, 600]") }
        for s in scenarios where !["rest", "handover", "crash"].contains(s) {
            throw ValidationError("unknown scenario \(s): rest, handover or crash")
        }
    }

    var scenarios: [String] { scenario.split(separator: ",").map { String($0).trimmingWhitespace() } }
    var heartbeatMs: Int { Int(heartbeatInterval.duration.nanoseconds / 1_000_000) }
    var electionMs: Int { Int(electionTimeout.duration.nanoseconds / 1_000_000) }

    func run() throws {
        let client = try BenchHTTPClient()
        var failed = false
        if side != .cluster {
            if let path = Self.findProgram(etcd) {
                failed = try measure(EtcdMembers(program: path, nodes: nodes, heartbeatMs: heartbeatMs, electionMs: electionMs, client: client)) || failed
            } else {
                printError("bench etcd: \(etcd) not found, its side is skipped (install it: \(Self.installHint))")
            }
        }
        if side != .etcd {
            failed = try measure(AgentMembers(nodes: nodes, heartbeat: heartbeatInterval, election: electionTimeout, client: client)) || failed
        }
        if failed { throw ExitCode.failure }
    }

    /// `name` if it is a path to an executable, else the first executable of that name on $PATH.
    static func findProgram(_ name: String) -> String? {
        if name.contains("/") { return access(name, X_OK) == 0 ? name : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") where access("\(dir)/\(name)", X_OK) == 0 { return "\(dir)/\(name)" }
        return nil
    }

    /// Runs the scenarios on one side and prints its line; true if a trial failed.
    private func measure(_ members: some BenchMemberSet) throws -> Bool {
        defer { members.stopAll() }
        let impl = members.impl
        progress("\(impl): starting \(nodes) members")
        try members.startAll()
        guard waitForLeader(members, among: Array(0..<nodes), other: nil, quorum: nodes, timeout: 60) != nil else {
            progressDone()
            printError("bench etcd: \(impl): no leader agreed by all within 60 s")
            return true
        }
        pause(seconds: 2)
        var fields: [(String, String)] = [
            ("impl", "\"\(impl)\""), ("mode", "\"etcd-pair\""), ("nodes", "\(nodes)"),
            ("heartbeat_ms", "\(heartbeatMs)"), ("election_timeout_ms", "\(electionMs)"),
            ("scenario", "\"\(scenarios.joined(separator: ","))\""),
        ]
        var failedTrials = 0
        let majority = nodes / 2 + 1
        for scenario in scenarios {
            switch scenario {
            case "rest":
                progress("\(impl): at rest, \(format(restSeconds, 0)) s")
                let pids = members.pids
                let before = pids.map { Self.cpuTicks(of: $0) ?? 0 }
                let wallBefore = UVLoop.hrtimeNs()
                pause(seconds: restSeconds)
                let after = pids.map { Self.cpuTicks(of: $0) ?? 0 }
                let wall = Double(UVLoop.hrtimeNs() - wallBefore) / 1e9
                let ticks = zip(after, before).reduce(0) { $0 + ($1.0 - $1.1) }
                let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
                fields.append(("rest_cpu_pct", format(Double(ticks) / hz / wall * 100, 2)))
            case "handover":
                var times: [Double] = []
                var writes: [Double] = []
                var targetWrites: [Double] = []
                for trial in 1...trials {
                    progress("\(impl): handover \(trial) of \(trials)")
                    guard let leader = waitForLeader(members, among: Array(0..<nodes), other: nil, quorum: nodes, timeout: 30) else {
                        failedTrials += 1
                        continue
                    }
                    pause(seconds: 0.3)
                    let target = (leader + 1) % nodes
                    let countsBefore = (0..<nodes).map { members.durableWrites(of: $0) ?? 0 }
                    let done = DispatchSemaphore(value: 0)
                    let start = UVLoop.hrtimeNs()
                    DispatchQueue.global().async {
                        members.transfer(from: leader, to: target)
                        done.signal()
                    }
                    let seen = waitForNamed(members, target: target, among: Array(0..<nodes), quorum: majority, timeout: 10)
                    let ms = Double(UVLoop.hrtimeNs() - start) / 1e6
                    let targetNow = members.durableWrites(of: target) ?? 0
                    done.wait()
                    guard seen else {
                        failedTrials += 1
                        continue
                    }
                    times.append(ms)
                    if ms > Double(electionMs) / 2 {
                        // A handover slower than half an election timeout: what the members logged.
                        progressDone()
                        printError("bench etcd: \(impl): handover \(trial) (\(leader + 1) → \(target + 1)) took \(format(ms, 1)) ms; the members logged:")
                        for i in 0..<nodes { printError(members.log(of: i).split(separator: "\n").suffix(6).map { "  [\(i + 1)] \($0)" }.joined(separator: "\n")) }
                    }
                    targetWrites.append(Double(targetNow - countsBefore[target]))
                    pause(seconds: 1)  // what follows the handover (etcd's empty entry, our configuration) is written
                    let countsAfter = (0..<nodes).map { members.durableWrites(of: $0) ?? 0 }
                    writes.append(Double(zip(countsAfter, countsBefore).reduce(0) { $0 + ($1.0 - $1.1) }))
                }
                if let samplesFile {
                    try (times.map { format($0, 3) }.joined(separator: "\n") + "\n").write(toFile: "\(samplesFile)-\(impl)", atomically: true, encoding: .utf8)
                }
                let sync = (0..<nodes).compactMap { members.syncSeconds(of: $0) }
                let syncCount = sync.reduce(0) { $0 + $1.count }
                let sorted = times.sorted()
                fields += [
                    ("sync_ms_mean", format(syncCount == 0 ? 0 : sync.reduce(0) { $0 + $1.sum } / Double(syncCount) * 1000, 3)),
                    ("handover_trials", "\(times.count)"),
                    ("handover_p50_ms", format(percentile(sorted, 50), 2)), ("handover_p99_ms", format(percentile(sorted, 99), 2)),
                    ("handover_max_ms", format(sorted.last ?? 0, 2)),
                    ("handover_writes_median", format(percentile(writes.sorted(), 50), 1)),
                    ("handover_writes_mean", format(writes.isEmpty ? 0 : writes.reduce(0, +) / Double(writes.count), 2)),
                    ("handover_target_writes_median", format(percentile(targetWrites.sorted(), 50), 1)),
                ]
            case "crash":
                var times: [Double] = []
                for trial in 1...trials {
                    progress("\(impl): crash \(trial) of \(trials)")
                    guard let leader = waitForLeader(members, among: Array(0..<nodes), other: nil, quorum: nodes, timeout: 30) else {
                        failedTrials += 1
                        continue
                    }
                    pause(seconds: 0.3)
                    let survivors = (0..<nodes).filter { $0 != leader }
                    let start = UVLoop.hrtimeNs()
                    members.kill(leader)
                    let next = waitForLeader(members, among: survivors, other: leader, quorum: majority, timeout: 20)
                    let ms = Double(UVLoop.hrtimeNs() - start) / 1e6
                    if next != nil { times.append(ms) } else { failedTrials += 1 }
                    try members.restart(leader)
                }
                let sorted = times.sorted()
                fields += [
                    ("crash_trials", "\(times.count)"),
                    ("crash_p50_ms", format(percentile(sorted, 50), 1)), ("crash_p99_ms", format(percentile(sorted, 99), 1)),
                    ("crash_max_ms", format(sorted.last ?? 0, 1)),
                ]
            default:
                break
            }
        }
        progressDone()
        fields.append(("failed_trials", "\(failedTrials)"))
        output.emit(fields)
        return failedTrials > 0
    }

    /// Asks the members of `among` in turn until `quorum` of them name one leader (not `other`)
    /// which is one of them; returns it (nil after `timeout` seconds).
    private func waitForLeader(_ members: some BenchMemberSet, among: [Int], other: Int?, quorum: Int, timeout: Double) -> Int? {
        let deadline = UVLoop.hrtimeNs() + UInt64(timeout * 1e9)
        var named = [Int?](repeating: nil, count: nodes)
        while UVLoop.hrtimeNs() < deadline {
            for i in among {
                named[i] = members.leader(seenBy: i)
                var counts: [Int: Int] = [:]
                for j in among { if let l = named[j], l != other { counts[l, default: 0] += 1 } }
                if let (leader, n) = counts.max(by: { $0.value < $1.value }), n >= quorum, among.contains(leader) { return leader }
            }
        }
        return nil
    }

    /// Asks the members in turn until `quorum` of them name `target` as their leader.
    private func waitForNamed(_ members: some BenchMemberSet, target: Int, among: [Int], quorum: Int, timeout: Double) -> Bool {
        let deadline = UVLoop.hrtimeNs() + UInt64(timeout * 1e9)
        var named = [Int?](repeating: nil, count: nodes)
        while UVLoop.hrtimeNs() < deadline {
            for i in among {
                named[i] = members.leader(seenBy: i)
                if among.filter({ named[$0] == target }).count >= quorum { return true }
            }
        }
        return false
    }

    /// User plus system CPU of a process, in clock ticks, from /proc/PID/stat.
    static func cpuTicks(of pid: pid_t) -> Int? {
        guard let bytes = try? UVFile.read(path: "/proc/\(pid)/stat") else { return nil }
        let text = String(decoding: bytes, as: UTF8.self)
        // After the command name (in parentheses, which may hold spaces): state is field 3,
        // utime field 14, stime field 15.
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let utime = Int(fields[11]), let stime = Int(fields[12]) else { return nil }
        return utime + stime
    }
}

/// The members of one side, numbered 0..<n.
protocol BenchMemberSet: Sendable {
    var impl: String { get }
    var pids: [pid_t] { get }
    func startAll() throws
    func stopAll()
    /// The leader member `i` names, as a member number (nil: none, or it did not answer).
    func leader(seenBy i: Int) -> Int?
    /// Asks member `from` (the leader) to hand over to `to`; returns once it answered.
    func transfer(from: Int, to: Int)
    func kill(_ i: Int)
    func restart(_ i: Int) throws
    /// The durable writes member `i` has made since it started (nil: it did not answer).
    func durableWrites(of i: Int) -> Int?
    /// The end of what member `i` has logged.
    func log(of i: Int) -> String
    /// The number of its durable writes and the seconds they took in all (its metrics' histogram).
    func syncSeconds(of i: Int) -> (count: Int, sum: Double)?
}

/// Free TCP ports on 127.0.0.1, as the kernel picks them (each bound to port 0 and closed: the
/// members then bind them; a benchmark's members, not a test's).
func benchFreePorts(_ count: Int, loop: UVLoop) throws -> [Int] {
    let ports = UVLocked<[Int]>([])
    let done = UVSemaphore()
    let started = loop.execute {
        var listeners: [UVTCPListener] = []
        for _ in 0..<count {
            if let l = try? UVTCPListener(loop: loop, host: "127.0.0.1", port: 0, onConnection: { $0.close() }) { listeners.append(l) }
        }
        ports.withLock { $0 = listeners.map(\.port) }
        for l in listeners { l.close() }
        done.signal()
    }
    guard started else { throw ValidationError("the client loop stopped") }
    done.wait()
    let result = ports.withLock { $0 }
    guard result.count == count else { throw ValidationError("could not find \(count) free ports") }
    return result
}

/// The `_count` and `_sum` of a Prometheus histogram `metric` at `port`'s `/metrics`.
func prometheusHistogram(_ client: BenchHTTPClient, port: Int, metric: String) -> (count: Int, sum: Double)? {
    guard let body = client.http("GET", port: port, path: "/metrics", body: nil) else { return nil }
    let text = String(decoding: body, as: UTF8.self)
    guard let count = prometheusSum(text, metric: metric + "_count") else { return nil }
    var sum = 0.0
    for line in text.split(separator: "\n") where line.hasPrefix(metric + "_sum") {
        sum += line.split(separator: " ").last.flatMap { Double($0) } ?? 0
    }
    return (count, sum)
}

/// Sums the values of the Prometheus lines of `metric` (any labels) in `text`.
func prometheusSum(_ text: String, metric: String) -> Int? {
    var total = 0.0
    var found = false
    for line in text.split(separator: "\n") where line.hasPrefix(metric) {
        let rest = line.dropFirst(metric.count)
        guard rest.first == " " || rest.first == "{" else { continue }
        if let value = line.split(separator: " ").last.flatMap({ Double($0) }) {
            total += value
            found = true
        }
    }
    return found ? Int(total) : nil
}

/// Five etcd processes (`etcd`, version 3.4 or later), data directories under a temporary one.
final class EtcdMembers: BenchMemberSet, @unchecked Sendable {
    let impl = "etcd"
    private let program: String
    private let nodes: Int
    private let heartbeatMs: Int
    private let electionMs: Int
    private let client: BenchHTTPClient
    private let root: String
    private let lock = UVMutex()
    private var processes: [UVChildProcess?]
    private var clientPorts: [Int] = []
    private var peerPorts: [Int] = []
    /// Member ids (decimal, as the gateway writes them) by member number.
    private var ids: [String] = []

    init(program: String, nodes: Int, heartbeatMs: Int, electionMs: Int, client: BenchHTTPClient) {
        self.program = program
        self.nodes = nodes
        self.heartbeatMs = heartbeatMs
        self.electionMs = electionMs
        self.client = client
        root = temporaryDirectory() + "cluster-bench-etcd-\(getpid())"
        processes = Array(repeating: nil, count: nodes)
    }

    var pids: [pid_t] { lock.withLock { processes.compactMap { $0?.pid } } }

    private func arguments(_ i: Int) -> [String] {
        let cluster = (0..<nodes).map { "e\($0 + 1)=http://127.0.0.1:\(peerPorts[$0])" }.joined(separator: ",")
        return [
            "--name", "e\(i + 1)", "--data-dir", "\(root)/e\(i + 1)",
            "--listen-client-urls", "http://127.0.0.1:\(clientPorts[i])", "--advertise-client-urls", "http://127.0.0.1:\(clientPorts[i])",
            "--listen-peer-urls", "http://127.0.0.1:\(peerPorts[i])", "--initial-advertise-peer-urls", "http://127.0.0.1:\(peerPorts[i])",
            "--initial-cluster", cluster, "--initial-cluster-state", "new", "--initial-cluster-token", "cluster-bench",
            "--heartbeat-interval", "\(heartbeatMs)", "--election-timeout", "\(electionMs)",
            "--logger", "zap", "--log-level", "error",
        ]
    }

    func startAll() throws {
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let ports = try benchFreePorts(2 * nodes, loop: client.loop)
        clientPorts = Array(ports[0..<nodes])
        peerPorts = Array(ports[nodes...])
        for i in 0..<nodes { try restart(i) }
        // Member ids, from each one's status.
        let deadline = UVLoop.hrtimeNs() + 30_000_000_000
        var found = [String?](repeating: nil, count: nodes)
        while found.contains(where: { $0 == nil }), UVLoop.hrtimeNs() < deadline {
            for i in 0..<nodes where found[i] == nil { found[i] = status(i)?.header.member_id }
            if found.contains(where: { $0 == nil }) { pause(seconds: 0.1) }
        }
        guard found.allSatisfy({ $0 != nil }) else { throw ValidationError("etcd members did not answer within 30 s") }
        ids = found.map { $0! }
    }

    func stopAll() {
        for p in lock.withLock({ processes }) {
            p?.signal(SIGKILL)
            _ = p?.waitForExit(seconds: 10)
        }
        try? FileManager.default.removeItem(atPath: root)
    }

    struct Status: Decodable {
        struct Header: Decodable { var member_id: String }
        var header: Header
        var leader: String?
    }

    private func status(_ i: Int) -> Status? {
        guard let body = client.http("POST", port: clientPorts[i], path: "/v3/maintenance/status", body: "{}") else { return nil }
        return try? JSONDecoder().decode(Status.self, from: Data(body))
    }

    func leader(seenBy i: Int) -> Int? {
        guard let leader = status(i)?.leader, leader != "0" else { return nil }
        return ids.firstIndex(of: leader)
    }

    func transfer(from: Int, to: Int) {
        let other = BenchHTTPClient.oneShot()
        _ = other?.http("POST", port: clientPorts[from], path: "/v3/maintenance/transfer-leadership",
                        body: "{\"targetID\":\"\(ids[to])\"}", timeoutMs: 10_000)
        other?.loop.shutdown()
    }

    func kill(_ i: Int) {
        guard let p = lock.withLock({ processes[i] }) else { return }
        p.signal(SIGKILL)
        _ = p.waitForExit(seconds: 10)
    }

    func restart(_ i: Int) throws {
        let p = try UVChildProcess(path: program, arguments: arguments(i))
        lock.withLock { processes[i] = p }
    }

    func durableWrites(of i: Int) -> Int? {
        guard let body = client.http("GET", port: clientPorts[i], path: "/metrics", body: nil) else { return nil }
        return prometheusSum(String(decoding: body, as: UTF8.self), metric: "etcd_disk_wal_fsync_duration_seconds_count")
    }

    func log(of i: Int) -> String {
        String(decoding: (lock.withLock { processes[i] }?.output ?? []).suffix(4096), as: UTF8.self)
    }

    func syncSeconds(of i: Int) -> (count: Int, sum: Double)? {
        prometheusHistogram(client, port: clientPorts[i], metric: "etcd_disk_wal_fsync_duration_seconds")
    }
}

/// Five `cluster agent` processes (this executable), as `cluster demo` starts them, on ports
/// chosen at the start and kept across restarts.
final class AgentMembers: BenchMemberSet, @unchecked Sendable {
    let impl = "swift-cluster"
    private let nodes: Int
    private let heartbeat: DurationArgument
    private let election: DurationArgument
    private let client: BenchHTTPClient
    private let root: String
    private let lock = UVMutex()
    private var processes: [UVChildProcess?]
    private var ports: [Int] = []
    private var names: [String] { (0..<nodes).map { "a\($0 + 1)" } }

    init(nodes: Int, heartbeat: DurationArgument, election: DurationArgument, client: BenchHTTPClient) {
        self.nodes = nodes
        self.heartbeat = heartbeat
        self.election = election
        self.client = client
        root = temporaryDirectory() + "cluster-bench-etcd-agents-\(getpid())"
        processes = Array(repeating: nil, count: nodes)
    }

    var pids: [pid_t] { lock.withLock { processes.compactMap { $0?.pid } } }

    func startAll() throws {
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        ports = try benchFreePorts(nodes, loop: client.loop)
        for i in 0..<nodes { try restart(i) }
    }

    func stopAll() {
        for p in lock.withLock({ processes }) {
            p?.signal(SIGKILL)
            _ = p?.waitForExit(seconds: 10)
        }
        try? FileManager.default.removeItem(atPath: root)
    }

    func restart(_ i: Int) throws {
        // As the README starts them: the first is every other's seed, and has none itself.
        let seeds = i == 0 ? [] : ["--seeds", "127.0.0.1:\(ports[0])"]
        let p = try UVChildProcess(path: UVChildProcess.executablePath(), arguments: [
            "agent", "--id", names[i], "--listen", "127.0.0.1:\(ports[i])", "--data-dir", "\(root)/\(names[i])",
            "--exit-with-parent", "--voters", names.joined(separator: ","),
            "--min-quorum", "\(nodes / 2 + 1)",
            "--heartbeat-interval", heartbeat.text, "--election-timeout", election.text, "--log-level", "warning",
        ] + seeds)
        lock.withLock { processes[i] = p }
    }

    func leader(seenBy i: Int) -> Int? {
        guard let line = client.line(port: ports[i], JSONMessage.status.encodeLine()),
              case .statusResponse(let status)? = try? JSONMessage.decode(line: line),
              let leader = status.leaderID
        else { return nil }
        return names.firstIndex(of: leader)
    }

    func transfer(from: Int, to: Int) {
        let other = BenchHTTPClient.oneShot()
        _ = other?.line(port: ports[from], JSONMessage.transfer(to: names[to]).encodeLine(), timeoutMs: 10_000)
        other?.loop.shutdown()
    }

    func kill(_ i: Int) {
        guard let p = lock.withLock({ processes[i] }) else { return }
        p.signal(SIGKILL)
        _ = p.waitForExit(seconds: 10)
    }

    func durableWrites(of i: Int) -> Int? {
        guard let body = client.http("GET", port: ports[i], path: "/metrics", body: nil) else { return nil }
        return prometheusSum(String(decoding: body, as: UTF8.self), metric: "cluster_persist_duration_seconds_count")
    }

    func log(of i: Int) -> String {
        String(decoding: (lock.withLock { processes[i] }?.output ?? []).suffix(4096), as: UTF8.self)
    }

    func syncSeconds(of i: Int) -> (count: Int, sum: Double)? {
        prometheusHistogram(client, port: ports[i], metric: "cluster_persist_duration_seconds")
    }
}

/// One loop thread that asks 127.0.0.1 services, one request per connection: an HTTP/1.1
/// request read to the connection's end, or a JSON line answered by one line. Blocks the
/// calling thread; one caller at a time.
final class BenchHTTPClient: @unchecked Sendable {
    let loop: UVLoop

    init() throws { loop = try UVLoop(name: "bench-client") }

    static func oneShot() -> BenchHTTPClient? { try? BenchHTTPClient() }

    deinit { loop.shutdown() }

    /// The body of an HTTP answer with status 200 (nil: another status, or no answer in time).
    func http(_ method: String, port: Int, path: String, body: String?, timeoutMs: UInt64 = 2000) -> [UInt8]? {
        var request = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
        if let body { request += "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n" }
        request += "\r\n" + (body ?? "")
        guard let answer = exchange(port: port, request: Array(request.utf8), oneLine: false, timeoutMs: timeoutMs) else { return nil }
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        guard let head = answer.firstRange(of: separator) else { return nil }
        let statusLine = String(decoding: answer[..<head.lowerBound].prefix { $0 != 13 }, as: UTF8.self)
        guard statusLine.split(separator: " ").dropFirst().first == "200" else { return nil }
        var content = Array(answer[head.upperBound...])
        let headers = String(decoding: answer[..<head.lowerBound], as: UTF8.self).lowercased()
        if headers.contains("transfer-encoding: chunked") { content = Self.unchunk(content) }
        return content
    }

    /// The first line a JSON-lines service answers `request` (a line) with.
    func line(port: Int, _ request: [UInt8], timeoutMs: UInt64 = 2000) -> [UInt8]? {
        exchange(port: port, request: request, oneLine: true, timeoutMs: timeoutMs)
    }

    private static func unchunk(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            guard let end = bytes[i...].firstRange(of: [13, 10]) else { break }
            let size = Int(String(decoding: bytes[i..<end.lowerBound], as: UTF8.self).split(separator: ";").first ?? "", radix: 16) ?? 0
            if size == 0 { break }
            let start = end.upperBound
            out += bytes[start..<min(bytes.count, start + size)]
            i = start + size + 2
        }
        return out
    }

    private func exchange(port: Int, request: [UInt8], oneLine: Bool, timeoutMs: UInt64) -> [UInt8]? {
        let outcome = UVLocked<[UInt8]?>(nil)
        let done = UVSemaphore()
        let loop = self.loop
        let started = loop.execute {
            BenchExchange(loop: loop, port: port, request: request, oneLine: oneLine, timeoutMs: timeoutMs) { answer in
                outcome.withLock { $0 = answer }
                done.signal()
            }.begin()
        }
        guard started else { return nil }
        done.wait()
        return outcome.withLock { $0 }
    }
}

/// One request on the loop thread. Loop thread only; `finish` runs once.
private final class BenchExchange {
    let loop: UVLoop
    let port: Int
    let request: [UInt8]
    let oneLine: Bool
    let timeoutMs: UInt64
    var finish: (([UInt8]?) -> Void)?
    var conn: UVTCPConnection?
    var timer: UVTimer?
    var received: [UInt8] = []

    init(loop: UVLoop, port: Int, request: [UInt8], oneLine: Bool, timeoutMs: UInt64, finish: @escaping ([UInt8]?) -> Void) {
        self.loop = loop
        self.port = port
        self.request = request
        self.oneLine = oneLine
        self.timeoutMs = timeoutMs
        self.finish = finish
    }

    func begin() {
        do {
            let timer = try UVTimer(loop: loop)
            self.timer = timer
            try timer.start(timeoutMs: timeoutMs) { [self] in end(nil) }
            _ = try UVTCPConnection.connect(loop: loop, host: "127.0.0.1", port: port, timeoutMs: timeoutMs) { [self] result in
                switch result {
                case .failure: end(nil)
                case .success(let conn): connected(conn)
                }
            }
        } catch {
            end(nil)
        }
    }

    private func connected(_ conn: UVTCPConnection) {
        guard finish != nil else { return conn.close() }
        self.conn = conn
        do {
            try conn.startReading(onRead: { [self] bytes in
                received += Wire.copyBytes(bytes)
                if oneLine, let newline = received.firstIndex(of: 10) { end(Array(received[..<newline])) }
            }, onEnd: { [self] _ in end(oneLine ? nil : received) })
            try conn.write(request)
        } catch {
            end(nil)
        }
    }

    private func end(_ answer: [UInt8]?) {
        guard let finish else { return }
        self.finish = nil
        timer?.close()
        timer = nil
        conn?.close()
        conn = nil
        finish(answer)
    }
}
