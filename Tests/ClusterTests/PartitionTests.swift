import Cluster
import Foundation
import Glibc
import Testing

/// "Hosts" made of network namespaces this test creates: each host has one veth cable to
/// a switch (a bridge in a namespace of its own) and an address 10.201.0.N/24 on it. Nothing
/// touches the machine's own namespace. Cutting a host's cable at the switch isolates it;
/// `partition` splits the hosts into two groups that each still reach their own.
/// Needs root and `ip`; without them the suite is skipped with the reason.
final class NetnsHosts: @unchecked Sendable {
    let prefix: String
    let count: Int
    private(set) var created: [String] = []

    /// Why these tests cannot run here, or nil when they can.
    static let unavailable: String? = {
        guard geteuid() == 0 else { return "needs root to create network namespaces" }
        let probe = "clprobe\(getpid() % 100_000)"
        guard (try? ip(["netns", "add", probe]))?.exitCode == 0 else { return "`ip netns add` failed (no `ip`, or namespaces not allowed here)" }
        _ = try? ip(["netns", "del", probe])
        return nil
    }()

    static let ipPath = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].first { FileManager.default.fileExists(atPath: $0) } ?? "ip"

    @discardableResult
    static func ip(_ arguments: [String]) throws -> ChildResult {
        let child = try ChildProcess(path: ipPath, arguments)
        return child.waitForExit(seconds: 20) ?? ChildResult(exitCode: nil, signal: SIGKILL, output: child.output)
    }

    /// `tag`: a letter or two that keeps the names apart from another suite's hosts (suites run
    /// at the same time, in one process).
    init(count: Int, tag: String = "") throws {
        prefix = "cl\(tag)\(getpid() % 100_000)"
        self.count = count
        let sw = prefix + "sw"
        try run(["netns", "add", sw])
        created.append(sw)
        try run(["-n", sw, "link", "add", "br0", "type", "bridge"])
        try run(["-n", sw, "link", "set", "br0", "up"])
        for i in 1...count {
            let host = self.host(i)
            try run(["netns", "add", host])
            created.append(host)
            // The cable: one end in the host, the other on the switch's bridge.
            try run(["link", "add", "\(prefix)h\(i)", "type", "veth", "peer", "name", "\(prefix)s\(i)"])
            try run(["link", "set", "\(prefix)h\(i)", "netns", host])
            try run(["link", "set", "\(prefix)s\(i)", "netns", sw])
            try run(["-n", sw, "link", "set", "\(prefix)s\(i)", "master", "br0"])
            try run(["-n", sw, "link", "set", "\(prefix)s\(i)", "up"])
            try run(["-n", host, "addr", "add", "\(address(i))/24", "dev", "\(prefix)h\(i)"])
            try run(["-n", host, "link", "set", "\(prefix)h\(i)", "up"])
            try run(["-n", host, "link", "set", "lo", "up"])
        }
    }

    deinit {
        for name in created.reversed() { _ = try? Self.ip(["netns", "del", name]) }
    }

    func host(_ i: Int) -> String { "\(prefix)h\(i)" }
    func address(_ i: Int) -> String { "10.201.0.\(i)" }

    /// Unplugs (or plugs back) host `i`'s cable at the switch.
    func cable(_ i: Int, up: Bool) throws {
        try run(["-n", prefix + "sw", "link", "set", "\(prefix)s\(i)", up ? "up" : "down"])
    }

    /// Moves the switch ports of hosts `group` to a second bridge on the switch (`apart`), or
    /// back: the group's hosts still reach one another, and nothing passes between them and the
    /// rest (frames are not forwarded between the bridges; nothing answers, as on a cut link).
    func partition(_ group: [Int], apart: Bool) throws {
        let sw = prefix + "sw"
        if apart && !hasSecondBridge {
            try run(["-n", sw, "link", "add", "br1", "type", "bridge"])
            try run(["-n", sw, "link", "set", "br1", "up"])
            hasSecondBridge = true
        }
        for i in group { try run(["-n", sw, "link", "set", "\(prefix)s\(i)", "master", apart ? "br1" : "br0"]) }
    }

    private var hasSecondBridge = false

    private func run(_ arguments: [String]) throws {
        let result = try Self.ip(arguments)
        guard result.exitCode == 0 else { throw ClusterError.io("ip \(arguments.joined(separator: " ")): \(result)") }
    }

    /// Starts an agent with `arguments` inside host `i` and waits until it says where it
    /// listens: the agent and that address (`host:port`).
    func startAgent(on i: Int, _ arguments: [String]) async throws -> (ChildProcess, String) {
        let agent = try start(on: i, ["agent"] + arguments)
        var address: String?
        _ = await eventually(timeout: .seconds(20)) {
            guard let range = agent.output.range(of: "listening on ") else { return false }
            address = String(agent.output[range.upperBound...].prefix { !$0.isWhitespace })
            return true
        }
        return (agent, try #require(address, "h\(i) did not start: \(agent.output)"))
    }

    /// Starts `cluster` with `arguments` inside host `i`.
    func start(on i: Int, _ arguments: [String]) throws -> ChildProcess {
        let path = productsDirectory().appendingPathComponent("cluster").path
        return try ChildProcess(path: Self.ipPath, ["netns", "exec", host(i), path] + arguments)
    }

    /// The status of the agent at `address` as seen from inside host `i`, or nil.
    func status(from i: Int, of address: String) -> StatusResponse? {
        let path = productsDirectory().appendingPathComponent("cluster").path
        guard let child = try? ChildProcess(path: Self.ipPath, ["netns", "exec", host(i), path, "members", "--addr", address, "--json", "--timeout", "1s"]),
              let result = child.waitForExit(seconds: 10), result.exitCode == 0,
              case .statusResponse(let status)? = try? JSONMessage.decode(line: result.output.trimmingCharacters(in: .whitespacesAndNewlines))
        else { return nil }
        return status
    }
}

@Suite("Partitions between hosts (network namespaces)", .serialized, .timeLimit(.minutes(3)),
       .enabled(if: NetnsHosts.unavailable == nil, "\(NetnsHosts.unavailable ?? "")"))
struct PartitionTests {
    @Test("cut the primary off: the majority elects another, the cut-off primary steps down (CheckQuorum); healed, it rejoins as a replica without deposing anyone")
    func partitionThePrimary() async throws {
        let hosts = try NetnsHosts(count: 5)
        let root = NSTemporaryDirectory() + "cluster-netns-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        var addresses: [String] = []
        var agents: [ChildProcess] = []
        defer { agents.removeAll() }
        for i in 1...5 {
            let (agent, address) = try await hosts.startAgent(on: i, [
                "--id", "h\(i)", "--listen", "\(hosts.address(i)):0", "--data-dir", root + "/h\(i)",
                "--heartbeat-interval", "50ms", "--election-timeout", "500ms", "--min-quorum", "3",
            ] + (addresses.isEmpty ? [] : ["--seeds", addresses[0]]))
            agents.append(agent)
            addresses.append(address)
        }
        /// Every agent of `among` (host numbers) answers from its own host and names the same leader.
        func agreed(_ among: [Int], other: String? = nil) -> StatusResponse? {
            let statuses = among.compactMap { hosts.status(from: $0, of: addresses[$0 - 1]) }
            guard statuses.count == among.count, let leader = statuses.first?.leaderID, leader != other,
                  statuses.allSatisfy({ $0.leaderID == leader }), let status = statuses.first(where: { $0.nodeID == leader }),
                  status.state == .leader
            else { return nil }
            return status
        }
        /// What each host of `among` says of itself, and the end of its agent's log: printed when an expectation fails.
        func describe(_ among: [Int]) -> String {
            among.map { i in
                let said = hosts.status(from: i, of: addresses[i - 1]).map { status in
                    let members = status.members.map { "\($0.id)@\($0.addr) seen \($0.lastSeen.timeIntervalSince(status.time ?? $0.lastSeen)) s" }.joined(separator: ", ")
                    return "\(status.state) term \(status.term) leader \(status.leaderID ?? "none"); members: \(members)"
                } ?? "no answer"
                let log = agents[i - 1].output.split(separator: "\n").suffix(25).joined(separator: "\n    ")
                return "h\(i): \(said)\n    \(log)"
            }.joined(separator: "\n")
        }
        var first: StatusResponse?
        let agreedFirst = await eventually(timeout: .seconds(60)) { first = agreed(Array(1...5)); return first != nil }
        #expect(agreedFirst, "no agreed leader among the five hosts:\n\(describe(Array(1...5)))")
        let primary = try #require(first)
        let p = Int(primary.nodeID.dropFirst())!
        try hosts.cable(p, up: false)
        let cutAt = ContinuousClock.now
        // The cut-off primary hears no quorum: it steps down (CheckQuorum).
        var steppedDownAfter: Duration?
        #expect(await eventually(timeout: .seconds(10)) {
            guard let status = hosts.status(from: p, of: addresses[p - 1]), status.state != .leader else { return false }
            steppedDownAfter = ContinuousClock.now - cutAt
            return true
        })
        // The majority elects another.
        var second: StatusResponse?
        let majority = (1...5).filter { $0 != p }
        let elected = await eventually(timeout: .seconds(30)) { second = agreed(majority, other: primary.nodeID); return second != nil }
        #expect(elected, "no agreed leader among \(majority) 30 s after cutting \(primary.nodeID) off:\n\(describe(majority))")
        let next = try #require(second)
        #expect(next.term > primary.term)
        print("partition: \(primary.nodeID) stepped down \(steppedDownAfter.map { "\($0)" } ?? "?") after the cut (election timeout 500 ms)")
        // Healed, it follows the new primary, whose term does not change: no one was deposed.
        try hosts.cable(p, up: true)
        let rejoined = await eventually(timeout: .seconds(30)) { agreed(Array(1...5))?.nodeID == next.nodeID }
        #expect(rejoined, "the healed cluster does not agree on \(next.nodeID):\n\(describe(Array(1...5)))")
        let after = try #require(agreed(Array(1...5)))
        #expect(after.nodeID == next.nodeID && after.term == next.term, "deposed: \(next.nodeID) term \(next.term) → \(after.nodeID) term \(after.term)")
    }
}
