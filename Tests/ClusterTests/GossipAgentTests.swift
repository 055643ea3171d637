import Cluster
import Foundation
import Glibc
import Testing
import UV

/// The gossip membership layer (`--membership gossip`) in real `cluster agent` processes: voters
/// link and heartbeat among themselves only, every member is watched by the gossip.
@Suite("Gossip membership (agents)", .serialized, .timeLimit(.minutes(3)))
struct GossipAgentTests {
    static let gossip = ["--membership", "gossip", "--probe-interval", "100ms"]

    /// One agent's figures from GET /metrics on its own port: `name{node="id",labels} value`.
    static func metric(_ agent: AgentProcess, _ name: String, _ labels: String = "") -> Double? {
        guard let (text, _) = try? exchange(
            port: agent.address.port, send: Array("GET /metrics HTTP/1.0\r\n\r\n".utf8), lines: 0, timeoutMs: 2000)
        else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(name + "{") && line.contains("node=\"\(agent.id)\"") {
            guard labels.isEmpty || line.contains(labels) else { continue }
            return line.split(separator: " ").last.flatMap { Double($0) }
        }
        return nil
    }

    /// Whether every agent of `ids` logged `text`.
    static func allLogged(_ cluster: AgentCluster, _ ids: [String], _ text: String) -> Bool {
        ids.allSatisfy { cluster.agent($0).child.output.contains(text) }
    }

    @Test("eight agents, three voters: members that do not vote hold no link and learn the primary by gossip; a SIGKILLed member is declared failed by all, a paused one refutes when it wakes, one that leaves is known as left; a killed primary's successor reaches every member")
    func membersWithoutLinks() async throws {
        let cluster = try await AgentCluster.start(size: 8, voters: 3, extra: Self.gossip)
        let ids = cluster.ids
        let voters = Array(ids.prefix(3))
        let agreed = await cluster.agreedLeader(among: ids)
        let leader = try #require(agreed, "\(cluster.statuses(of: ids).mapValues { "\($0.state) term \($0.term) leader \($0.leaderID ?? "-")" }) \(ids.map { cluster.agent($0).child.output.suffix(600) })")
        #expect(voters.contains(leader))
        // Every agent knows the seven others alive; voters hold links to the two other voters
        // only, members that do not vote hold none (the mesh would give each seven).
        let settled = await eventually(timeout: .seconds(20)) {
            ids.allSatisfy { Self.metric(cluster.agent($0), "cluster_gossip_members", "state=\"alive\"") == 7 }
                && ids.allSatisfy { Self.metric(cluster.agent($0), "cluster_links_up") == (voters.contains($0) ? 2 : 0) }
        }
        #expect(settled, "\(ids.map { "\($0): alive \(Self.metric(cluster.agent($0), "cluster_gossip_members", "state=\"alive\"") ?? -1), links \(Self.metric(cluster.agent($0), "cluster_links_up") ?? -1)" })")

        // A member killed: every other agent declares it failed.
        let killed = ids[6]
        cluster.agent(killed).child.signal(SIGKILL)
        _ = cluster.agent(killed).child.waitForExit(seconds: 10)
        var live = ids.filter { $0 != killed }
        #expect(await eventually(timeout: .seconds(10)) { Self.allLogged(cluster, live, "gossip: \(killed) failed") },
                "\(live.map { cluster.agent($0).child.output.suffix(400) })")

        // A member paused until someone declares it failed, then resumed: it refutes, and every
        // other agent has it alive again.
        let paused = ids[7]
        cluster.agent(paused).child.signal(SIGSTOP)
        let others = live.filter { $0 != paused }
        let declared = await eventually(timeout: .seconds(15)) {
            others.contains { cluster.agent($0).child.output.contains("gossip: \(paused) failed") }
        }
        cluster.agent(paused).child.signal(SIGCONT)
        #expect(declared)
        #expect(await eventually(timeout: .seconds(10)) {
            others.allSatisfy { agent in
                let log = cluster.agent(agent).child.output
                guard let failed = log.range(of: "gossip: \(paused) failed", options: .backwards) else { return true }
                return log[failed.upperBound...].contains("gossip: \(paused) is back")
            }
        }, "\(others.map { cluster.agent($0).child.output.suffix(300) })")

        // A member that leaves (SIGTERM): exit 0, and every other agent knows it left.
        let leaving = ids[5]
        cluster.agent(leaving).child.signal(SIGTERM)
        #expect(cluster.agent(leaving).child.waitForExit(seconds: 10)?.exitCode == 0)
        live.removeAll { $0 == leaving }
        #expect(await eventually(timeout: .seconds(10)) { Self.allLogged(cluster, live, "gossip: \(leaving) left") })

        // The primary killed: the voters elect another, and every member names it (by gossip).
        cluster.agent(leader).child.signal(SIGKILL)
        _ = cluster.agent(leader).child.waitForExit(seconds: 10)
        live.removeAll { $0 == leader }
        let next = await cluster.agreedLeader(among: live, other: leader, timeout: .seconds(15))
        #expect(next.map(voters.contains) == true, "\(cluster.statuses(of: live).mapValues { "\($0.state) term \($0.term) leader \($0.leaderID ?? "-")" }) \(live.map { cluster.agent($0).child.output.suffix(800) })")
    }

    @Test("a member that does not vote is made a voter by autopilot: the primary links with it to ask, and it then links with the other voters")
    func promotedByAutopilot() async throws {
        let cluster = try await AgentCluster.start(
            size: 5, voters: 3, extra: Self.gossip + ["--voters-target", "5", "--autopilot-stabilization", "1s"])
        let ids = cluster.ids
        let leader = try #require(await cluster.agreedLeader(among: ids))
        let grown = await eventually(timeout: .seconds(20)) {
            cluster.agent(leader).status()?.configuration?.voters.count == 5 && cluster.agent(leader).status()?.configurationCommitted == true
        }
        #expect(grown, "\(cluster.agent(leader).child.output.suffix(1500))")
        // Five voters: each links with the four others.
        #expect(await eventually(timeout: .seconds(10)) { ids.allSatisfy { Self.metric(cluster.agent($0), "cluster_links_up") == 4 } },
                "\(ids.map { "\($0): \(Self.metric(cluster.agent($0), "cluster_links_up") ?? -1)" })")
    }

    @Test("a keyed gossip cluster takes no stranger's word: datagrams unsealed, sealed under another key or altered, and unsealed full states, are refused and said so, while what is sealed under the cluster's key is taken")
    func keyedGossipRefusesStrangers() async throws {
        let cluster = try await AgentCluster.start(size: 5, voters: 3, extra: Self.gossip, keyed: true)
        let ids = cluster.ids
        let leader = try #require(await cluster.agreedLeader(among: ids))
        // Sealed gossip works: every agent knows the four others alive.
        #expect(await eventually(timeout: .seconds(20)) {
            ids.allSatisfy { Self.metric(cluster.agent($0), "cluster_gossip_members", "state=\"alive\"") == 4 }
        }, "\(ids.map { cluster.agent($0).child.output.suffix(400) })")
        let key = try ClusterKey(text: String(contentsOfFile: cluster.root + "/cluster.key", encoding: .utf8))
        let victim = ids[4]
        // What a stranger would have every member believe: it is a live voter, a live member
        // failed (at an incarnation it cannot refute soon), and it leads.
        func forged(_ intruder: String) -> GossipMessage {
            GossipMessage(sender: intruder, kind: .gossip, updates: [
                .alive(id: intruder, incarnation: 1, address: "127.0.0.1:9", voter: true),
                .failed(id: victim, incarnation: 1 << 40, from: intruder),
                .primary(GossipPrimary(term: 1 << 40, epoch: 1 << 40, leaderID: intruder)),
            ])
        }
        func sealed(_ message: GossipMessage, _ seal: GossipSeal) -> [UInt8] {
            var out: [UInt8] = []
            GossipWire.encode(message, keyed: true, into: &out)
            seal.seal(&out)
            return out
        }
        let right = GossipSeal(keys: [key], clusterName: "")
        var altered = sealed(forged("altered"), right)
        altered[4] ^= 0x20  // the sender id's first letter
        let forgeries = [
            GossipWire.encode(forged("unsealed")),
            sealed(forged("otherkey"), GossipSeal(keys: [ClusterKey.generate()], clusterName: "")),
            sealed(forged("othername"), GossipSeal(keys: [key], clusterName: "another")),
            altered,
        ]
        let fullState = GossipWire.encodeFullState(GossipFullState(
            sender: "fullstate", isReply: false,
            members: [
                GossipMember(id: "fullstate", address: "127.0.0.1:9", state: .alive, incarnation: 1, voter: true),
                GossipMember(id: victim, address: cluster.agent(victim).address.description, state: .left, incarnation: 1 << 40, voter: false),
            ],
            primary: GossipPrimary(term: 1 << 40, epoch: 1 << 40, leaderID: "fullstate")))
        for agent in ids.map(cluster.agent) {
            #expect(try sendDatagrams(forgeries, to: agent.address.port) == forgeries.count)
            _ = try? exchange(port: agent.address.port, send: fullState, lines: 1, timeoutMs: 2000)
        }
        // Then one sealed under the cluster's key, sent after the forgeries from the same host:
        // once every member has taken it, every forgery has been handled.
        let genuine = GossipMessage(sender: "genuine", kind: .gossip, updates: [
            .alive(id: "genuine", incarnation: 1, address: "127.0.0.1:9", voter: false),
        ])
        for agent in ids.map(cluster.agent) {
            #expect(try sendDatagrams([sealed(genuine, right)], to: agent.address.port) == 1)
        }
        #expect(await eventually(timeout: .seconds(10)) { Self.allLogged(cluster, ids, "gossip: genuine joined") },
                "\(ids.map { cluster.agent($0).child.output.suffix(600) })")
        for id in ids {
            let log = cluster.agent(id).child.output
            for intruder in ["unsealed", "otherkey", "othername", "altered", "Altered", "fullstate"] {
                #expect(!log.contains("gossip: \(intruder) joined"), "\(id) took \(intruder)'s word: \(log.suffix(800))")
            }
            #expect(!log.contains("gossip: \(victim) failed") && !log.contains("gossip: \(victim) left"), "\(id): \(log.suffix(800))")
            // Each refusal is said, with its reason.
            #expect(log.contains("an unkeyed gossip datagram, and this cluster has a key"), "\(id): \(log.suffix(800))")
            #expect(log.contains("which is not in this node's keyring"), "\(id): \(log.suffix(800))")
            #expect(log.contains("its tag does not check"), "\(id): \(log.suffix(800))")
        }
        #expect(cluster.statuses(of: ids).values.allSatisfy { $0.leaderID == leader })
    }

    @Test("force-leave with the gossip layer: a member that does not vote and is alive is refused with the reason; once killed and failed, it is held left, not failed, by every member, linked or not")
    func forceLeaveSpreadsByGossip() async throws {
        let cluster = try await AgentCluster.start(size: 5, voters: 3, extra: Self.gossip)
        let ids = cluster.ids
        _ = try #require(await cluster.agreedLeader(among: ids))
        #expect(await eventually(timeout: .seconds(20)) {
            ids.allSatisfy { Self.metric(cluster.agent($0), "cluster_gossip_members", "state=\"alive\"") == 4 }
        })
        let gone = ids[4], asked = cluster.agent(ids[0]).address.description
        let refused = try await runChildAwaiting("cluster", ["force-leave", "--addr", asked, gone], timeoutSeconds: 30)
        #expect(refused.exitCode != 0 && refused.output.contains("\(gone) is alive by the gossip: stop it first"), "\(refused)")

        cluster.agent(gone).child.signal(SIGKILL)
        _ = cluster.agent(gone).child.waitForExit(seconds: 10)
        let live = Array(ids.prefix(4))
        #expect(await eventually(timeout: .seconds(10)) { Self.allLogged(cluster, live, "gossip: \(gone) failed") })
        let done = try await runChildAwaiting("cluster", ["force-leave", "--addr", asked, gone], timeoutSeconds: 30)
        #expect(done.exitCode == 0, "\(done)")
        // Members without links (ids[3]) hear it by gossip, as the voters do.
        #expect(await eventually(timeout: .seconds(10)) { Self.allLogged(cluster, live, "gossip: \(gone) left") },
                "\(live.map { cluster.agent($0).child.output.suffix(500) })")
    }
}
