import ClusterCore
@testable import ClusterSimulation
import Testing


// The simulator with slow and failing durable writes (issue 6, item 2): the invariants hold
// against what was really written, and the checker catches a driver that acts on a failed write.

// Nested in the serialized "Simulation" suite, so that no two heavy simulation tests run at once
// (the loopback tests beside them have only two cores).
extension SimulationTests {
    @Suite("durable writes")
    struct DurableWriteSimulationTests {
        /// `count` schedules from `firstSeed` (3, 5 and 7 nodes) with writes that fail and are slow.
        static func runSchedules(
            count: Int, firstSeed: UInt64, failurePercent: Int, slowPercent: Int, brokenDriver: Bool = false,
            checksPersistBeforeSend: Bool = true, crashEvery: UInt64? = nil
        ) -> [SimulationResult] {
            let sizes = [3, 5, 7]
            return (0..<count).map { i in
                var config = SimulationConfig(seed: firstSeed + UInt64(i), nodes: sizes[i % sizes.count])
                config.writeFailurePercent = failurePercent
                config.slowWritePercent = slowPercent
                config.reportsFailedWritesAsDurable = brokenDriver
                config.checksPersistBeforeSend = checksPersistBeforeSend
                if let crashEvery {  // faults (crashes among them) at least this often
                    config.crashes = true
                    config.chaosGapMaxNanoseconds = crashEvery
                }
                var simulation = Simulation(config: config)
                return simulation.run()
            }
        }

        @Test("writes that fail (20%) and are slow (20%, up to 3 T): no invariant violated, a leader within 10 T of the heal")
        func failingAndSlowWrites() async {
            let results = await offPool { Self.runSchedules(count: 150, firstSeed: 50_000, failurePercent: 20, slowPercent: 20) }
            for result in results where !result.passed {
                Issue.record(Comment(rawValue: SimulationTests.failure(result)))
            }
            let writes = results.reduce(0) { $0 + $1.writes }
            let failed = results.reduce(0) { $0 + $1.writesFailed }
            let leaders = results.reduce(0) { $0 + $1.leaders.count }
            print("durable writes: 150 schedules, \(writes) writes, \(failed) failed, \(leaders) leaders")
            #expect(failed > writes / 10, "the schedules must exercise failed writes")
            #expect(leaders > 150, "the schedules must exercise elections")
            #expect(results.allSatisfy { $0.leaderElectedAfterHealNanoseconds != nil })
        }

        @Test("the checker catches a driver that reports failed writes as durable (the runtime's old fault)")
        func checkerCatchesFailedWritesTakenAsDurable() async {
            let results = await offPool {
                Self.runSchedules(count: 60, firstSeed: 1, failurePercent: 30, slowPercent: 0, brokenDriver: true)
            }
            let violations = results.flatMap(\.violations)
            for violation in violations.prefix(12) { print("caught: \(violation)") }
            #expect(results.filter { !$0.passed }.count > 30, "most broken runs must be reported")
            #expect(violations.contains { $0.contains("before persisting it") })
        }

        @Test("without its persist-before-send checks, the checker still catches that driver: a node votes twice in a term across a restart")
        func invariantsCatchFailedWritesTakenAsDurable() async {
            let results = await offPool {
                Self.runSchedules(
                    count: 200, firstSeed: 1, failurePercent: 30, slowPercent: 0, brokenDriver: true, checksPersistBeforeSend: false,
                    crashEvery: 50 * ms)
            }
            let failed = results.filter { !$0.passed }
            let doubleVotes = failed.filter { $0.violations.contains { $0.contains("voted for") } }
            for result in doubleVotes.prefix(3) { print("caught: seed \(result.config.seed): \(result.violations[0])") }
            print("broken driver, persist-before-send unchecked: \(failed.count) of 200 runs reported, \(doubleVotes.count) for a double vote")
            // Fewer than without the lease (a node hearing a live primary votes for nobody): 2 of 200.
            #expect(doubleVotes.count >= 2, "a vote the disk lost, then another vote in that term after a restart")
            // The same schedules with the real driver pass.
            let sound = await offPool {
                Self.runSchedules(
                    count: 200, firstSeed: 1, failurePercent: 30, slowPercent: 0, checksPersistBeforeSend: false, crashEvery: 50 * ms)
            }
            for result in sound where !result.passed {
                Issue.record(Comment(rawValue: SimulationTests.failure(result)))
            }
        }
    }
}
