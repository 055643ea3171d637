import Foundation
import Testing
@testable import ClusterCore

/// Collects what an observer is called with. Safe from any thread.
final class ChangeLog: @unchecked Sendable {
    private let lock = NSLock()
    private var changes: [MembershipChange] = []

    func append(_ c: MembershipChange) {
        lock.lock()
        defer { lock.unlock() }
        changes.append(c)
    }

    var all: [MembershipChange] {
        lock.lock()
        defer { lock.unlock() }
        return changes
    }
}

@Suite struct MembershipObserverTests {
    let clock = FakeClock()
    let m: ClusterMembership

    init() {
        let clock = self.clock
        m = ClusterMembership(localNodeID: "n1", localAddr: "127.0.0.1:7001", now: { clock.now() })
    }

    func node(_ id: String, role: NodeRole = .replica, term: UInt64 = 0) -> NodeInfo {
        NodeInfo(id: id, addr: "127.0.0.1:700\(id.last!)", role: role, lastSeen: clock.now(), term: term)
    }

    @Test("observers see additions, removals, address and primary changes, in order; not heartbeats")
    func changesInOrder() throws {
        let log = ChangeLog()
        m.addObserver { log.append($0) }
        let added2 = node("n2")
        let added3 = node("n3")
        try m.addNode(added2)
        try m.addNode(added3)
        try m.recordHeartbeat(from: "n2", seq: 1, epoch: 1, term: 1, lsn: 5, role: .primary)
        clock.advance(.seconds(1))
        for seq in 2...5 as ClosedRange<UInt64> {  // the hot path: heartbeats that change no role
            try m.recordHeartbeat(from: "n2", seq: seq, epoch: 1, term: 1, lsn: seq, role: .primary)
            try m.recordHeartbeat(from: "n3", seq: seq, epoch: 1, term: 1, lsn: seq, role: .replica)
        }
        m.setLocalLSN(9)
        m.observeEpoch(1)
        try m.updateNodeAddr("n3", addr: "127.0.0.1:7103")
        try m.updateNodeAddr("n3", addr: "127.0.0.1:7103")  // unchanged: no event
        m.setLocalAddr("127.0.0.1:7101")
        try m.recordHeartbeat(from: "n3", seq: 6, epoch: 2, term: 2, lsn: 6, role: .primary)  // failover
        try m.removeNode("n3")
        try m.removeNode("n2")

        var n2 = added2
        n2.role = .primary
        n2.term = 1
        n2.epoch = 1
        n2.lastHeartbeatSeq = 1
        n2.lastLSN = 5
        var n3 = node("n3")
        n3.addr = "127.0.0.1:7103"
        n3.lastSeen = clock.now()
        n3.lastHeartbeatSeq = 5
        n3.lastLSN = 5
        n3.epoch = 1
        n3.term = 1
        var local = m.localNode
        local.lastSeen = clock.now()
        var n3Primary = n3
        n3Primary.role = .primary
        n3Primary.term = 2
        n3Primary.epoch = 2
        n3Primary.lastHeartbeatSeq = 6
        n3Primary.lastLSN = 6
        #expect(log.all == [
            .added(added2),
            .added(added3),
            .primaryChanged(n2),
            .addressChanged(n3),
            .addressChanged(local),
            .primaryChanged(n3Primary),
            .removed("n3"),
            .primaryChanged(nil),
            .removed("n2"),  // n2 was deposed by n3's term 2: no primary change
        ])
        #expect(m.primary == nil)
    }

    @Test("this node's own claims and the removal of the primary are primary changes")
    func primaryChanges() throws {
        let log = ChangeLog()
        try m.addNode(node("n2", role: .primary, term: 1))
        m.addObserver { log.append($0) }
        m.setLocalTerm(2)  // not primary: no claim
        m.setLocalRole(.primary)  // wins term 2: n2 is deposed
        let n1 = m.localNode
        m.setLocalRole(.replica)
        try m.removeNode("n2")  // deposed already: no primary change
        try m.addNode(node("n3", role: .primary, term: 3))
        try m.removeNode("n3")
        let n3 = node("n3", role: .primary, term: 3)
        #expect(log.all == [
            .primaryChanged(n1), .primaryChanged(nil), .removed("n2"),
            .added(n3), .primaryChanged(n3), .removed("n3"), .primaryChanged(nil),
        ])
    }

    @Test("an observer gets only the changes made after it was added, none after it was removed")
    func addAndRemove() throws {
        try m.addNode(node("n2"))
        let first = ChangeLog()
        let second = ChangeLog()
        let token = m.addObserver { first.append($0) }
        try m.addNode(node("n3"))
        m.addObserver { second.append($0) }
        m.removeObserver(token)
        m.removeObserver(token)  // again: ignored
        try m.addNode(node("n4"))
        #expect(first.all == [.added(node("n3"))])
        #expect(second.all == [.added(node("n4"))])
    }

    @Test("a change made by an observer is delivered after the current one, to every observer, in order")
    func reentrantChange() throws {
        let first = ChangeLog()
        let second = ChangeLog()
        let m = self.m
        m.addObserver { change in
            first.append(change)
            if case .added(let n) = change, n.id == "n2" { try? m.removeNode("n2") }
        }
        m.addObserver { second.append($0) }
        try m.addNode(node("n2"))
        #expect(first.all == [.added(node("n2")), .removed("n2")])
        #expect(second.all == [.added(node("n2")), .removed("n2")])
        #expect(!m.contains("n2"))
    }

    @Test("an observer that removes itself is not called again, not even for a change already made")
    func selfRemoval() throws {
        let log = ChangeLog()
        let m = self.m
        let box = TokenBox()
        box.token = m.addObserver { change in
            log.append(change)
            if let t = box.token { m.removeObserver(t) }
            try? m.addNode(NodeInfo(id: "n9", addr: "127.0.0.1:7009"))  // made during the delivery
        }
        try m.addNode(node("n2"))
        try m.addNode(node("n3"))
        #expect(log.all == [.added(node("n2"))])
        #expect(m.contains("n9"))
    }

    @Test("without contention the thread that makes a change calls the observers before its call returns")
    func deliveredOnTheChangingThread() throws {
        let marker = UUID().uuidString
        let seen = ChangeLog()
        m.addObserver { change in
            if Thread.current.threadDictionary["membership-test"] as? String == marker { seen.append(change) }
        }
        Thread.current.threadDictionary["membership-test"] = marker
        defer { Thread.current.threadDictionary["membership-test"] = nil }
        try m.addNode(node("n2"))
        #expect(seen.all == [.added(node("n2"))])
    }

    @Test("changes from many threads reach the observers one at a time, each id's in order")
    func concurrentChanges() {
        let log = ChangeLog()
        let inFlight = InFlight()
        m.addObserver { change in
            inFlight.enter()
            log.append(change)
            inFlight.leave()
        }
        let m = self.m
        let threads = 8
        let rounds = 200
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            for r in 0..<rounds {
                let id = "t\(t)-\(r % 3)"
                try? m.addNode(NodeInfo(id: id, addr: "127.0.0.1:\(7000 + t)"))
                try? m.recordHeartbeat(from: id, seq: UInt64(r), epoch: 0, term: 0, lsn: 0, role: .replica)
                try? m.removeNode(id)
            }
        }
        #expect(inFlight.maximum == 1)
        let all = log.all
        #expect(all.count == threads * rounds * 2)
        var present: [String: Bool] = [:]
        var broken: [String] = []
        for change in all {
            switch change {
            case .added(let n):
                if present[n.id] == true { broken.append("added twice: \(n.id)") }
                present[n.id] = true
            case .removed(let id):
                if present[id] != true { broken.append("removed before added: \(id)") }
                present[id] = false
            default:
                broken.append("unexpected \(change)")
            }
        }
        #expect(broken == [])
        #expect(present.values.allSatisfy { !$0 })
        #expect(m.nodeCount == 1)
    }
}

final class TokenBox: @unchecked Sendable {
    var token: MembershipObserverToken?
}

/// Counts the observer calls under way at once.
final class InFlight: @unchecked Sendable {
    private let lock = NSLock()
    private var current = 0
    private(set) var maximum = 0

    func enter() {
        lock.lock()
        current += 1
        maximum = max(maximum, current)
        lock.unlock()
    }

    func leave() {
        lock.lock()
        current -= 1
        lock.unlock()
    }
}
