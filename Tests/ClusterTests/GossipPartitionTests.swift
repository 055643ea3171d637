import Cluster
import Foundation
import Glibc
import Testing

/// The gossip membership layer (`--membership gossip`) across a partition between hosts (network
/// namespaces, `NetnsHosts`): the sides split, and once healed merge back into one membership.
@Suite("Gossip membership across a partition (network namespaces)", .serialized, .timeLimit(.minutes(6)),
       .enabled(if: NetnsHosts.unavailable == nil, "\(NetnsHosts.unavailable ?? "")"))
struct GossipPartitionTests {
    @Test("six agents (three voters) on six hosts; the primary and a member that does not vote split off (still reaching each other) until each side has declared the other's members failed and forgotten them; healed, the sides merge back into one membership: every member alive at every member, all naming the majority's primary")
    func healedPartitionPastReapingMergesBack() async throws {
        let hosts = try NetnsHosts(count: 6, tag: "g")
        let root = NSTemporaryDirectory() + "cluster-gossip-netns-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let all = Array(1...6)
        let ids = all.map { "h\($0)" }
        let voters = [1, 2, 3]
        var addresses: [String] = []
        var agents: [ChildProcess] = []
        defer { agents.removeAll() }
        for i in all {
            let (agent, address) = try await hosts.startAgent(on: i, [
                "--id", "h\(i)", "--listen", "\(hosts.address(i)):0", "--data-dir", root + "/h\(i)",
                "--heartbeat-interval", "50ms", "--election-timeout", "500ms", "--min-quorum", "2",
                "--voters", voters.map { "h\($0)" }.joined(separator: ","),
                "--membership", "gossip", "--probe-interval", "100ms",
                "--log-level", "debug",  // for "gossip: forgot …"
            ] + (addresses.isEmpty ? [] : ["--seeds", addresses.joined(separator: ",")]))
            agents.append(agent)
            addresses.append(address)
        }
        func status(_ i: Int) -> StatusResponse? { hosts.status(from: i, of: addresses[i - 1]) }
        /// Every agent of `among` answers from its own host, knows every member of `among` alive
        /// (by the gossip's word), and names the same leader, which says it leads.
        func agreed(_ among: [Int], other: String? = nil) -> StatusResponse? {
            let statuses = among.compactMap(status)
            guard statuses.count == among.count, let leader = statuses.first?.leaderID, leader != other,
                  statuses.allSatisfy({ $0.leaderID == leader }), let status = statuses.first(where: { $0.nodeID == leader }),
                  status.state == .leader,
                  statuses.allSatisfy({ s in among.allSatisfy { "h\($0)" == s.nodeID || s.liveness["h\($0)"]?.status == .alive } })
            else { return nil }
            return status
        }
        /// What each host of `among` says (its leader, and each member's gossip status and
        /// incarnation), and the end of its agent's log: printed when an expectation fails.
        func describe(_ among: [Int]) -> String {
            among.map { i in
                let said = status(i).map { s in
                    let members = ids.filter { $0 != s.nodeID }.map { id in
                        s.liveness[id].map { "\(id) \($0.status) \($0.incarnation)" } ?? "\(id) unknown"
                    }
                    return "\(s.state) term \(s.term) leader \(s.leaderID ?? "none"); \(members.joined(separator: ", "))"
                } ?? "no answer"
                let log = agents[i - 1].output.split(separator: "\n").suffix(20).joined(separator: "\n    ")
                return "h\(i): \(said)\n    \(log)"
            }.joined(separator: "\n")
        }

        var first: StatusResponse?
        let agreedFirst = await eventually(timeout: .seconds(60)) { first = agreed(all); return first != nil }
        #expect(agreedFirst, "the six hosts do not agree on a leader and see each other alive:\n\(describe(all))")
        let primary = try #require(first)
        let p = Int(primary.nodeID.dropFirst())!

        // Split off: the primary and a member that does not vote, which still reach each other.
        let minority = [p, 6]
        let majority = all.filter { !minority.contains($0) }
        try hosts.partition(minority, apart: true)
        let cutAt = ContinuousClock.now
        // Each side declares the other side's members failed.
        let declared = await eventually(timeout: .seconds(30)) {
            minority.allSatisfy { i in majority.allSatisfy { agents[i - 1].output.contains("gossip: h\($0) failed") } }
                && majority.allSatisfy { i in minority.allSatisfy { agents[i - 1].output.contains("gossip: h\($0) failed") } }
        }
        #expect(declared, "the sides did not declare each other failed:\n\(describe(all))")
        // The majority elects another primary.
        var second: StatusResponse?
        let elected = await eventually(timeout: .seconds(30)) { second = agreed(majority, other: primary.nodeID); return second != nil }
        #expect(elected, "no agreed leader among \(majority) after cutting \(primary.nodeID) off:\n\(describe(majority))")
        let next = try #require(second)
        // The partition lasts until each side's gossip has forgotten the other side's members
        // (reaped, a minute after failing; "forgot" is logged at debug level), and each side's
        // members see one another alive. The membership keeps the voters it forgets.
        let forgotten = await eventually(timeout: .seconds(150)) {
            let sides = [(minority, majority), (majority, minority)]
            return sides.allSatisfy { side, others in
                side.allSatisfy { i in
                    guard others.allSatisfy({ agents[i - 1].output.contains("gossip: forgot h\($0)") }), let s = status(i) else { return false }
                    return side.allSatisfy { $0 == i || s.liveness["h\($0)"]?.status == .alive }
                }
            }
        }
        #expect(forgotten, "the sides did not forget each other's members:\n\(describe(all))")
        print("gossip partition: the sides forgot each other \(ContinuousClock.now - cutAt) after the cut")
        // The partition lasts 5 s more (its length, not a wait for anything): the datagrams sent
        // across just before the other side was forgotten, which the kernel holds while it tries
        // to resolve the address, are dropped by then. Meanwhile nothing of the other side
        // comes back.
        let logged = agents.map { $0.output.count }
        let heldFrom = ContinuousClock.now
        while ContinuousClock.now - heldFrom < .seconds(5) { try await Task.sleep(for: .milliseconds(100)) }
        for (side, others) in [(minority, majority), (majority, minority)] {
            for i in side {
                let since = agents[i - 1].output.dropFirst(logged[i - 1])
                #expect(!others.contains { since.contains("gossip: h\($0) joined") }, "h\(i) heard of the other side through the partition:\n\(since.suffix(2000))")
            }
        }

        // Healed: one membership again, every member alive at every member, one primary (the
        // majority's: the cut-off one, which stepped down, deposes no one).
        try hosts.partition(minority, apart: false)
        let healedAt = ContinuousClock.now
        var merged: StatusResponse?
        let rejoined = await eventually(timeout: .seconds(120)) { merged = agreed(all); return merged != nil }
        #expect(rejoined, "the healed hosts did not merge back into one membership with one primary:\n\(describe(all))")
        print("gossip partition: merged back \(ContinuousClock.now - healedAt) after the heal")
        #expect(merged?.nodeID == next.nodeID, "the healed cluster follows \(merged?.nodeID ?? "none"), not the majority's \(next.nodeID)")
    }
}
