import Cluster
import Foundation
import Glibc
import Testing
import UV

/// Plain blocking and nonblocking sockets to 127.0.0.1, for attackers and timed probes that must
/// not share a loop with anything (a loop of the test's own would measure itself).
enum RawSocket {
    /// A connected TCP socket, or -1. `nonblocking`: the connect is started, not awaited.
    static func connect(port: Int, nonblocking: Bool = false) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | (nonblocking ? Int32(SOCK_NONBLOCK.rawValue) : 0) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return -1 }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let status = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if status != 0 && !(nonblocking && errno == EINPROGRESS) {
            close(fd)
            return -1
        }
        return fd
    }

    /// One `status` request on a fresh connection: the milliseconds from connecting to the end of
    /// the answer line, or nil when none came within `timeoutMs`.
    static func statusLatencyMs(port: Int, timeoutMs: Int32) -> Double? {
        let start = UVLoop.hrtimeNs()
        let fd = connect(port: port)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let line = Array(#"{"message_type":"status"}"#.utf8) + [10]
        guard send(fd, line, line.count, Int32(MSG_NOSIGNAL)) == line.count else { return nil }
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let left = Int32(timeoutMs) - Int32((UVLoop.hrtimeNs() - start) / 1_000_000)
            guard left > 0 else { return nil }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, left) > 0 else { return nil }
            let n = recv(fd, &buffer, buffer.count, 0)
            guard n > 0 else { return nil }
            if buffer[0..<n].contains(10) { return Double(UVLoop.hrtimeNs() - start) / 1e6 }
        }
    }
}

/// A thread that runs `body` until stopped.
final class Attacker: @unchecked Sendable {
    private let stopFlag = UVLocked(false)
    private let done = DispatchSemaphore(value: 0)

    init(_ body: @escaping @Sendable (_ stopped: @escaping @Sendable () -> Bool) -> Void) {
        let stopFlag = self.stopFlag
        let done = self.done
        Thread {
            body { stopFlag.withLock { $0 } }
            done.signal()
        }.start()
    }

    func stop() {
        stopFlag.withLock { $0 = true }
        done.wait()
    }
}

/// The CPU time (user + system) of process `pid`, in seconds, from /proc/<pid>/stat.
func cpuSeconds(of pid: pid_t) -> Double? {
    guard let stat = try? ProcessTests.readProcFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    // After the command: state is field 3; utime and stime are fields 14 and 15.
    guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// Log lines of an agent's output by the second they were logged in and their cause (the first
/// two words of the message: "accept failed", "refusing a", "closing from", …): the most lines
/// of one cause in one second, with that cause.
func busiestLogCause(_ output: String, between start: Date, and end: Date) -> (count: Int, cause: String) {
    let formatter = ISO8601DateFormatter()
    var counts: [String: Int] = [:]
    for line in output.split(separator: "\n") {
        // "2026-12-07T17:54:19+0000 warning cluster : [Cluster] message"
        let parts = line.split(separator: " ", maxSplits: 4)
        guard parts.count == 5, let when = formatter.date(from: String(parts[0])), when >= start, when <= end else { continue }
        var message = parts[4][...]
        if message.hasPrefix("["), let close = message.firstIndex(of: "]") { message = message[message.index(after: close)...] }
        let cause = message.split(separator: " ").prefix(2).joined(separator: " ")
        counts[String(parts[0]) + " " + cause, default: 0] += 1
    }
    let top = counts.max { $0.value < $1.value }
    return (top?.value ?? 0, top.map { String($0.key.split(separator: " ", maxSplits: 1).last ?? "") } ?? "")
}

/// Issue 16: holes a stranger or a bad network still finds. Each test is named for its hole and
/// failed on the code before the fix. The agents run with a descriptor limit of 1024 (soft and
/// hard: the agent cannot raise it).
@Suite("Floods (issue 16)", .serialized, .timeLimit(.minutes(3)))
struct FloodTests {
    static let limit = ["ulimit", "-n", "1024"]

    /// Three agents, `a1` also serving metrics on a port of its own; returns the cluster, its
    /// primary, and a1's metrics port.
    func startCluster(metrics: Bool = false, keyed: Bool = false) async throws -> (AgentCluster, String, Int?) {
        let cluster = try await AgentCluster.start(
            size: 3, descriptorLimit: Self.limit, firstExtra: metrics ? ["--metrics", "127.0.0.1:0"] : [], keyed: keyed)
        let leader = try #require(await cluster.agreedLeader(among: cluster.ids))
        var metricsPort: Int?
        if metrics, let range = cluster.agent("a1").child.output.range(of: "metrics at http://") {
            let addr = cluster.agent("a1").child.output[range.upperBound...].prefix { !$0.isWhitespace && $0 != "/" }
            metricsPort = try HostPort(parsing: String(addr)).port
        }
        return (cluster, leader, metricsPort)
    }

    @Test("hole 1: idle connections and 1,000 connects a second to the node and metrics ports, at 1024 descriptors: bounded CPU, at most one log line a second per cause, status answered, the primary kept (issue 16 #1)")
    func hole1DescriptorFlood() async throws {
        // The attacker holds thousands of sockets: raise this process's own limit.
        _ = try? UVProcess.raiseDescriptorLimit()
        let ownLimit = Int(min(UVProcess.descriptorLimits()?.soft ?? 1024, 1 << 20))
        try #require(ownLimit >= 4096, "this test needs 4096 descriptors of its own; the limit is \(ownLimit)")
        let (cluster, leader, metricsPort) = try await startCluster(metrics: true)
        let target = cluster.agent("a1")
        let nodePort = target.address.port
        let ports = [nodePort, try #require(metricsPort)]
        // Well past the agent's 1,024, and never more than half of this process's own: the tests
        // that run beside this one need descriptors too.
        let maxHeld = min(ownLimit / 2, 3_000)
        // 1,100 idle connections, then 1,000 connects a second, all held, to both ports.
        let attacker = Attacker { stopped in
            var held: [Int32] = []
            func open(_ port: Int) {
                if held.count >= maxHeld { close(held.removeFirst()) }
                let fd = RawSocket.connect(port: port, nonblocking: true)
                if fd >= 0 { held.append(fd) }
            }
            for i in 0..<1_100 { open(ports[i % 2]) }
            var n = 0
            let start = UVLoop.hrtimeNs()
            while !stopped() {
                let due = Int((UVLoop.hrtimeNs() - start) / 1_000_000)  // one connect per millisecond
                while n < due && !stopped() {
                    open(ports[n % 2])
                    n += 1
                }
                usleep(1_000)
            }
            for fd in held { close(fd) }
        }
        let floodStart = Date()
        let cpuBefore = try #require(cpuSeconds(of: target.child.pid))
        let clock = ContinuousClock()
        let started = clock.now
        var answered = 0
        var probes = 0
        var latencies: [Double] = []
        while clock.now - started < .seconds(8) {
            probes += 1
            if let ms = RawSocket.statusLatencyMs(port: nodePort, timeoutMs: 2000) {
                answered += 1
                latencies.append(ms)
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        let cpuAfter = try #require(cpuSeconds(of: target.child.pid))
        let wall = Double((clock.now - started).components.seconds) + Double((clock.now - started).components.attoseconds) / 1e18
        attacker.stop()
        let floodEnd = Date()
        let share = (cpuAfter - cpuBefore) / wall
        let busiest = busiestLogCause(target.child.output, between: floodStart, and: floodEnd)
        latencies.sort()
        print("hole 1: agent CPU \(Int(share * 100)) % of a core over \(String(format: "%.1f", wall)) s; status answered \(answered)/\(probes), median \(latencies.isEmpty ? -1 : latencies[latencies.count / 2]) ms, max \(latencies.last ?? -1) ms; busiest log cause \(busiest.count)/s (\(busiest.cause))")
        #expect(share < 0.5, "agent CPU \(share * 100) % of a core under the flood")
        #expect(busiest.count <= 1, "\(busiest.count) lines in one second of '\(busiest.cause)'")
        #expect(answered == probes, "status answered \(answered) of \(probes) times under the flood")
        // After the flood: the agent still answers, and the cluster still has its primary.
        #expect(target.status(timeout: .seconds(2)) != nil)
        #expect(await cluster.agreedLeader(among: cluster.ids, timeout: .seconds(10)) == leader)
    }

    @Test("hole 2: a status flood (one client that reads, one that does not) against the primary, keyed or not: it stays primary and another client's status is answered within 100 ms (issue 16 #2)",
          arguments: [false, true])
    func hole2StatusFlood(keyed: Bool) async throws {
        let (cluster, leader, _) = try await startCluster(keyed: keyed)
        let primary = cluster.agent(leader)
        let port = primary.address.port
        let term = try #require(primary.status(timeout: .seconds(2))).term
        let chunk = Array(String(repeating: #"{"message_type":"status"}"# + "\n", count: 2_600).utf8)
        // Writes status lines as fast as the node takes them; `reads`: reads and drops the replies.
        func flooder(reads: Bool) -> Attacker {
            Attacker { stopped in
                let fd = RawSocket.connect(port: port)
                guard fd >= 0 else { return }
                defer { close(fd) }
                var sink = [UInt8](repeating: 0, count: 1 << 16)
                var offset = 0
                while !stopped() {
                    var pfd = pollfd(fd: fd, events: Int16(POLLOUT) | (reads ? Int16(POLLIN) : 0), revents: 0)
                    guard poll(&pfd, 1, 50) >= 0 else { return }
                    if pfd.revents & Int16(POLLIN) != 0 {
                        guard recv(fd, &sink, sink.count, Int32(MSG_DONTWAIT)) > 0 else { return }
                    }
                    if pfd.revents & Int16(POLLOUT) != 0 {
                        let n = chunk[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
                        if n < 0 && errno != EAGAIN { return }
                        if n > 0 { offset = (offset + n) % chunk.count }
                    }
                    if pfd.revents & Int16(POLLERR | POLLHUP) != 0 { return }
                }
            }
        }
        let floodStart = UVLoop.hrtimeNs()
        let cpuBefore = cpuSeconds(of: primary.child.pid) ?? 0
        let rssBefore = residentKiB(of: primary.child.pid)
        let flooders = [flooder(reads: true), flooder(reads: false)]
        let watch = PrimaryWatch(cluster.ids.map { cluster.agent($0) })
        var latencies: [Double] = []
        // The control: the same probe, at the same moments, to an agent the flood does not touch
        // (what the machine itself costs a status answer: the rest of the suite runs beside this
        // test on two cores).
        let control = try #require(cluster.ids.first { $0 != leader }.map { cluster.agent($0).address.port })
        var controlLatencies: [Double] = []
        var missed = 0
        let clock = ContinuousClock()
        let started = clock.now
        while clock.now - started < .seconds(6) {
            if let ms = RawSocket.statusLatencyMs(port: port, timeoutMs: 3000) { latencies.append(ms) } else { missed += 1 }
            if let ms = RawSocket.statusLatencyMs(port: control, timeoutMs: 3000) { controlLatencies.append(ms) }
            try await Task.sleep(for: .milliseconds(100))
        }
        let rssDuring = residentKiB(of: primary.child.pid)
        for f in flooders { f.stop() }
        let seen = watch.stop()
        let cpu = cpuSeconds(of: primary.child.pid)
        // The share of a core the flooded agent was given meanwhile: a flood keeps it busy, so its
        // answers come as fast as the machine lets it run.
        let share = ((cpu ?? 0) - cpuBefore) / max(0.001, Double(UVLoop.hrtimeNs() - floodStart) / 1e9)
        latencies.sort()
        controlLatencies.sort()
        let controlMedian = controlLatencies.isEmpty ? 0 : controlLatencies[controlLatencies.count / 2]
        print("hole 2\(keyed ? " (keyed)" : ""): status latency under the flood: n=\(latencies.count) missed \(missed), median \(latencies.isEmpty ? -1 : latencies[latencies.count / 2]) ms (an agent not flooded, at the same moments: \(controlMedian) ms), max \(latencies.last ?? -1) ms; primaries seen \(seen.primaries.sorted()); RSS \(rssBefore) -> \(rssDuring) KiB; flood \((UVLoop.hrtimeNs() - floodStart) / 1_000_000) ms, agent CPU total \(cpu ?? -1) s, \(Int(share * 100)) % of a core during the flood")
        #expect(missed == 0)
        // Within 100 ms as a rule (the median) of what the machine itself costs at that moment (the
        // control's median: on a quiet machine about 1 ms), for an agent given at least half a
        // core; one the machine gives less (the rest of the suite runs beside this test on two
        // cores) is allowed proportionally more. The slowest may wait for a loaded machine, never
        // for the flood: below 1 s.
        let budget = (100 + controlMedian) / min(1, max(0.1, share / 0.5))
        #expect(!latencies.isEmpty && latencies[latencies.count / 2] < budget,
                "status latencies \(latencies); not flooded \(controlLatencies); \(Int(share * 100)) % of a core, budget \(budget) ms")
        #expect((latencies.last ?? .infinity) < 1000, "status latencies \(latencies)")
        #expect(seen.primaries == [leader], "primaries seen: \(seen.primaries)")
        let after = try #require(primary.status(timeout: .seconds(2)))
        #expect(after.state == .leader && after.term == term, "after the flood: \(after.state) term \(after.term), was \(term)")
        #expect(rssDuring < rssBefore + 64 * 1024, "RSS \(rssBefore) -> \(rssDuring) KiB")
    }

    func residentKiB(of pid: pid_t) -> Int {
        guard let status = try? ProcessTests.readProcFile("/proc/\(pid)/status"),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return 0 }
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }

    @Test("hole 1: an agent started with a soft descriptor limit of 1024 raises it to the hard limit and says so (issue 16 #1)")
    func hole1AgentRaisesItsDescriptorLimit() async throws {
        guard let hard = UVProcess.descriptorLimits()?.hard, hard > 1024 else { return }
        let root = NSTemporaryDirectory() + "cluster-nofile-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let agent = try await AgentProcess.start("a1", seeds: [], dataDir: root, minQuorum: 1, descriptorLimit: ["ulimit", "-S", "-n", "1024"])
        let expected = "descriptor limit raised from 1024 to \(hard == UInt64.max ? "" : "\(hard)")"
        #expect(await eventually(timeout: .seconds(5)) { agent.child.output.contains(expected) }, "\(agent.child.output.prefix(2000))")
        let limits = try ProcessTests.readProcFile("/proc/\(agent.child.pid)/limits")
        let line = limits.split(separator: "\n").first { $0.hasPrefix("Max open files") } ?? ""
        #expect(!line.contains(" 1024 "), "\(line)")
    }
}
