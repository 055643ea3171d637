// `cluster sim`: runs randomised schedules of the election simulator and checks every invariant.
// Schedule i uses seed S+i and the i-th node count of --nodes (cycling); with --seeds, that many
// schedules from each first seed S in turn (a simulator tuned on one seed's schedules is checked
// on others'). A failure prints the seed, the schedule parameters and the command that replays
// it, and the exit status is 1.

import ArgumentParser
import ClusterSimulation
import FoundationEssentials

struct Sim: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sim",
        abstract: "Deterministic simulation of the cluster's leader election, with invariant checks.")

    @Option(help: "How many schedules to run.")
    var schedules: Int = 100

    @Option(help: "Seed of the first schedule; schedule i uses seed+i.")
    var seed: UInt64 = 1

    @Option(help: "Comma-separated first seeds: --schedules schedules from each (instead of --seed).")
    var seeds: String?

    @Option(help: "Comma-separated cluster sizes, cycled through.")
    var nodes: String = "3,5,7"

    @Option(help: "Voter knowledge: full, partial, or disjoint (a deliberate misconfiguration).")
    var knowledge: String = "full"

    @Flag(help: "Print one line per schedule.")
    var verbose = false

    @Option(help: "With --membership: trace what happens to and is seen by this member (e.g. m7).")
    var traceMember: String?

    @Flag(help: "Simulate the gossip membership layer (SWIM with Lifeguard) instead of the election.")
    var membership = false

    @Flag(help: "With --membership: a fifth of the members cut off for 20 s, past the reaping of failed members (5 s here); healed, the sides must merge back (reconnect every 5 s here).")
    var longPartition = false

    @Option(help: "Print a trace of every step from this simulated time on, in milliseconds.")
    var traceFromMilliseconds: UInt64?

    func run() throws {
        let sizes = nodes.split(separator: ",").compactMap { Int($0.trimmingWhitespace()) }
        guard !sizes.isEmpty, sizes.allSatisfy({ $0 >= 1 }) else {
            throw ValidationError("--nodes needs positive integers, e.g. 3,5,7")
        }
        var firstSeeds = [seed]
        if let seeds {
            let parsed = seeds.split(separator: ",").map { UInt64($0.trimmingWhitespace()) }
            guard !parsed.isEmpty, parsed.allSatisfy({ $0 != nil }) else {
                throw ValidationError("--seeds needs unsigned integers, e.g. 7,20261130,424242")
            }
            firstSeeds = parsed.compactMap { $0 }
        }
        if membership {
            let failed = firstSeeds.reduce(0) { $0 + runMembership(sizes: sizes, from: $1) }
            if firstSeeds.count > 1 {
                print("cluster sim --membership: \(firstSeeds.count) seeds × \(schedules) schedules: \(failed) failed")
            }
            if failed > 0 { throw ExitCode.failure }
            return
        }
        let voterKnowledge: SimulationConfig.VoterKnowledge
        switch knowledge {
        case "full": voterKnowledge = .full
        case "partial": voterKnowledge = .partial
        case "disjoint": voterKnowledge = .disjointGroups
        default: throw ValidationError("--knowledge must be full, partial or disjoint")
        }
        var failed = 0
        for first in firstSeeds {
            failed += try runSchedules(from: first, sizes: sizes, knowledge: voterKnowledge)
        }
        if firstSeeds.count > 1 {
            print("cluster sim: \(firstSeeds.count) seeds × \(schedules) schedules: \(failed) failed")
        }
        if failed > 0 { throw ExitCode.failure }
    }

    /// Runs `schedules` schedules from `seed`, prints the summary, and returns how many failed.
    func runSchedules(from seed: UInt64, sizes: [Int], knowledge voterKnowledge: SimulationConfig.VoterKnowledge) throws -> Int {
        let started = Date()
        var passed = 0
        var failed = 0
        var steps = 0
        var leaders = 0
        var worstElection: UInt64 = 0
        var transfers = (requested: 0, refused: 0, started: 0, succeeded: 0, failed: 0)
        var transferLatencies: [UInt64] = []
        for i in 0..<max(0, schedules) {
            let config0 = SimulationConfig(seed: seed &+ UInt64(i), nodes: sizes[i % sizes.count], knowledge: voterKnowledge)
            var config = config0
            config.traceFromNanoseconds = traceFromMilliseconds.map { $0 * 1_000_000 }
            var simulation = Simulation(config: config)
            let result = simulation.run()
            steps += result.steps
            leaders += result.leaders.count
            worstElection = max(worstElection, result.leaderElectedAfterHealNanoseconds ?? 0)
            transfers.requested += result.transfersRequested
            transfers.refused += result.transfersRefused
            transfers.started += result.transfersStarted
            transfers.succeeded += result.transfersSucceeded
            transfers.failed += result.transfersFailed
            transferLatencies += result.transferLatenciesNanoseconds
            for line in result.trace { print(line) }
            if result.passed {
                passed += 1
                if verbose {
                    print("ok seed=\(config.seed) nodes=\(config.nodes): \(result.leaders.count) leaders, \(result.steps) steps")
                }
            } else {
                failed += 1
                for violation in result.violations {
                    print("FAIL seed=\(config.seed) nodes=\(config.nodes): \(violation)")
                }
                print("  schedule: \(config)")
                print("  replay:   \(config.replayCommand)")
            }
        }
        let seconds = Date().timeIntervalSince(started)
        let bound = SimulationConfig(seed: seed, nodes: sizes[0]).electionBoundNanoseconds
        print(
            "cluster sim: \(schedules) schedules from seed \(seed), nodes \(sizes.map(String.init).joined(separator: ",")):"
                + " \(leaders) leaders elected, \(steps) core steps, slowest election after heal"
                + " \(Double(worstElection) / 1e6)ms (bound \(Double(bound) / 1e6)ms),"
                + " \(format(seconds, 2))s")
        transferLatencies.sort()
        func latency(_ percent: Int) -> String {
            guard !transferLatencies.isEmpty else { return "-" }
            let index = min(transferLatencies.count - 1, transferLatencies.count * percent / 100)
            return "\(Double(transferLatencies[index]) / 1e6)ms"
        }
        print(
            "transfers: \(transfers.requested) asked, \(transfers.refused) refused, \(transfers.started) started,"
                + " \(transfers.succeeded) succeeded, \(transfers.failed) failed; request to new leader: median \(latency(50)),"
                + " p90 \(latency(90)), max \(latency(100))")
        print("\(passed) passed, \(failed) failed")
        return failed
    }
}


extension Sim {
    /// `--membership`: schedules of the gossip membership simulator. Prints a line per schedule
    /// (with --verbose, or when it fails) and the figures; returns how many failed.
    func runMembership(sizes: [Int], from seed: UInt64) -> Int {
        var failed = 0
        for i in 0..<max(0, schedules) {
            var config = GossipSimulationConfig(seed: seed &+ UInt64(i), nodes: sizes[i % sizes.count])
            config.traceID = traceMember
            if longPartition { config.useLongPartition() }
            let started = Date()
            var simulation = GossipSimulation(config: config)
            let r = simulation.run()
            let seconds = Date().timeIntervalSince(started)
            for line in r.trace { print(line) }
            func ms(_ ns: UInt64?) -> String { ns.map { format(Double($0) / 1e6, 0) + "ms" } ?? "-" }
            let line =
                "seed=\(config.seed) nodes=\(config.nodes) live=\(r.liveMembers): settled \(ms(r.settledAfterNanoseconds)) after churn;"
                + " kill: first suspicion \(ms(r.killFirstSuspicionNanoseconds)), failed by all \(ms(r.killFailedByAllNanoseconds));"
                + " vanish: first suspicion \(ms(r.vanishFirstSuspicionNanoseconds)), failed by all \(ms(r.vanishFailedByAllNanoseconds));"
                + " steady \(format(r.steadyMessagesPerMemberSecond, 1)) msg/member/s \(format(r.steadyBytesPerMemberSecond, 0)) B/member/s"
                + " + full state \(format(r.steadyFullStateBytesPerMemberSecond, 0)) B/member/s (exchanges \(r.steadyExchanges.join)/\(r.steadyExchanges.periodic)/\(r.steadyExchanges.repair), refutations \(r.steadyExchanges.refutations)), whole run \(format(r.messagesPerMemberSecond, 1)) msg \(format(r.bytesPerMemberSecond, 0)) B,"
                + " full state \(format(r.fullStateBytesPerMemberSecond, 0)) B/member/s;"
                + " false failed \(r.falseFailed) (\(r.falseFailedOfStalled) of stalled, \(r.stalls) stalls);"
                + " \(r.steps) steps, \(format(seconds, 2))s"
            if r.passed {
                if verbose { print("ok " + line) }
            } else {
                failed += 1
                print("FAIL " + line)
                for violation in r.violations { print("  \(violation)") }
                print("  replay: \(config.replayCommand)")
            }
        }
        print("cluster sim --membership: \(schedules) schedules from seed \(seed): \(schedules - failed) passed, \(failed) failed")
        return failed
    }
}
