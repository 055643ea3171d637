import Testing
@testable import ClusterCore

@Suite struct ClusterErrorTests {
    /// The seed's `errors.New` messages, copied verbatim from the seed's documentation.
    @Test(arguments: [
        (ClusterError.invalidNodeID, "node ID cannot be empty"),
        (.invalidNodeAddr, "node address cannot be empty"),
        (.electionTimeoutTooSmall, "election timeout must be greater than heartbeat interval"),
        (.invalidQuorumSize, "quorum size must be at least 1"),
        (.noSeedNodes, "seed nodes required when auto-failover is enabled"),
        (.notLeader, "not the current leader"),
        (.alreadyVoted, "already voted in this term"),
        (.staleTerm, "term is older than current term"),
        (.staleLSN, "candidate LSN is behind local LSN"),
        (.electionTimeout, "election timed out without winning"),
        (.insufficientQuorum, "insufficient nodes for quorum"),
        (.dualPrimaryDetected, "dual primary detected - split brain"),
        (.nodeNotFound, "node not found in membership"),
        (.nodeAlreadyExists, "node already exists in membership"),
        (.cannotRemoveSelf, "cannot remove self from cluster"),
        (.clusterTooSmall, "cluster too small to maintain quorum"),
        (.noHealthySeeds, "no healthy seed nodes available"),
        (.discoveryFailed, "node discovery failed"),
    ])
    func seedMessagesVerbatim(_ error: ClusterError, _ message: String) {
        #expect(error.description == message)
        #expect("\(error)" == message)
    }

    @Test func addedCasesCarryTheirReason() {
        #expect(ClusterError.invalidAddress("x").description == "invalid address \"x\": expected host:port")
        #expect(ClusterError.io("ECONNREFUSED").description == "I/O error: ECONNREFUSED")
        #expect(ClusterError.protocolViolation("bad line").description == "protocol violation: bad line")
        #expect(ClusterError.storage("disk full").description == "storage error: disk full")
        #expect(ClusterError.invalidState("started twice").description == "invalid state: started twice")
    }

    @Test func equality() {
        #expect(ClusterError.io("a") == .io("a"))
        #expect(ClusterError.io("a") != .io("b"))
        #expect(ClusterError.io("a") != .storage("a"))
        #expect(ClusterError.nodeNotFound != .nodeAlreadyExists)
    }
}
