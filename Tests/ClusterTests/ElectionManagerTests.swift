@testable import Cluster
import Foundation
import Testing
import UV

@Suite("ElectionManager API", .serialized, .timeLimit(.minutes(1)))
struct ElectionManagerTests {
    func manager(_ id: String = "m1", minQuorum: Int = 2, start: Bool = false) throws -> ElectionManager {
        // Port 0: the node owns its port from the start (`listenAddress` tells it once started).
        let config = ClusterConfig(nodeID: id, nodeAddr: "127.0.0.1:0", electionTimeout: .milliseconds(300),
                                   heartbeatInterval: .milliseconds(30), minQuorumSize: minQuorum)
        let m = ElectionManager(config: config, membership: ClusterMembership(localNodeID: id, localAddr: config.nodeAddr),
                                options: NodeOptions(logger: quietLogger))
        if start { try m.start() }
        return m
    }

    @Test("a new manager is a follower at term 0 with no leader (the seed's NewElectionManager)")
    func initialState() throws {
        let m = try manager()
        #expect(m.state == .follower)
        #expect(m.currentTerm == 0)
        #expect(m.leaderID == nil)
        #expect(!m.isLeader)
    }

    @Test("startElection returns as candidate, one term higher, having voted for itself")
    func forcedElection() throws {
        let m = try manager()
        try m.startElection()
        #expect(m.state == .candidate)
        #expect(m.currentTerm == 1)
        // Its own vote is spent: another candidate of term 1 is refused.
        let other = m.handleVoteRequest(VoteRequest(candidateID: "x", term: 1))
        #expect(!other.voteGranted)
        #expect(other.reason == ClusterError.alreadyVoted.description)
        // A higher term makes it a follower that can vote again.
        let higher = m.handleVoteRequest(VoteRequest(candidateID: "x", term: 2))
        #expect(higher.voteGranted)
        #expect(m.state == .follower)
        #expect(m.currentTerm == 2)
    }

    @Test("vote requests: stale term refused, LSN behind refused (the seed's rules)")
    func voteRules() throws {
        let m = try manager()
        m.setLocalLSN(100)
        let behind = m.handleVoteRequest(VoteRequest(candidateID: "a", term: 3, lastLSN: 99))
        #expect(!behind.voteGranted)
        #expect(behind.reason == ClusterError.staleLSN.description)
        #expect(m.currentTerm == 3)  // the higher term is adopted even when the vote is refused
        let stale = m.handleVoteRequest(VoteRequest(candidateID: "b", term: 2, lastLSN: 500))
        #expect(!stale.voteGranted)
        #expect(stale.reason == ClusterError.staleTerm.description)
        #expect(m.handleVoteRequest(VoteRequest(candidateID: "c", term: 3, lastLSN: 100)).voteGranted)
    }

    @Test("seed parity: stepDown to a newer term makes a candidate a follower without an error")
    func candidateStepsDownToANewerTerm() throws {
        let m = try manager()
        try m.startElection()
        #expect(m.state == .candidate && m.currentTerm == 1)
        try m.stepDown(term: 5)  // the seed: "step down from leader (if it is one)"; a newer term is adopted
        #expect(m.state == .follower)
        #expect(m.currentTerm == 5)
        #expect(throws: ClusterError.notLeader) { try m.stepDown(term: 5) }  // not newer, not leader
    }

    @Test("seed parity: leaderID falls back to the membership's primary where the election knows none")
    func leaderIDFallsBackToTheMembership() throws {
        let m = try manager()
        #expect(m.leaderID == nil)
        try m.membership.addNode(NodeInfo(id: "p", addr: "127.0.0.1:1", role: .primary, term: 1))
        #expect(m.leaderID == "p")
    }

    @Test("stepDown throws notLeader unless leader; callbacks run in order, once per transition, off the loop thread")
    func callbacksAndStepDown() async throws {
        let m = try manager(minQuorum: 1)  // a cluster of one: its own vote is a quorum
        #expect(throws: ClusterError.notLeader) { try m.stepDown(term: 0) }
        let seen = UVLocked<[String]>([])
        let onLoop = UVLocked(false)
        let loop = m.runtime.loop
        let done = AsyncStream<Void>.makeStream()
        m.setCallbacks(
            onLeader: { seen.withLock { $0.append("leader") }; if loop.inEventLoop { onLoop.withLock { $0 = true } } },
            onFollower: {
                seen.withLock { $0.append("follower") }
                if loop.inEventLoop { onLoop.withLock { $0 = true } }
                done.continuation.yield()
            },
            onCandidate: { seen.withLock { $0.append("candidate") }; if loop.inEventLoop { onLoop.withLock { $0 = true } } })
        try m.startElection()
        #expect(m.isLeader)
        #expect(m.leaderID == "m1")
        #expect(m.epoch == 1)
        try m.stepDown(term: 0)
        #expect(m.state == .follower)
        var iterator = done.stream.makeAsyncIterator()
        _ = await iterator.next()
        #expect(seen.withLock { $0 } == ["candidate", "leader", "follower"])
        #expect(onLoop.withLock { $0 } == false)
    }

    @Test("a leader that is stopped steps down first")
    func stopStepsDown() async throws {
        let m = try manager(minQuorum: 1, start: true)
        try m.startElection()
        #expect(m.isLeader)
        let term = m.currentTerm
        try m.stop()
        #expect(!m.isLeader)
        #expect(m.state == .follower)
        #expect(m.currentTerm == term)
    }

    @Test("start validates the configuration with the seed's checks")
    func startValidates() throws {
        let bad = ElectionManager(
            config: ClusterConfig(nodeID: "", nodeAddr: "127.0.0.1:0"),
            membership: ClusterMembership(localNodeID: "", localAddr: "127.0.0.1:0"), options: NodeOptions(logger: quietLogger))
        #expect(throws: ClusterError.invalidNodeID) { try bad.start() }
        let failover = ElectionManager(
            config: ClusterConfig(nodeID: "a", nodeAddr: "127.0.0.1:0", enableAutoFailover: true),
            membership: ClusterMembership(localNodeID: "a", localAddr: "127.0.0.1:0"), options: NodeOptions(logger: quietLogger))
        #expect(throws: ClusterError.noSeedNodes) { try failover.start() }
    }

    @Test("port 0 listens on a free port, reported by listenAddress and the membership; start twice is refused")
    func portZero() throws {
        let m = ElectionManager(
            config: ClusterConfig(nodeID: "z", nodeAddr: "127.0.0.1:0"),
            membership: ClusterMembership(localNodeID: "z", localAddr: "127.0.0.1:0"), options: NodeOptions(logger: quietLogger))
        try m.start()
        defer { try? m.stop() }
        let addr = try #require(m.listenAddress)
        #expect(addr.port > 0)
        #expect(m.membership.localNode.addr == "127.0.0.1:\(addr.port)")
        #expect(throws: ClusterError.self) { try m.start() }
    }

    @Test("a node restarted after a stop rejoins: links come back and it follows the primary")
    func restartRejoins() async throws {
        let cluster = try TestCluster(size: 3)
        defer { cluster.shutdown() }
        let leader = try #require(await cluster.waitForAgreedLeader(among: cluster.ids))
        let follower = cluster.ids.first { $0 != leader }!
        cluster.stopNode(follower)
        try cluster.startNode(follower)
        let back = await cluster.watch.wait(timeout: .seconds(10)) { latest in
            TestCluster.agreedLeader(latest, among: cluster.ids) == leader
        }
        #expect(back)
        let linked = await eventually(timeout: .seconds(5)) { cluster.manager(follower)?.stats.peersConnected == 2 }
        #expect(linked)
        #expect(cluster.watch.doubleLeaderTerms.isEmpty)
    }
}
