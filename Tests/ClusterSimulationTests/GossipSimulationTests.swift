import ClusterCore
import ClusterSimulation
import Testing

// The gossip membership simulator: randomised schedules pass every check, and each check catches
// its planted violation (a fault the simulator commits behind its own ground truth's back).

private func config(seed: UInt64, nodes: Int, planted: GossipPlantedFault? = nil) -> GossipSimulationConfig {
    var c = GossipSimulationConfig(seed: seed, nodes: nodes)
    c.churnNanoseconds = 8_000_000_000
    c.steadyNanoseconds = 2_000_000_000
    c.planted = planted
    return c
}

@Suite("Gossip simulation: schedules and planted violations")
struct GossipSimulationTests {
    @Test("schedules with loss, delay, a partition, stalls, crashes, leaves and joins pass every check", arguments: [
        (UInt64(1), 50), (UInt64(2), 50), (UInt64(3), 100), (UInt64(4), 200),
    ])
    func schedulesPass(seed: UInt64, nodes: Int) {
        var simulation = GossipSimulation(config: config(seed: seed, nodes: nodes))
        let r = simulation.run()
        #expect(r.passed, "\(r.violations)")
        // The figures are measured: a probe of each kind, and a steady load of about one probe
        // and one ack per member per probe interval.
        #expect(r.killFailedByAllNanoseconds != nil && r.vanishFailedByAllNanoseconds != nil)
        #expect(r.killFailedByAllNanoseconds! < r.vanishFailedByAllNanoseconds!)
        #expect(r.steadyMessagesPerMemberSecond > 8 && r.steadyMessagesPerMemberSecond < 13)
        #expect(r.stalls > 0)
    }

    @Test("a partition that outlasts reaping (each side forgets the other): healed, the sides merge back, every check passes; the reconnect rule is used", arguments: [
        (UInt64(21), 30), (UInt64(22), 60),
    ])
    func longPartitionMergesBack(seed: UInt64, nodes: Int) {
        var c = config(seed: seed, nodes: nodes)
        c.useLongPartition()
        var simulation = GossipSimulation(config: c)
        let r = simulation.run()
        #expect(r.passed, "\(r.violations)")
        #expect(simulation.totalCounters().reconnectExchanges > 0)
    }

    @Test("a run replays exactly from its seed")
    func deterministic() {
        var a = GossipSimulation(config: config(seed: 9, nodes: 30))
        var b = GossipSimulation(config: config(seed: 9, nodes: 30))
        let ra = a.run(), rb = b.run()
        #expect(ra.steps == rb.steps && ra.bytesPerMemberSecond == rb.bytesPerMemberSecond)
        #expect(ra.killFailedByAllNanoseconds == rb.killFailedByAllNanoseconds)
    }

    func violations(_ planted: GossipPlantedFault) -> [String] {
        var simulation = GossipSimulation(config: config(seed: 5, nodes: 30, planted: planted))
        return simulation.run().violations
    }

    @Test("(a) completeness: a member silently cut off after the churn is caught")
    func plantedIsolation() {
        let found = violations(.isolateOneAfterChurn)
        #expect(found.contains { $0.hasPrefix("completeness:") }, "\(found)")
    }

    @Test("(b) failure detection: a 'crashed' member that keeps answering is caught")
    func plantedZombie() {
        let found = violations(.zombieCrash)
        #expect(found.contains { $0.hasPrefix("failure detection:") }, "\(found)")
    }

    @Test("(b) left: a member that stops without announcing its leave is caught")
    func plantedSilentLeave() {
        let found = violations(.leaveWithoutAnnouncing)
        #expect(found.contains { $0.hasPrefix("left:") }, "\(found)")
    }

    @Test("(c) accuracy: a protected member whose datagrams are dropped behind the checker's back is caught")
    func plantedSilencedProtected() {
        let found = violations(.silenceProtected)
        #expect(found.contains { $0.hasPrefix("accuracy:") }, "\(found)")
    }

    @Test("(d) the primary: primary news stripped from every datagram and full state is caught")
    func plantedStrippedPrimary() {
        let found = violations(.stripPrimary)
        #expect(found.contains { $0.hasPrefix("primary:") }, "\(found)")
    }

    @Test("the accuracy check judges declarations by the ground truth and the partition window")
    func accuracyCheckerRules() {
        var c = GossipChecker(accuracyWindowNanoseconds: 1_000)
        c.protected = ["p"]
        c.noteFailed(observer: "x", subject: "u", subjectUp: true, at: 10)  // not protected
        c.noteFailed(observer: "x", subject: "p", subjectUp: false, at: 20)  // really down
        c.partitionActive = true
        c.noteFailed(observer: "x", subject: "p", subjectUp: true, at: 30)  // during a partition
        c.partitionActive = false
        c.lastPartitionEnd = 40
        c.noteFailed(observer: "x", subject: "p", subjectUp: true, at: 500)  // within the window
        #expect(c.violations.isEmpty)
        c.noteFailed(observer: "x", subject: "p", subjectUp: true, at: 2_000)
        #expect(c.violations.count == 1)
    }
}
