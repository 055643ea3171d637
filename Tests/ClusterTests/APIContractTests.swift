import Cluster
import Foundation
import Testing

/// Every name of ../shared/API.md, used through one plain `import Cluster`: if a name is renamed
/// or dropped, this file stops compiling.
@Suite("The API contract")
struct APIContractTests {
    @Test("every type, initialiser, property and method of API.md is reachable with import Cluster")
    func contract() throws {
        let errors: [ClusterError] = [
            .invalidNodeID, .invalidNodeAddr, .electionTimeoutTooSmall, .invalidQuorumSize, .noSeedNodes, .notLeader,
            .alreadyVoted, .staleTerm, .staleLSN, .electionTimeout, .insufficientQuorum, .dualPrimaryDetected,
            .nodeNotFound, .nodeAlreadyExists, .cannotRemoveSelf, .clusterTooSmall, .noHealthySeeds, .discoveryFailed,
        ]
        #expect(errors.map(\.description).allSatisfy { !$0.isEmpty })
        #expect(NodeRole.replica.rawValue == 0 && NodeRole.primary.description == "primary")
        #expect(ElectionState.leader.rawValue == 2 && ElectionState.follower.description == "follower")

        var config = ClusterConfig(nodeID: "a", nodeAddr: "127.0.0.1:0", seedNodes: [])
        config.electionTimeout = .seconds(5)
        config.heartbeatInterval = .seconds(1)
        config.minQuorumSize = 2
        config.priority = 1
        config.enableAutoFailover = false
        config.enableQuorumWrites = false
        config.voteRequestTimeout = .seconds(2)
        config.maxElectionRetries = 3
        #expect(config == ClusterConfig.default.with(id: "a"))
        try config.validate()

        let info = NodeInfo(id: "b", addr: "127.0.0.1:1")
        let _: (String, String, NodeRole, Date, UInt64, UInt64, UInt64, UInt64, Int) =
            (info.id, info.addr, info.role, info.lastSeen, info.lastHeartbeatSeq, info.epoch, info.term, info.lastLSN, info.priority)
        #expect(info.isHealthy(timeout: .seconds(60)))

        let m = ClusterMembership(localNodeID: "a", localAddr: "127.0.0.1:0")
        try m.addNode(info)
        _ = (m.allNodes, m.epoch, m.healthyNodeCount(timeout: .seconds(1)), m.healthyNodes(timeout: .seconds(1)), m.localNode)
        _ = (try m.node("b"), m.nodeCount, m.nodes(withRole: .replica), m.primary, m.hasQuorum(minQuorum: 1, healthTimeout: .seconds(1)))
        m.incrementEpoch()
        m.setLocalLSN(1); m.setLocalRole(.replica); m.setLocalTerm(1)
        try m.updateNodeHeartbeat("b", seq: 1, epoch: 1, term: 1)
        try m.updateNodeLSN("b", lsn: 1)
        try m.updateNodeRole("b", role: .replica)
        try m.removeNode("b")

        let e = ElectionManager(config: config, membership: m)
        _ = (e.currentTerm, e.leaderID, e.state, e.isLeader)
        let response: VoteResponse = e.handleVoteRequest(VoteRequest(candidateID: "c", term: 1, lastLSN: 1, epoch: 0, priority: 1))
        #expect(response.voteGranted)
        e.resetElectionTimer()
        e.setCallbacks(onLeader: {}, onFollower: {}, onCandidate: {})
        try e.startElection()
        #expect(throws: ClusterError.self) { try e.stepDown(term: 0) }  // a candidate, not the leader
        try e.start()
        try e.stop()

        let d = NodeDiscovery(config: config, membership: m)
        _ = d.seeds
        let list: DiscoveryResponse = try d.handleAnnouncement(AnnouncementMessage(nodeID: "x", nodeAddr: "127.0.0.1:2"))
        #expect(list.success && list.messageType == "node_list" && list.error.isEmpty)
        _ = d.isHealthy()
        try d.start()
        try d.stop()

        let a = AnnouncementMessage(nodeID: "x", nodeAddr: "y")
        _ = (a.messageType, a.nodeID, a.nodeAddr, a.role, a.epoch, a.term, a.priority, a.timestamp)
        let r = VoteRequest(candidateID: "x", term: 1)
        _ = (r.messageType, r.candidateID, r.term, r.lastLSN, r.epoch, r.priority)
        let v = VoteResponse(voterID: "x", term: 1, voteGranted: false)
        _ = (v.messageType, v.voterID, v.term, v.voteGranted, v.reason)
        #expect(a.messageType == "node_announcement" && r.messageType == "vote_request" && v.messageType == "vote_response")
    }
}

extension ClusterConfig {
    fileprivate func with(id: String) -> ClusterConfig {
        var c = self
        c.nodeID = id
        c.nodeAddr = "127.0.0.1:0"
        return c
    }
}
