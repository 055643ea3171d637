import ClusterCore
import ClusterSimulation
import Foundation
import Testing

// Issue 9, "the speed to reach": failover measured in simulated time (deterministic, so its
// figures can be asserted), as `cluster bench failover` measures it on loopback: from the
// primary's fault until every survivor names the same new primary.

/// The failover figures of a set of probes, in units of the election timeout.
struct FailoverFigures: CustomStringConvertible {
    var fault: SimulationConfig.FailoverFault
    var probes: Int
    /// Latencies over the election timeout, sorted.
    var ratios: [Double]
    /// Probes with more than one candidacy (a split vote, or a candidacy that failed).
    var repeatedCandidacies: Int
    var violations: [String]

    init(fault: SimulationConfig.FailoverFault, results: [SimulationResult]) {
        self.fault = fault
        probes = results.count
        ratios = results.compactMap { result in
            result.failoverLatencyNanoseconds.map { Double($0) / Double(result.config.electionTimeoutNanoseconds) }
        }.sorted()
        repeatedCandidacies = results.filter { $0.failoverCandidacies > 1 }.count
        violations = results.filter { !$0.passed }.map { SimulationTests.failure($0) }
    }

    /// The p-th percentile (nearest rank), as `cluster bench` computes it.
    func percentile(_ p: Double) -> Double {
        guard !ratios.isEmpty else { return .infinity }
        return ratios[min(ratios.count - 1, max(0, Int((p / 100 * Double(ratios.count)).rounded(.up)) - 1))]
    }

    var description: String {
        func f(_ x: Double) -> String { String(format: "%.3f", x) }
        return "failover \(fault.rawValue): \(probes) probes, \(ratios.count) completed, p50 \(f(percentile(50))) T,"
            + " p99 \(f(percentile(99))) T, max \(f(ratios.last ?? .infinity)) T; more than one candidacy in"
            + " \(repeatedCandidacies) (\(f(100 * Double(repeatedCandidacies) / Double(max(1, probes))))%)"
    }

    /// Runs `count` probes of `fault` from `firstSeed`, 5 nodes.
    static func measure(_ fault: SimulationConfig.FailoverFault, count: Int, firstSeed: UInt64 = 1) -> FailoverFigures {
        let results = (0..<count).map { i -> SimulationResult in
            var simulation = Simulation(config: .failoverProbe(seed: firstSeed + UInt64(i), nodes: 5, fault: fault))
            return simulation.run()
        }
        return FailoverFigures(fault: fault, results: results)
    }
}

@Suite("Failover in the simulator (issue 9)", .serialized)
struct FailoverSimulationTests {
    /// Probes per fault kind: `FAILOVER_PROBES` in the environment sets it (2000 for the figures
    /// the issue asks for); the suite runs 50 of each (too few for a p99: it is checked from 100 on).
    static var probes: Int {
        ProcessInfo.processInfo.environment["FAILOVER_PROBES"].flatMap { Int($0) } ?? 50
    }

    /// The issue's targets (for `cluster bench failover`), in simulated time: a crashed primary
    /// replaced in at most T/2 (p50), a silent one in at most 1.3 T (p50) and 2 T (p99).
    @Test("5 nodes, heartbeat 20 ms, T 200 ms: every probe fails over, no invariant violated; crash p50 <= 0.5 T, silent p50 <= 1.3 T and p99 <= 2 T")
    func failoverFigures() async {
        let figures = await offPool {
            SimulationConfig.FailoverFault.allCases.map { FailoverFigures.measure($0, count: Self.probes) }
        }
        for f in figures {
            print(f)
            for violation in f.violations { Issue.record(Comment(rawValue: violation)) }
            #expect(f.ratios.count == f.probes)
            switch f.fault {
            case .crash:
                #expect(f.percentile(50) <= 0.5, "\(f)")
            case .silent:
                #expect(f.percentile(50) <= 1.3, "\(f)")
                if f.probes >= 100 { #expect(f.percentile(99) <= 2, "\(f)") }
            }
        }
    }
}
