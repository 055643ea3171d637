import ClusterCore
import ClusterSimulation
import Testing

// The deterministic simulator as a test (after TigerBeetle's VOPR): many randomised schedules,
// every invariant checked after every step, the seed printed on failure so that it replays.

@Suite("Simulation", .serialized)
struct SimulationTests {
    /// Runs `count` schedules from `firstSeed`, cycling through 3, 5 and 7 nodes.
    static func runSchedules(
        count: Int, firstSeed: UInt64, knowledge: SimulationConfig.VoterKnowledge = .full
    ) -> [SimulationResult] {
        let sizes = [3, 5, 7]
        return (0..<count).map { i in
            var simulation = Simulation(
                config: SimulationConfig(seed: firstSeed + UInt64(i), nodes: sizes[i % sizes.count], knowledge: knowledge))
            return simulation.run()
        }
    }

    /// The failure report: seed, violations, schedule parameters and the replay command.
    static func failure(_ result: SimulationResult) -> String {
        let violations = result.violations.joined(separator: "; ")
        return "FAIL seed=\(result.config.seed) nodes=\(result.config.nodes): \(violations)\n"
            + "  schedule: \(result.config)\n  replay: \(result.config.replayCommand)"
    }

    /// The first seeds of the short run (`make sim` runs longer from 7, 20261130 and 424242): not
    /// only the one the simulator was tuned on (issue 16, hole 8).
    static let firstSeeds: [UInt64] = [1, 7, 20_261_130, 424_242]

    @Test("500 randomised schedules of 3, 5 and 7 nodes, 125 from each of four first seeds: no invariant violated, a leader within 10 T of the heal")
    func randomisedSchedules() async {
        let (results, elapsed) = await offPool { () -> ([SimulationResult], Duration) in
            var results: [SimulationResult] = []
            let elapsed = ContinuousClock().measure {
                for seed in Self.firstSeeds { results += Self.runSchedules(count: 125, firstSeed: seed) }
            }
            return (results, elapsed)
        }
        for result in results where !result.passed {
            Issue.record(Comment(rawValue: Self.failure(result)))
        }
        let leaders = results.reduce(0) { $0 + $1.leaders.count }
        let candidacies = results.reduce(0) { $0 + $1.candidacies }
        let steps = results.reduce(0) { $0 + $1.steps }
        let slowest = results.compactMap(\.leaderElectedAfterHealNanoseconds).max() ?? 0
        print(
            "simulation: 500 schedules, \(leaders) leaders of \(candidacies) candidacies, \(steps) core steps, slowest election after heal"
                + " \(Double(slowest) / 1e6)ms (bound \(Double(results[0].config.electionBoundNanoseconds) / 1e6)ms), \(elapsed);"
                + " \(TransferSummary(results))")
        #expect(results.allSatisfy { $0.leaderElectedAfterHealNanoseconds != nil })
        #expect(leaders > 500, "the schedules must exercise elections")
    }

    struct FailedSeed: Sendable, CustomTestStringConvertible {
        var seed: UInt64
        var nodes: Int
        var testDescription: String { "seed \(seed), \(nodes) nodes" }
    }

    @Test(
        "issue 16, hole 8: the schedules that failed on main replay clean (a fencing bug in the core, two checker false positives)",
        arguments: [FailedSeed(seed: 3940, nodes: 3), FailedSeed(seed: 2693, nodes: 5), FailedSeed(seed: 20_301_039, nodes: 3)])
    func issue16SeedsReplayClean(_ c: FailedSeed) async {
        let result = await offPool {
            var simulation = Simulation(config: SimulationConfig(seed: c.seed, nodes: c.nodes))
            return simulation.run()
        }
        if !result.passed { Issue.record(Comment(rawValue: Self.failure(result))) }
        #expect(result.leaderElectedAfterHealNanoseconds != nil)
    }

    @Test("partial voter knowledge (minQuorumSize = a majority of the cluster): no violation; once the views converge at the heal, a leader within the bound")
    func partialKnowledgeSchedules() async {
        let results = await offPool { Self.runSchedules(count: 150, firstSeed: 10_000, knowledge: .partial) }
        for result in results where !result.passed {
            Issue.record(Comment(rawValue: Self.failure(result)))
        }
        // Measured, not skipped: every run reports when its final leader was elected.
        #expect(results.allSatisfy { $0.leaderElectedAfterHealNanoseconds != nil })
        #expect(results.contains { ($0.leaderElectedAfterHealNanoseconds ?? 0) > 0 })
    }

    @Test("every new fault at once (LSN changes, membership churn, hostile peers, one-way partitions): no violation, a leader within the bound")
    func everyFaultAtOnce() async {
        let results = await offPool {
            (0..<90).map { i -> SimulationResult in
                var config = SimulationConfig(seed: 20_000 + UInt64(i), nodes: [3, 5, 7][i % 3], knowledge: i % 2 == 0 ? .full : .partial)
                config.lsnChanges = true
                config.membershipChanges = true
                config.hostilePeers = true
                config.oneWayPartitions = true
                var simulation = Simulation(config: config)
                return simulation.run()
            }
        }
        for result in results where !result.passed { Issue.record(Comment(rawValue: Self.failure(result))) }
    }

    @Test("#10 in the simulator: strangers and hostile members sending rising terms do not move a healthy cluster")
    func hostilePeersDoNotDeposeHealthyPrimary() async {
        let T = SimulationConfig(seed: 0, nodes: 3).electionTimeoutNanoseconds
        let runs = await offPool {
            (0..<20).map { i -> (SimulationConfig, SimulationResult) in
                var config = SimulationConfig(seed: 30_000 + UInt64(i), nodes: [3, 5, 7][i % 3])
                config.partitions = false
                config.crashes = false
                config.forcedElections = false
                config.lossMaxPercent = 0
                config.membershipChanges = false
                config.oneWayPartitions = false
                config.transfers = false  // a transfer changes the primary on purpose
                config.linkDrops = false  // a broken link frees its follower to vote for a hostile member's request
                config.writeFailurePercent = 0  // healthy storage too: a failed or slow write is a fault
                config.slowWritePercent = 0
                config.hostilePeers = true
                var simulation = Simulation(config: config)
                return (config, simulation.run())
            }
        }
        for (config, result) in runs {
            if !result.passed { Issue.record(Comment(rawValue: Self.failure(result))) }
            guard let first = result.leaders.first else {
                Issue.record("seed \(config.seed): no leader")
                continue
            }
            // Past the first election (and its stragglers), the primary and its term stay. A node
            // that has not heard the first primary yet holds no lease, so a hostile term can still
            // reach it then; the elections that follow settle within 5 T (durable writes included).
            let later = result.leaders.filter { $0.atNanoseconds > first.atNanoseconds + 5 * T }
            #expect(later.isEmpty, "seed \(config.seed): \(later)")
        }
    }

    @Test("the checker catches a violation: disjoint voter sets with minQuorumSize 1 elect two leaders in one term")
    func checkerCatchesTwoLeaders() async {
        let results = await offPool { Self.runSchedules(count: 6, firstSeed: 1, knowledge: .disjointGroups) }
        #expect(results.allSatisfy { !$0.passed }, "every misconfigured run must be reported")
        #expect(results.contains { $0.violations.contains { $0.contains("two leaders in term") } })
    }

    @Test("a schedule replays exactly from its seed")
    func replaysFromSeed() {
        let config = SimulationConfig(seed: 42, nodes: 5)
        var first = Simulation(config: config)
        var second = Simulation(config: config)
        let a = first.run()
        let b = second.run()
        #expect(a.leaders == b.leaders)
        #expect(a.steps == b.steps && a.messagesSent == b.messagesSent && a.messagesDelivered == b.messagesDelivered)
        #expect(a.steps > 1000)
    }
}
