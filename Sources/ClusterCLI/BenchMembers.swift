import ArgumentParser
import Cluster
import FoundationEssentials
import Glibc
import Logging
import UV

/// `cluster bench members`: the gossip membership layer (`--membership gossip`) at N members in
/// this process, measured as `../shared/bench/memberlist-mesh` measures N memberlist instances
/// (same keys), so that the two read side by side: the cost of a member at rest, how fast a
/// join reaches everyone, how fast a crashed member is declared failed by all. Three members
/// vote (and link among themselves); the others hold no link.
struct BenchMembers: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "members",
        abstract: "The gossip membership at N members: CPU and bytes per member at rest, join and crash detection times.")

    @Option(help: "Members.") var nodes = 100
    @Option(help: "The gossip probe interval.") var probeInterval = DurationArgument(.milliseconds(200), text: "200ms")
    @Option(help: "rest, join, crash, primary (the primary killed: until every member names its successor; once), stall (members deaf now and then: healthy ones declared failed), or a comma list run in order on one cluster.") var scenario = "rest,join,crash"
    @Option(help: "stall: the share of members that stall.") var stallFraction = 0.05
    @Option(help: "stall: how long each stall lasts, in ms (a stalled member is deaf that long, then hears as long, and so on, from a random phase: what arrives meanwhile is held, as memberlist-mesh's deaf transport holds it).") var stallMs = 3000
    @Option(help: "Join and crash trials.") var trials = 5
    @Option(help: "Seconds measured at rest.") var seconds = 10.0
    @Option(help: "Loop threads shared by the members.") var threads = 1
    @Option(help: "At start-up, wait for every member started so far to see all the others alive after each this many joins (0: start all, then wait), as memberlist-mesh's --join-batch.")
    var joinBatch = 0
    @Option(help: "Give up if the start-up has not converged within this time.")
    var convergeTimeout = DurationArgument(.seconds(120), text: "120s")
    @OptionGroup var output: BenchOutput

    func validate() throws {
        guard (4...2000).contains(nodes) else { throw ValidationError("--nodes must be 4...2000") }
        guard probeInterval.duration >= .milliseconds(10) else { throw ValidationError("--probe-interval must be at least 10ms") }
        guard (1...100).contains(trials) else { throw ValidationError("--trials must be 1...100") }
        guard seconds > 0 && seconds <= 600 else { throw ValidationError("--seconds must be in (0, 600]") }
        guard (1...64).contains(threads) else { throw ValidationError("--threads must be 1...64") }
        guard joinBatch >= 0 else { throw ValidationError("--join-batch must be 0 or more") }
        guard convergeTimeout.duration > .zero else { throw ValidationError("--converge-timeout must be more than 0") }
        for s in scenarios where !["rest", "join", "crash", "primary", "stall"].contains(s) {
            throw ValidationError("unknown scenario \(s): rest, join, crash, primary or stall")
        }
        guard stallFraction > 0 && stallFraction < 0.5 else { throw ValidationError("--stall-fraction must be in (0, 0.5)") }
        guard (10...60_000).contains(stallMs) else { throw ValidationError("--stall-ms must be 10...60000")
        }
    }

    var scenarios: [String] { scenario.split(separator: ",").map { String($0).trimmingWhitespace() } }

    func run() throws {
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        let loops = try (0..<threads).map { try UVLoop(name: "members-\($0)") }
        defer { for loop in loops { loop.shutdown() } }
        let hooks = BenchHooks()
        let voters = ["m1", "m2", "m3"]
        let seed = UInt64.random(in: 1 ... .max)
        var managers: [String: ElectionManager] = [:]
        var order: [String] = []
        defer { for m in managers.values { try? m.stop() } }
        func make(_ id: String, seeds: [String]) throws -> ElectionManager {
            let config = ClusterConfig(
                nodeID: id, nodeAddr: "127.0.0.1:0", seedNodes: seeds.isEmpty ? ["127.0.0.1:0"] : seeds, electionTimeout: .milliseconds(1000),
                heartbeatInterval: .milliseconds(100), minQuorumSize: 2, enableAutoFailover: true,
                voteRequestTimeout: .milliseconds(1000))
            var options = NodeOptions(randomSeed: seed &+ UInt64(order.count), logger: logger, loop: loops[order.count % loops.count])
            options.benchHooks = hooks
            options.gossip = true
            options.gossipProbeInterval = probeInterval.duration
            options.bootstrap = .voters(voters)
            let manager = ElectionManager(config: config, membership: ClusterMembership(localNodeID: id, localAddr: "127.0.0.1:0"), options: options)
            try manager.start()
            managers[id] = manager
            order.append(id)
            return manager
        }

        // Start-up: the first member alone, every other seeded with it.
        progress("members: starting \(nodes)")
        hooks.watchGossip(Set((1...nodes).map { "m\($0)" }))
        let started = UVLoop.hrtimeNs()
        let deadline = started + convergeTimeout.duration.nanoseconds
        // Watched through the hooks (each member's changes as they happen), not by asking every
        // member in turn: asking is a pass of its loop each, which the bench would pay N times
        // over.
        var views: [String: [String: String]] = [:]
        var aliveSeen: [String: Int] = [:]
        var read = 0
        /// Waits until each of the first `count` members (those started) sees the others alive.
        func converge(_ count: Int) -> Bool {
            while UVLoop.hrtimeNs() < deadline {
                let events = hooks.gossipEvents(from: read)
                for e in events {
                    let before = views[e.observer, default: [:]].updateValue(e.state, forKey: e.subject)
                    if before == "alive" { aliveSeen[e.observer, default: 0] -= 1 }
                    if e.state == "alive" { aliveSeen[e.observer, default: 0] += 1 }
                }
                read += events.count
                if order.prefix(count).allSatisfy({ aliveSeen[$0, default: 0] == count - 1 }) { return true }
                pause(seconds: 0.05)
            }
            return false
        }
        let first = try make("m1", seeds: [])
        let seedAddress = first.listenAddress!.description
        var converged = true
        for i in 2...nodes {
            _ = try make("m\(i)", seeds: [seedAddress])
            if joinBatch > 0, i % joinBatch == 0, i < nodes {
                converged = converge(i)
                progress("members: \(i) started, \(converged ? "converged" : "not converged")")
                guard converged else { break }
            }
        }
        converged = converged && converge(nodes)
        let convergenceMs = Double(UVLoop.hrtimeNs() - started) / 1e6
        guard converged else {
            progressDone()
            let started = order.count
            let short = order.filter { aliveSeen[$0, default: 0] != started - 1 }
            let sample = short.prefix(5).map { id in
                let view = views[id] ?? [:]
                let missing = order.filter { $0 != id && view[$0] != "alive" }
                return "\(id) sees \(aliveSeen[id, default: 0]) alive; not: " + missing.prefix(4).map { "\($0) (\(view[$0] ?? "unknown"))" }.joined(separator: ", ")
            }
            printError("cluster bench members: \(started) members started, and \(short.count) of them did not see all the others alive within \(convergeTimeout.text): \(sample.joined(separator: "; "))")
            throw ExitCode.failure
        }
        var fields: [(String, String)] = [
            ("impl", "\"swift-cluster\""), ("nodes", "\(nodes)"), ("probe_interval_ms", format(Double(probeInterval.duration.nanoseconds) / 1e6, 0)),
            ("scenario", "\"\(scenarios.joined(separator: ","))\""), ("threads", "\(threads)"),
            ("convergence_ms", format(convergenceMs, 0)),
        ]
        var crashed: Set<String> = []
        for scenario in scenarios {
            switch scenario {
            case "rest":
                let ids = order.filter { !crashed.contains($0) }
                // Settled as memberlist-mesh settles: the news of the start-up gone out, the
                // datagrams down to within 1.25 x of the probes' (a ping and an ack per member
                // per probe interval), for up to a minute.
                progress("members: settling")
                let floor = 2 * Double(ids.count) / (Double(probeInterval.duration.nanoseconds) / 1e9)
                let settleStart = UVLoop.hrtimeNs()
                var sentBefore = ids.reduce(UInt64(0)) { $0 + managers[$1]!.stats.gossipDatagramsSent }
                var settled = false
                while !settled && UVLoop.hrtimeNs() - settleStart < 60_000_000_000 {
                    pause(seconds: 1)
                    let sent = ids.reduce(UInt64(0)) { $0 + managers[$1]!.stats.gossipDatagramsSent }
                    settled = Double(sent - sentBefore) <= 1.25 * floor
                    sentBefore = sent
                }
                fields += [("settle_ms", settled ? format(Double(UVLoop.hrtimeNs() - settleStart) / 1e6, 0) : "null")]
                progress("members: at rest, \(format(seconds, 0)) s")
                let bytesBefore = ids.reduce(UInt64(0)) { $0 + managers[$1]!.stats.gossipBytesSent }
                let exchangesBefore = ids.reduce(UInt64(0)) { $0 + managers[$1]!.stats.gossipExchanges }
                let usageBefore = UVResourceUsage.current()!
                let wallBefore = UVLoop.hrtimeNs()
                pause(seconds: seconds)
                let wall = Double(UVLoop.hrtimeNs() - wallBefore) / 1e9
                let usage = UVResourceUsage.current()!
                let bytes = ids.reduce(UInt64(0)) { $0 + managers[$1]!.stats.gossipBytesSent } - bytesBefore
                let exchanges = ids.reduce(UInt64(0)) { $0 + managers[$1]!.stats.gossipExchanges } - exchangesBefore
                let members = Double(ids.count)
                fields += [
                    ("cpu_us_per_member_s", format((usage.cpuSeconds - usageBefore.cpuSeconds) * 1e6 / members / wall, 0)),
                    ("bytes_per_member_s", format(Double(bytes) / members / wall, 0)),
                    // Full states taken (both ends of an exchange count one each), per member per minute.
                    ("full_states_per_member_min", format(Double(exchanges) * 60 / members / wall, 2)),
                    ("rss_kib_per_member", format(Double(usage.maxRSSKiB) / members, 0)),
                ]
            case "join":
                var joins: [Double] = []
                for trial in 1...trials {
                    progress("members: join \(trial)/\(trials)")
                    let id = "j\(trial)"
                    hooks.watchGossip([id])
                    let start = UVLoop.hrtimeNs()
                    _ = try make(id, seeds: [seedAddress])
                    let others = Set(order.filter { $0 != id && !crashed.contains($0) })
                    let end = start + 30_000_000_000
                    var seenBy: [String: UInt64] = [:]
                    var read = 0
                    while UVLoop.hrtimeNs() < end {
                        let events = hooks.gossipEvents(from: read)
                        read += events.count
                        for e in events where e.state == "alive" && others.contains(e.observer) && seenBy[e.observer] == nil {
                            seenBy[e.observer] = e.atNs
                        }
                        if seenBy.count == others.count { break }
                        pause(seconds: 0.01)
                    }
                    if seenBy.count == others.count, let last = seenBy.values.max() { joins.append(Double(last - start) / 1e6) }
                }
                let sorted = joins.sorted()
                fields += [
                    ("join_trials", "\(trials)"), ("join_completed", "\(joins.count)"),
                    ("join_p50_ms", format(percentile(sorted, 50), 0)), ("join_p99_ms", format(percentile(sorted, 99), 0)),
                    ("join_max_ms", format(sorted.last ?? 0, 0)),
                ]
            case "stall":
                // Members deaf for stallMs at a time (what arrives is held), hearing as long, from
                // a random phase, through the window; then the longest suspicion runs out. Healthy
                // members declared failed by anyone are false positives; stalled ones are counted
                // apart (a member deaf for seconds may rightly be declared failed).
                let candidates = order.filter { !voters.contains($0) && !crashed.contains($0) && $0 != "m1" }
                let count = max(1, Int((stallFraction * Double(order.count - crashed.count)).rounded()))
                let stalled = Array(candidates.shuffled().prefix(count))
                let stalledSet = Set(stalled)
                hooks.watchGossip(Set(order))
                let dur = UInt64(stallMs) * 1_000_000
                let start = UVLoop.hrtimeNs()
                var nextDeaf: [String: UInt64] = [:]
                for id in stalled { nextDeaf[id] = start + UInt64.random(in: 0..<(2 * dur)) }
                progress("members: \(count) stalling, \(format(seconds, 0)) s")
                let ids = order.filter { !crashed.contains($0) }
                let bytesBefore = ids.reduce(UInt64(0)) { $0 + managers[$1]!.stats.gossipBytesSent }
                let usageBefore = UVResourceUsage.current()!
                let end = start + UInt64(seconds * 1e9)
                while UVLoop.hrtimeNs() < end {
                    let now = UVLoop.hrtimeNs()
                    for id in stalled where now >= nextDeaf[id]! {
                        hooks.makeDeaf(id, untilNs: now + dur)
                        nextDeaf[id]! += 2 * dur
                    }
                    pause(seconds: 0.01)
                }
                let wall = Double(UVLoop.hrtimeNs() - start) / 1e9
                let usage = UVResourceUsage.current()!
                let bytes = ids.reduce(UInt64(0)) { $0 + managers[$1]!.stats.gossipBytesSent } - bytesBefore
                // The longest suspicion (Lifeguard: α·max(1, log10 N)·probe, times β), a stall, 2 s.
                let logN = max(1.0, log10(Double(ids.count)))
                let tail = Double(stallMs) / 1000 + 4 * logN * 6 * Double(probeInterval.duration.nanoseconds) / 1e9 + 2
                progress("members: stalls over, waiting \(format(tail, 0)) s for pending suspicions")
                pause(seconds: tail)
                var healthyDeclared: Set<String> = [], stalledDeclared: Set<String> = []
                var healthyEvents = 0, stalledEvents = 0
                for e in hooks.gossipEvents(from: 0) where e.state == "failed" && !crashed.contains(e.subject) {
                    if stalledSet.contains(e.subject) {
                        stalledDeclared.insert(e.subject)
                        stalledEvents += 1
                    } else {
                        healthyDeclared.insert(e.subject)
                        healthyEvents += 1
                    }
                }
                hooks.watchGossip([])
                let members = Double(ids.count)
                fields += [
                    ("stall_fraction", format(stallFraction, 2)), ("stall_ms", "\(stallMs)"), ("stalled_members", "\(count)"),
                    ("stall_false_positives", "\(healthyDeclared.count)"), ("stall_false_positive_events", "\(healthyEvents)"),
                    ("stalled_declared_dead", "\(stalledDeclared.count)"), ("stalled_dead_events", "\(stalledEvents)"),
                    ("stall_cpu_us_per_member_s", format((usage.cpuSeconds - usageBefore.cpuSeconds) * 1e6 / members / wall, 0)),
                    ("stall_bytes_per_member_s", format(Double(bytes) / members / wall, 0)),
                ]
            case "primary":
                // The primary killed (once: three voters stand a loss of one): how long until every
                // member names its successor (the voters elect it; the others learn it by gossip).
                progress("members: primary killed")
                var read = hooks.primaryEvents(from: 0).count
                let victim = voters.compactMap { managers[$0]?.leaderID }.first { !crashed.contains($0) && managers[$0] != nil }
                var namedAt: [String: UInt64] = [:]
                var start = UVLoop.hrtimeNs()
                if let victim, !crashed.contains(victim) {
                    start = UVLoop.hrtimeNs()
                    managers[victim]!.crash()
                    crashed.insert(victim)
                    let others = Set(order.filter { !crashed.contains($0) })
                    let end = start + 60_000_000_000
                    while UVLoop.hrtimeNs() < end && namedAt.count < others.count {
                        let events = hooks.primaryEvents(from: read)
                        read += events.count
                        for e in events where e.leader != victim && others.contains(e.observer) && namedAt[e.observer] == nil {
                            namedAt[e.observer] = e.atNs
                        }
                        pause(seconds: 0.01)
                    }
                    let done = namedAt.count == others.count
                    fields += [
                        ("primary_completed", done ? "1" : "0"),
                        ("primary_named_by", "\(namedAt.count)"), ("primary_members", "\(others.count)"),
                        ("primary_first_ms", format(Double((namedAt.values.min() ?? start) - start) / 1e6, 0)),
                        ("primary_all_ms", done ? format(Double((namedAt.values.max() ?? start) - start) / 1e6, 0) : "null"),
                    ]
                } else {
                    fields += [("primary_completed", "0"), ("primary_named_by", "0")]
                }
            default:  // crash
                var detects: [Double] = []
                var suspects: [Double] = []
                var firstFailed: [Double] = []
                for trial in 1...trials {
                    progress("members: crash \(trial)/\(trials)")
                    guard let victim = order.filter({ !voters.contains($0) && !crashed.contains($0) && $0 != "m1" }).randomElement() else { break }
                    hooks.watchGossip([victim])
                    let start = UVLoop.hrtimeNs()
                    managers[victim]!.crash()
                    crashed.insert(victim)
                    let others = Set(order.filter { !crashed.contains($0) })
                    let end = start + 60_000_000_000
                    var failedAt: [String: UInt64] = [:]
                    var suspectedAt: UInt64?
                    var read = 0
                    while UVLoop.hrtimeNs() < end {
                        let events = hooks.gossipEvents(from: read)
                        read += events.count
                        for e in events where others.contains(e.observer) {
                            if e.state == "suspect" || e.state == "failed" { suspectedAt = min(suspectedAt ?? e.atNs, e.atNs) }
                            if e.state == "failed", failedAt[e.observer] == nil { failedAt[e.observer] = e.atNs }
                        }
                        if failedAt.count == others.count { break }
                        pause(seconds: 0.01)
                    }
                    if let s = suspectedAt { suspects.append(Double(s - start) / 1e6) }
                    if let f = failedAt.values.min() { firstFailed.append(Double(f - start) / 1e6) }
                    if failedAt.count == others.count, let last = failedAt.values.max() { detects.append(Double(last - start) / 1e6) }
                    pause(seconds: 1)
                }
                let d = detects.sorted()
                fields += [
                    ("crash_trials", "\(trials)"), ("crash_completed", "\(detects.count)"),
                    ("suspect_p50_ms", format(percentile(suspects.sorted(), 50), 0)),
                    ("first_dead_p50_ms", format(percentile(firstFailed.sorted(), 50), 0)),
                    ("detect_p50_ms", format(percentile(d, 50), 0)), ("detect_p99_ms", format(percentile(d, 99), 0)),
                    ("detect_max_ms", format(d.last ?? 0, 0)),
                ]
            }
        }
        // Healthy members any member declared failed meanwhile (the crashed excepted).
        hooks.watchGossip([])
        let live = order.filter { !crashed.contains($0) }
        let falsePositives = live.filter { managers[$0]!.stats.gossipMembersFailed > crashed.count }.count
        progressDone()
        fields += [("false_positives", "\(falsePositives)")]
        output.emit(fields)
    }
}
