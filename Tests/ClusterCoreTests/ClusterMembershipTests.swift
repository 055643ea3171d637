import Foundation
import Testing
@testable import ClusterCore

@Suite struct ClusterMembershipTests {
    let clock = FakeClock()
    let m: ClusterMembership

    init() {
        let clock = self.clock
        m = ClusterMembership(localNodeID: "n1", localAddr: "127.0.0.1:7001", now: { clock.now() })
    }

    func peer(_ id: String, role: NodeRole = .replica, term: UInt64 = 0) -> NodeInfo {
        NodeInfo(id: id, addr: "127.0.0.1:\(7000 + id.count)", role: role, lastSeen: GoTime.zero, term: term)
    }

    // MARK: - A new membership

    @Test func newMembershipHoldsOnlyTheLocalNode() throws {
        #expect(m.localNodeID == "n1")
        #expect(m.nodeCount == 1)
        #expect(m.epoch == 0)
        let local = m.localNode
        #expect(local.id == "n1")
        #expect(local.addr == "127.0.0.1:7001")
        #expect(local.role == .replica)
        #expect(local.epoch == 0 && local.term == 0 && local.lastLSN == 0 && local.lastHeartbeatSeq == 0)
        #expect(local.priority == 1)
        #expect(local.lastSeen == clock.now())
        #expect(m.allNodes == [local])
        #expect(try m.node("n1") == local)
        #expect(m.contains("n1"))
        #expect(!m.contains("n2"))
        #expect(m.primary == nil)
    }

    @Test func publicInitUsesTheSystemClock() {
        let real = ClusterMembership(localNodeID: "a", localAddr: "127.0.0.1:1")
        #expect(abs(real.localNode.lastSeen.timeIntervalSinceNow) < 60)
        #expect(real.healthyNodeCount(timeout: .seconds(1)) == 1)
    }

    // MARK: - addNode / removeNode

    @Test func addNodeStampsLastSeenWithNowAndKeepsTheRest() throws {
        var info = peer("n2", role: .candidate, term: 4)
        info.lastHeartbeatSeq = 9
        info.epoch = 3
        info.lastLSN = 77
        info.priority = 5
        try m.addNode(info)
        var expected = info
        expected.lastSeen = clock.now()
        #expect(try m.node("n2") == expected)
        #expect(m.nodeCount == 2)
        #expect(m.contains("n2"))
    }

    @Test func addNodeRefusesAKnownID() throws {
        try m.addNode(peer("n2"))
        #expect(throws: ClusterError.nodeAlreadyExists) { try m.addNode(peer("n2")) }
        #expect(m.nodeCount == 2)
    }

    @Test func addNodeRefusesTheLocalID() {
        #expect(throws: ClusterError.nodeAlreadyExists) { try m.addNode(peer("n1", role: .primary)) }
        #expect(m.nodeCount == 1)
        #expect(m.localNode.role == .replica)
    }

    @Test func addNodeRefusesAnEmptyID() {
        #expect(throws: ClusterError.invalidNodeID) { try m.addNode(peer("")) }
        #expect(m.nodeCount == 1)
    }

    @Test func removeNode() throws {
        try m.addNode(peer("n2"))
        try m.addNode(peer("n3"))
        try m.removeNode("n2")
        #expect(m.allNodes.map(\.id) == ["n1", "n3"])
        #expect(!m.contains("n2"))
        #expect(throws: ClusterError.nodeNotFound) { try m.node("n2") }
        try m.addNode(peer("n2"))  // a removed id may join again
        #expect(m.nodeCount == 3)
    }

    @Test func removeNodeRefusesSelf() {
        #expect(throws: ClusterError.cannotRemoveSelf) { try m.removeNode("n1") }
        #expect(m.nodeCount == 1)
    }

    @Test func removeNodeRefusesAnUnknownID() {
        #expect(throws: ClusterError.nodeNotFound) { try m.removeNode("n9") }
    }

    // MARK: - Reads

    @Test func nodeRefusesAnUnknownID() {
        #expect(throws: ClusterError.nodeNotFound) { try m.node("n9") }
        #expect(throws: ClusterError.nodeNotFound) { try m.node("") }
    }

    @Test func readsAreCopies() throws {
        try m.addNode(peer("n2"))
        var copy = try m.node("n2")
        copy.role = .primary
        copy.term = 99
        var all = m.allNodes
        all[0].addr = "changed"
        all.removeAll()
        var local = m.localNode
        local.lastLSN = 5
        #expect(try m.node("n2").role == .replica)
        #expect(try m.node("n2").term == 0)
        #expect(m.allNodes.map(\.addr) == ["127.0.0.1:7001", "127.0.0.1:7002"])
        #expect(m.localNode.lastLSN == 0)
        #expect(m.nodeCount == 2)
    }

    @Test func allNodesIncludesTheLocalNodeSortedByID() throws {
        for id in ["n5", "a0", "n3", "z9"] { try m.addNode(peer(id)) }
        #expect(m.allNodes.map(\.id) == ["a0", "n1", "n3", "n5", "z9"])
        #expect(m.nodeCount == 5)
    }

    @Test func nodesWithRole() throws {
        try m.addNode(peer("n2", role: .primary))
        try m.addNode(peer("n3", role: .candidate))
        try m.addNode(peer("n4"))
        #expect(m.nodes(withRole: .replica).map(\.id) == ["n1", "n4"])
        #expect(m.nodes(withRole: .candidate).map(\.id) == ["n3"])
        #expect(m.nodes(withRole: .primary).map(\.id) == ["n2"])
        m.setLocalRole(.primary)
        #expect(m.nodes(withRole: .primary).map(\.id) == ["n1", "n2"])
        #expect(m.nodes(withRole: .replica).map(\.id) == ["n4"])
    }

    // MARK: - primary

    @Test func primaryIsTheOnlyPrimary() throws {
        try m.addNode(peer("n2"))
        #expect(m.primary == nil)
        try m.updateNodeRole("n2", role: .primary)
        #expect(m.primary?.id == "n2")
    }

    @Test func primaryPrefersTheHighestTermThenTheLowestID() throws {
        try m.addNode(peer("n2", role: .primary, term: 3))
        try m.addNode(peer("n3", role: .primary, term: 5))
        try m.addNode(peer("n4", role: .primary, term: 5))
        try m.addNode(peer("n0", role: .candidate, term: 9))  // not a primary
        #expect(m.primary?.id == "n3")
        #expect(try m.node("n2").role == .replica)  // deposed by the term-5 claims
        m.setLocalRole(.primary)  // in term 0: older than n3's, so n3 stays primary
        #expect(m.primary?.id == "n3")
        #expect(m.localNode.role == .primary)  // the local role is the election's word
        m.setLocalTerm(5)
        #expect(m.primary?.id == "n1")  // term 5 and the lowest id among n1, n3, n4
        m.setLocalTerm(6)
        #expect(m.primary?.id == "n1")
        #expect(m.primary?.lastSeen == clock.now())
        #expect(m.nodes(withRole: .primary).map(\.id) == ["n1"])  // n3 and n4 deposed
        m.setLocalRole(.replica)
        #expect(m.primary == nil)
    }

    @Test func aPrimaryWhoseHeartbeatsStoppedStaysPrimaryButNotHealthy() throws {
        try m.addNode(peer("n2"))
        try m.recordHeartbeat(from: "n2", seq: 1, epoch: 1, term: 1, lsn: 0, role: .primary)
        #expect(m.healthyPrimary(timeout: .seconds(5))?.id == "n2")
        clock.advance(.seconds(5))
        #expect(m.primary?.id == "n2")  // terms, not clocks, depose a primary
        #expect(m.healthyPrimary(timeout: .seconds(5)) == nil)
        m.setLocalTerm(2)
        m.setLocalRole(.primary)
        clock.advance(.seconds(60))
        #expect(m.healthyPrimary(timeout: .seconds(5))?.id == "n1")  // this node is always alive
        #expect(try m.node("n2").role == .replica)
    }

    @Test func aPrimaryAddedWithAnOlderTermIsAReplica() throws {
        try m.addNode(peer("n2", role: .primary, term: 4))
        try m.addNode(peer("n3", role: .primary, term: 3))
        #expect(try m.node("n3").role == .replica)
        try m.updateNodeRole("n3", role: .primary)  // still term 3: a stale claim
        #expect(try m.node("n3").role == .replica)
        try m.updateNodeHeartbeat("n3", seq: 1, epoch: 0, term: 5)
        try m.updateNodeRole("n3", role: .primary)
        #expect(m.nodes(withRole: .primary).map(\.id) == ["n3"])
        // A primary's own term moving back (the seed's setter allows it) makes its claim stale.
        try m.updateNodeHeartbeat("n3", seq: 2, epoch: 0, term: 1)
        #expect(m.primary == nil)
    }

    @Test func updateNodeAddr() throws {
        try m.addNode(peer("n2"))
        try m.updateNodeAddr("n2", addr: "127.0.0.1:9002")
        #expect(try m.node("n2").addr == "127.0.0.1:9002")
        try m.updateNodeAddr("n1", addr: "127.0.0.1:9001")
        #expect(m.localNode.addr == "127.0.0.1:9001")
        #expect(throws: ClusterError.nodeNotFound) { try m.updateNodeAddr("n9", addr: "127.0.0.1:1") }
        #expect(throws: ClusterError.invalidNodeAddr) { try m.updateNodeAddr("n2", addr: "") }
        #expect(try m.node("n2").addr == "127.0.0.1:9002")
    }

    // MARK: - Health, with an injected clock

    @Test func healthyNodesFollowTheClock() throws {
        try m.addNode(peer("n2"))  // seen at t0
        clock.advance(.seconds(2))
        try m.addNode(peer("n3"))  // seen at t0 + 2
        #expect(m.healthyNodeCount(timeout: .seconds(5)) == 3)
        #expect(m.healthyNodes(timeout: .seconds(5)).map(\.id) == ["n1", "n2", "n3"])

        clock.advance(.seconds(3))  // n2 is exactly 5 s old: no longer healthy
        #expect(m.healthyNodeCount(timeout: .seconds(5)) == 2)
        #expect(m.healthyNodes(timeout: .seconds(5)).map(\.id) == ["n1", "n3"])

        try m.updateNodeHeartbeat("n2", seq: 1, epoch: 0, term: 0)  // heard again
        #expect(m.healthyNodes(timeout: .seconds(5)).map(\.id) == ["n1", "n2", "n3"])

        clock.advance(.seconds(10))
        #expect(m.healthyNodes(timeout: .seconds(5)).map(\.id) == ["n1"])
        #expect(m.healthyNodeCount(timeout: .seconds(5)) == 1)
        #expect(m.healthyNodeCount(timeout: .seconds(60)) == 3)
        #expect(m.nodeCount == 3)  // unhealthy nodes stay members
    }

    @Test func localNodeIsAlwaysHealthy_deliberateDepartureFromSeed() throws {
        // The seed never refreshes its own LastSeen, so a seed node eventually counts itself as
        // dead. Here the local node is alive by definition.
        clock.advance(.seconds(3600))
        #expect(m.healthyNodeCount(timeout: .seconds(1)) == 1)
        #expect(m.healthyNodes(timeout: .seconds(1)).map(\.id) == ["n1"])
        #expect(m.healthyNodeCount(timeout: .zero) == 1)
        #expect(m.localNode.lastSeen == clock.now())
        #expect(try m.node("n1").lastSeen == clock.now())
        #expect(m.allNodes.first?.lastSeen == clock.now())
        #expect(m.localNode.isHealthy(timeout: .seconds(1), now: clock.now()))
        #expect(m.hasQuorum(minQuorum: 1, healthTimeout: .seconds(1)))
    }

    @Test func hasQuorumIsTheSeedsHealthyCountRule() throws {
        try m.addNode(peer("n2"))
        try m.addNode(peer("n3"))
        #expect(m.hasQuorum(minQuorum: 3, healthTimeout: .seconds(5)))
        #expect(!m.hasQuorum(minQuorum: 4, healthTimeout: .seconds(5)))
        #expect(m.hasQuorum(minQuorum: 0, healthTimeout: .seconds(5)))
        clock.advance(.seconds(5))
        #expect(!m.hasQuorum(minQuorum: 2, healthTimeout: .seconds(5)))
        #expect(m.hasQuorum(minQuorum: 1, healthTimeout: .seconds(5)))
        try m.updateNodeHeartbeat("n3", seq: 1, epoch: 0, term: 0)
        #expect(m.hasQuorum(minQuorum: 2, healthTimeout: .seconds(5)))
    }

    // MARK: - Epoch

    @Test func incrementEpoch() {
        #expect(m.incrementEpoch() == 1)
        #expect(m.incrementEpoch() == 2)
        m.incrementEpoch()  // @discardableResult
        #expect(m.epoch == 3)
        #expect(m.localNode.epoch == 3)
    }

    @Test func incrementEpochStopsBelowTheRangeBound() {
        m.setEpoch(ElectionCore.maxAcceptedTerm - 2)
        #expect(m.incrementEpoch() == ElectionCore.maxAcceptedTerm - 1)
        #expect(m.incrementEpoch() == ElectionCore.maxAcceptedTerm - 1)
        #expect(m.localNode.epoch == ElectionCore.maxAcceptedTerm - 1)
    }

    @Test func observeEpochOnlyRaises() {
        m.observeEpoch(7)
        #expect(m.epoch == 7)
        m.observeEpoch(3)
        #expect(m.epoch == 7)
        m.observeEpoch(7)
        #expect(m.epoch == 7)
        #expect(m.localNode.epoch == 7)
        #expect(m.incrementEpoch() == 8)
    }

    @Test func setEpochOnlyRaises() {
        m.setEpoch(10)
        #expect(m.epoch == 10)
        m.setEpoch(4)
        #expect(m.epoch == 10)
        #expect(m.localNode.epoch == 10)
        m.setEpoch(ElectionCore.maxAcceptedTerm)  // out of range: ignored
        #expect(m.epoch == 10)
    }

    // MARK: - The local node

    @Test func localSetters() {
        m.setLocalLSN(120)
        m.setLocalRole(.candidate)
        m.setLocalTerm(3)
        let local = m.localNode
        #expect(local.lastLSN == 120)
        #expect(local.role == .candidate)
        #expect(local.term == 3)
        #expect(m.allNodes == [local])
    }

    // MARK: - Updating members

    @Test func updateNodeHeartbeatStampsNowAndSetsSeqEpochTerm() throws {
        try m.addNode(peer("n2", role: .primary))
        try m.updateNodeLSN("n2", lsn: 50)
        clock.advance(.seconds(7))
        try m.updateNodeHeartbeat("n2", seq: 11, epoch: 2, term: 3)
        let n = try m.node("n2")
        #expect(n.lastSeen == clock.now())
        #expect(n.lastHeartbeatSeq == 11)
        #expect(n.epoch == 2)
        #expect(n.term == 3)
        #expect(n.lastLSN == 50)  // untouched
        #expect(n.role == .primary)  // untouched
        #expect(m.epoch == 0)  // the cluster epoch is not raised by a heartbeat
    }

    @Test func updateNodeLSNAndRole() throws {
        try m.addNode(peer("n2"))
        let before = try m.node("n2")
        try m.updateNodeLSN("n2", lsn: .max)
        try m.updateNodeRole("n2", role: .candidate)
        var expected = before
        expected.lastLSN = .max
        expected.role = .candidate
        #expect(try m.node("n2") == expected)  // lastSeen untouched
    }

    @Test func updatesOfUnknownNodesThrow() {
        #expect(throws: ClusterError.nodeNotFound) { try m.updateNodeHeartbeat("n9", seq: 1, epoch: 1, term: 1) }
        #expect(throws: ClusterError.nodeNotFound) { try m.updateNodeLSN("n9", lsn: 1) }
        #expect(throws: ClusterError.nodeNotFound) { try m.updateNodeRole("n9", role: .primary) }
        #expect(throws: ClusterError.nodeNotFound) {
            try m.recordHeartbeat(from: "n9", seq: 1, epoch: 1, term: 1, lsn: 1, role: .replica)
        }
        #expect(m.nodeCount == 1)
    }

    @Test func updatesReachTheLocalNodeAsInTheSeed() throws {
        try m.updateNodeRole("n1", role: .primary)
        try m.updateNodeLSN("n1", lsn: 42)
        try m.updateNodeHeartbeat("n1", seq: 3, epoch: 1, term: 2)
        let local = m.localNode
        #expect(local.role == .primary)
        #expect(local.lastLSN == 42)
        #expect(local.lastHeartbeatSeq == 3 && local.epoch == 1 && local.term == 2)
    }

    @Test func recordHeartbeatUpdatesEverythingAtOnce() throws {
        try m.addNode(peer("n2"))
        clock.advance(.seconds(9))
        try m.recordHeartbeat(from: "n2", seq: 5, epoch: 6, term: 7, lsn: 8, role: .primary)
        let n = try m.node("n2")
        #expect(n.lastSeen == clock.now())
        #expect(n.lastHeartbeatSeq == 5)
        #expect(n.epoch == 6)
        #expect(n.term == 7)
        #expect(n.lastLSN == 8)
        #expect(n.role == .primary)
        #expect(n.addr == "127.0.0.1:7002" && n.priority == 1)
        #expect(m.epoch == 0)  // observeEpoch is separate
        #expect(m.primary?.id == "n2")
    }

    @Test func recordHeartbeatRefusesTheLocalID() {
        #expect(throws: ClusterError.protocolViolation("heartbeat from this node's own id \"n1\"")) {
            try m.recordHeartbeat(from: "n1", seq: 1, epoch: 1, term: 1, lsn: 1, role: .primary)
        }
        #expect(m.localNode.role == .replica)
    }

    // MARK: - Concurrency

    @Test func concurrentUseEndsInTheExpectedState() async {
        let tasks = 32
        let perTask = 100
        let m = self.m
        // Each task works on its own ids and reads what everyone shares; it returns what went
        // wrong (checked once at the end: an #expect per operation would dominate the run time).
        let failures = await withTaskGroup(of: [String].self) { group in
            for t in 0..<tasks {
                group.addTask {
                    var failures: [String] = []
                    func check(_ ok: Bool, _ what: @autoclosure () -> String) { if !ok { failures.append(what()) } }
                    for i in 0..<perTask {
                        let id = "t\(t)-\(i)"
                        do {
                            try m.addNode(NodeInfo(id: id, addr: "10.0.\(t).\(i):7000"))
                            try m.updateNodeHeartbeat(id, seq: UInt64(i), epoch: 1, term: UInt64(t))
                            try m.updateNodeLSN(id, lsn: UInt64(i * 10))
                            try m.recordHeartbeat(from: id, seq: UInt64(i + 1), epoch: 2, term: UInt64(t), lsn: UInt64(i * 10 + 1), role: .replica)
                            try m.updateNodeRole(id, role: i % 3 == 0 ? .candidate : .replica)
                            check(try m.node(id).addr == "10.0.\(t).\(i):7000", "\(id): wrong addr")
                        } catch {
                            failures.append("\(id): \(error)")
                        }
                        check(m.contains(id), "\(id) missing")
                        check(m.nodeCount > 1, "nodeCount")
                        check(m.epoch >= UInt64(i), "epoch went back")
                        if i % 50 == 0 {  // the whole-list reads visit every node: keep them rarer
                            check(m.healthyNodeCount(timeout: .seconds(5)) > 1, "healthyNodeCount")
                            check(m.allNodes.contains { $0.id == id }, "\(id) not in allNodes")
                            check(m.primary == nil, "a primary appeared")
                            check(m.nodes(withRole: .candidate).contains { $0.id == id } == (i % 3 == 0), "\(id): wrong role")
                            check(m.healthyNodes(timeout: .seconds(5)).contains { $0.id == id }, "\(id) not healthy")
                        }
                        do {
                            try m.addNode(NodeInfo(id: id, addr: "x:1"))
                            failures.append("\(id): added twice")
                        } catch {
                            check((error as? ClusterError) == .nodeAlreadyExists, "\(id): \(error)")
                        }
                        m.observeEpoch(m.epoch)  // never above the current epoch: the count stays exact
                        m.incrementEpoch()
                        if i % 2 == 1 {
                            do { try m.removeNode(id) } catch { failures.append("remove \(id): \(error)") }
                        }
                    }
                    return failures
                }
            }
            return await group.reduce(into: []) { $0 += $1 }
        }
        #expect(failures == [])
        #expect(m.epoch == UInt64(tasks * perTask))
        #expect(m.localNode.epoch == m.epoch)
        // Exactly the even-numbered nodes of every task remain, each with its last update.
        var expected = [m.localNode]
        for t in 0..<tasks {
            for i in stride(from: 0, to: perTask, by: 2) {
                expected.append(NodeInfo(
                    id: "t\(t)-\(i)", addr: "10.0.\(t).\(i):7000", role: i % 3 == 0 ? .candidate : .replica,
                    lastSeen: clock.now(), lastHeartbeatSeq: UInt64(i + 1), epoch: 2, term: UInt64(t),
                    lastLSN: UInt64(i * 10 + 1)))
            }
        }
        expected.sort { $0.id < $1.id }
        #expect(m.allNodes == expected)
        #expect(m.nodeCount == 1 + tasks * perTask / 2)
        #expect(!m.contains("t0-1") && !m.contains("t31-99"))
        #expect(m.nodes(withRole: .candidate).count == tasks * (0..<perTask).filter { $0 % 2 == 0 && $0 % 3 == 0 }.count)
        #expect(m.healthyNodeCount(timeout: .seconds(5)) == m.nodeCount)
    }
}
