import ClusterCore

// A deterministic simulator of many gossip membership cores (`GossipCore`): one seed makes one
// schedule of joins, crashes (killed processes, which answer with ICMP port unreachable, and
// vanished hosts, which answer nothing), restarts, graceful leaves, stalls, lossy members, a
// partition and its healing, and a primary injected at one member. Every datagram and full state
// goes through `GossipWire` (encoded and counted; every full state and one datagram in eight
// decoded and compared). The checks (`GossipChecker`) judge from
// the simulator's own ground truth: who is really up, crashed or gone, which links are cut or
// lossy, who is stalled; never from what a core says of itself.

/// One schedule's parameters.
package struct GossipSimulationConfig: Sendable, CustomStringConvertible {
    package var seed: UInt64
    package var nodes: Int
    package var settings = GossipCore.Settings()
    /// Members start at random times over this span, each joining through a member already up.
    package var bootstrapNanoseconds: UInt64 = 3_000_000_000
    /// Faults happen over this span after the bootstrap.
    package var churnNanoseconds: UInt64 = 20_000_000_000
    /// After the churn the network is sound: (a), (b) and (d) must hold within this.
    package var settleBoundNanoseconds: UInt64 = 20_000_000_000
    /// The crash probes (a killed process, then a vanished host), each after the cluster has
    /// settled: every live member must declare the victim failed within these bounds. Not the
    /// typical times (a killed process is failed by all in well under a second): dissemination is
    /// probabilistic, and about one member in 10^6 misses every copy of a piece of news (with
    /// λ = 4), and then waits for its own longest suspicion timeout (9.6 s at 100 members, 14.4 s
    /// at 1,000). The bounds cover that.
    package var killBoundNanoseconds: UInt64 = 16_000_000_000
    package var vanishBoundNanoseconds: UInt64 = 25_000_000_000
    /// The quiet window over which the steady figures are measured (after settling).
    package var steadyNanoseconds: UInt64 = 10_000_000_000
    /// Members that are never faulted (the accuracy check's subjects).
    package var protectedFraction = 0.5
    /// Of the members, crashed during the churn (about half restart), left, and joining.
    package var crashFraction = 0.03
    package var leaveFraction = 0.02
    package var joinFraction = 0.02
    /// Members stalled 1-3 s at a time, again and again, during the churn.
    package var stallFraction = 0.05
    /// Members whose every datagram in and out is lost with `lossRate` during the churn.
    package var lossyFraction = 0.05
    package var lossRate = 0.1
    /// Members cut off from the rest (they still reach one another) for `partitionMinNanoseconds`
    /// plus up to `partitionExtraNanoseconds` (1-4 s), within the churn (then healed).
    package var partitionFraction = 0.1
    package var partitionMinNanoseconds: UInt64 = 1_000_000_000
    package var partitionExtraNanoseconds: UInt64 = 3_000_000_000
    /// One-way delay: uniform in [min, max], and 1% of datagrams `slowExtra` more (reordered).
    package var delayMinNanoseconds: UInt64 = 100_000
    package var delayMaxNanoseconds: UInt64 = 1_000_000
    package var slowExtraNanoseconds: UInt64 = 20_000_000
    /// Trace every change seen by or about this member, every fault on it, and its full-state
    /// exchanges (`GossipSimulationResult/trace`).
    package var traceID: String?
    /// A deliberate fault that a check must catch (checker tests only).
    package var planted: GossipPlantedFault?

    package init(seed: UInt64, nodes: Int) {
        self.seed = seed
        self.nodes = nodes
    }

    /// The long-partition scenario (`cluster sim --membership --long-partition`): a fifth of the
    /// members cut off from the first half of a 40 s churn until its end (20-40 s), past
    /// `reapFailedAfter` (5 s here): each side declares the other failed and forgets it. The
    /// other faults (joins, crashes and restarts, leaves) happen before it heals, so that no
    /// newcomer bridges the sides: only the reconnect rule (every 5 s here) brings them
    /// together, and (a) must hold within the settle bound.
    package mutating func useLongPartition() {
        settings.reapFailedAfter = 5_000_000_000
        settings.reconnectInterval = 5_000_000_000
        partitionFraction = 0.2
        churnNanoseconds = 40_000_000_000
        partitionMinNanoseconds = churnNanoseconds
        partitionExtraNanoseconds = 0
    }

    package var description: String {
        "seed=\(seed) nodes=\(nodes) churn=\(churnNanoseconds / 1_000_000)ms" + (planted.map { " planted=\($0)" } ?? "")
    }

    package var replayCommand: String {
        "cluster sim --membership --nodes \(nodes) --schedules 1 --seed \(seed) --verbose"
    }
}

/// A deliberate fault in the simulator's own behaviour that the ground truth does not know of:
/// each makes one check fail.
package enum GossipPlantedFault: String, Sendable, CaseIterable {
    /// One unprotected member's datagrams and full states are silently dropped from the settle
    /// phase on, while the ground truth says the network is sound: completeness (a) fails.
    case isolateOneAfterChurn
    /// The kill probe's victim is marked crashed but its core keeps answering: (b) fails.
    case zombieCrash
    /// A member told to leave is stopped without leaving: it is declared failed, not left (b).
    case leaveWithoutAnnouncing
    /// One protected member's outgoing datagrams are dropped: it is declared failed (c).
    case silenceProtected
    /// Primary updates are stripped from every datagram and full state: (d) fails.
    case stripPrimary
}

/// What one schedule showed.
package struct GossipSimulationResult: Sendable {
    package var config: GossipSimulationConfig
    package var violations: [String]
    package var passed: Bool { violations.isEmpty }
    package var steps = 0
    /// Members in the cluster at the end.
    package var liveMembers = 0
    /// Datagrams and their bytes sent per live member per second, while the cluster was settled
    /// and nothing happened (from settling to the first crash probe), and over the whole run.
    package var steadyMessagesPerMemberSecond = 0.0
    package var steadyBytesPerMemberSecond = 0.0
    package var steadyFullStateBytesPerMemberSecond = 0.0
    /// In the steady window: full-state exchanges asked for (join, periodic, repair) and refutations.
    package var steadyExchanges = (join: 0, periodic: 0, repair: 0, refutations: 0)
    package var messagesPerMemberSecond = 0.0
    package var bytesPerMemberSecond = 0.0
    /// Full-state (TCP) bytes per member per second, over the whole run.
    package var fullStateBytesPerMemberSecond = 0.0
    /// Time from the end of the churn until (a), (b) and (d) held.
    package var settledAfterNanoseconds: UInt64?
    /// The kill probe: from the kill to the first suspicion anywhere, and until every live member
    /// declared it failed. The vanish probe likewise.
    package var killFirstSuspicionNanoseconds: UInt64?
    package var killFailedByAllNanoseconds: UInt64?
    package var vanishFirstSuspicionNanoseconds: UInt64?
    package var vanishFailedByAllNanoseconds: UInt64?
    /// Declarations of "failed" about a member that was up at the time (observer, subject pairs),
    /// away from a partition (neither during one nor within the accuracy window after it), and
    /// how many of them were about a member stalled at the time or within the last 5 s.
    package var falseFailed = 0
    package var falseFailedOfStalled = 0
    /// Stalls that happened.
    package var stalls = 0
    /// Lines about `GossipSimulationConfig/traceID`.
    package var trace: [String] = []
}

/// A deterministic run of many gossip cores.
package struct GossipSimulation {
    enum Event {
        case start(Int)
        case deliver(to: Int, from: Int, GossipMessage, generation: Int)
        case fullState(to: Int, from: Int, [UInt8], generation: Int)
        case unreachable(to: Int, address: String, generation: Int)
        case tick(Int, generation: Int)
        case crash(Int, icmp: Bool)
        case restart(Int)
        case leave(Int)
        case gone(Int, generation: Int)
        case stall(Int, UInt64)
        case lossy(Int, Bool)
        case partition([Int], Bool)
        case injectPrimary
        case churnEnds
        case check
        case probe(vanish: Bool)
        case probeEnds(vanish: Bool, serial: Int)
        case steadyStarts
        case end
    }

    enum Status: Equatable {
        case notStarted, up, leaving, crashed, left
    }

    struct Member {
        var id: String
        var address: String
        var core: GossipCore?
        var status: Status = .notStarted
        var generation = 0
        var stalledUntil: UInt64 = 0
        var lastStallEnd: UInt64?
        var scheduledTick: UInt64?
        var lossy = false
        var cut = false
        var protected = false
        var icmp = true
        var restarts = 0
        /// Planted: crashed in the ground truth, running in fact.
        var zombie = false
    }

    let config: GossipSimulationConfig
    var members: [Member] = []
    var byAddress: [String: Int] = [:]
    var queue = EventQueue<Event>()
    var rng: SplitMix64
    var now: UInt64 = 0
    var checker: GossipChecker
    var result: GossipSimulationResult
    var churnEnd: UInt64 = 0
    var settleDeadline: UInt64 = 0
    var settled = false
    var isolated: Int?
    var injected: GossipPrimary?
    var partitionActive = false
    var lastPartitionEnd: UInt64?
    // Accounting.
    var datagrams = 0
    var datagramBytes = 0
    var fullStateBytes = 0
    var steadyStart: (time: UInt64, datagrams: Int, bytes: Int, members: Int, fullState: Int)?
    var steadyFigures: (messages: Double, bytes: Double, fullState: Double)?
    var probeVictim: (index: Int, vanish: Bool, at: UInt64)?
    var probeFirstSuspicion: UInt64?
    var probeFailedBy: Set<Int> = []
    var probeDone = false
    var probeSerial = 0
    var endAt: UInt64 = 0
    var steadyCounters = GossipCore.Counters()

    package func totalCounters() -> GossipCore.Counters {
        var c = GossipCore.Counters()
        for m in members {
            guard let k = m.core?.counters else { continue }
            c.joinExchanges += k.joinExchanges
            c.periodicExchanges += k.periodicExchanges
            c.repairExchanges += k.repairExchanges
            c.reconnectExchanges += k.reconnectExchanges
            c.refutations += k.refutations
        }
        return c
    }

    package init(config: GossipSimulationConfig) {
        self.config = config
        rng = SplitMix64(seed: config.seed ^ 0x5157_494D_0000_0001)
        result = GossipSimulationResult(config: config, violations: [])
        checker = GossipChecker(accuracyWindowNanoseconds: Self.accuracyWindow(config.settings, nodes: config.nodes))
    }

    /// How long after a partition healed a protected member may still be declared failed: the
    /// longest suspicion plus time for the news of both sides to meet.
    static func accuracyWindow(_ s: GossipCore.Settings, nodes: Int) -> UInt64 {
        let scale = UInt64(max(1, ceilLog10(max(1, nodes + 1))))
        return s.suspicionMinMultiplier * s.suspicionMaxMultiplier * scale * s.probeInterval + 5_000_000_000
    }

    // MARK: Running

    package mutating func run() -> GossipSimulationResult {
        schedule()
        while let entry = queue.pop() {
            now = entry.timeNanoseconds
            handle(entry.event)
            if now >= endAt { break }
        }
        finish()
        return result
    }

    mutating func uniform(_ bound: UInt64) -> UInt64 { bound == 0 ? 0 : rng.next(upperBound: bound) }
    mutating func chance(_ p: Double) -> Bool { Double(rng.next() >> 11) / Double(1 << 53) < p }

    mutating func newMember(_ i: Int) -> Member {
        let address = "10.\(i / 65_536 % 256).\(i / 256 % 256).\(i % 256):7946"
        byAddress[address] = i
        return Member(id: "m\(i)", address: address)
    }

    mutating func schedule() {
        let n = max(1, config.nodes)
        for i in 0..<n { members.append(newMember(i)) }
        // Protected members: never faulted. m0 is the first seed and is protected.
        for i in 0..<n where i == 0 || chance(config.protectedFraction) { members[i].protected = true }
        checker.protected = Set(members.indices.filter { members[$0].protected }.map { members[$0].id })
        queue.push(.start(0), atNanoseconds: 0)
        for i in 1..<max(1, n) { queue.push(.start(i), atNanoseconds: 1 + uniform(config.bootstrapNanoseconds)) }
        let churnStart = config.bootstrapNanoseconds + 1_000_000_000
        churnEnd = churnStart + config.churnNanoseconds
        settleDeadline = churnEnd + config.settleBoundNanoseconds
        endAt = settleDeadline + 5_000_000_000 + config.steadyNanoseconds + config.killBoundNanoseconds + config.vanishBoundNanoseconds + 4_000_000_000
        var unprotected = (0..<n).filter { !members[$0].protected }
        // Shuffle the unprotected, then deal out faults so that each member gets at most one kind.
        for j in stride(from: unprotected.count - 1, to: 0, by: -1) { unprotected.swapAt(j, Int(uniform(UInt64(j + 1)))) }
        func take(_ fraction: Double, atLeast: Int) -> [Int] {
            let count = min(unprotected.count, max(atLeast, Int((Double(n) * fraction).rounded())))
            let taken = Array(unprotected.prefix(count))
            unprotected.removeFirst(count)
            return taken
        }
        let span = max(1, config.churnNanoseconds)
        for i in take(config.crashFraction, atLeast: 1) {
            let at = churnStart + uniform(span * 3 / 4)
            queue.push(.crash(i, icmp: chance(0.5)), atNanoseconds: at)
            if chance(0.5) { queue.push(.restart(i), atNanoseconds: at + 2_000_000_000 + uniform(3_000_000_000)) }
        }
        for i in take(config.leaveFraction, atLeast: 1) { queue.push(.leave(i), atNanoseconds: churnStart + uniform(span * 3 / 4)) }
        for _ in 0..<max(1, Int((Double(n) * config.joinFraction).rounded())) {
            let i = members.count
            members.append(newMember(i))
            queue.push(.start(i), atNanoseconds: churnStart + uniform(span * 3 / 4))
        }
        for i in take(config.stallFraction, atLeast: 1) {
            var at = churnStart + uniform(2_000_000_000)
            while at < churnEnd {
                let length = 1_000_000_000 + uniform(2_000_000_000)
                queue.push(.stall(i, length), atNanoseconds: at)
                at += length + 1_000_000_000 + uniform(3_000_000_000)
            }
        }
        for i in take(config.lossyFraction, atLeast: 1) {
            queue.push(.lossy(i, true), atNanoseconds: churnStart)
            queue.push(.lossy(i, false), atNanoseconds: churnEnd)
        }
        let cut = take(config.partitionFraction, atLeast: 1)
        let cutAt = churnStart + uniform(span / 2)
        queue.push(.partition(cut, true), atNanoseconds: cutAt)
        queue.push(.partition(cut, false), atNanoseconds: min(churnEnd, cutAt + config.partitionMinNanoseconds + uniform(config.partitionExtraNanoseconds)))
        if config.planted == .isolateOneAfterChurn, let victim = unprotected.first ?? cut.first {
            isolated = victim
        }
        queue.push(.injectPrimary, atNanoseconds: churnStart + uniform(span / 2))
        queue.push(.churnEnds, atNanoseconds: churnEnd)
        queue.push(.end, atNanoseconds: endAt)
    }

    func tracing(_ ids: String...) -> Bool {
        guard let id = config.traceID else { return false }
        return ids.contains(id)
    }

    mutating func traceLine(_ line: String) {
        result.trace.append("\(now / 1_000_000)ms \(line)")
    }

    mutating func handle(_ event: Event) {
        switch event {
        case .start(let i), .crash(let i, _), .restart(let i), .leave(let i), .stall(let i, _), .lossy(let i, _):
            if tracing(members[i].id) { traceLine("\(event)") }
        case .partition(let group, _):
            if let id = config.traceID, group.contains(where: { members[$0].id == id }) { traceLine("\(event)") }
        default: break
        }
        switch event {
        case .start(let i):
            start(i)
        case .deliver(let to, let from, let message, let generation):
            guard members[to].generation == generation else { return }
            guard isUp(to) else {
                if members[to].status != .notStarted && members[to].icmp { bounce(from: from, to: to) }
                return
            }
            if members[to].stalledUntil > now {
                queue.push(event, atNanoseconds: members[to].stalledUntil)
                return
            }
            step(to, .datagram(message, from: members[from].address))
        case .fullState(let to, let from, let bytes, let generation):
            guard members[to].generation == generation, isUp(to) else { return }
            if members[to].stalledUntil > now {
                queue.push(event, atNanoseconds: members[to].stalledUntil)
                return
            }
            let state: GossipFullState
            do { state = try GossipWire.decodeFullState(bytes) } catch {
                checker.violations.append("codec: a full state the core made does not decode: \(error)")
                return
            }
            step(to, .fullState(state, from: members[from].address))
            if !state.isReply, isUp(to), let reply = members[to].core?.fullState(isReply: true) {
                sendFullState(reply, from: to, to: from)
            }
        case .unreachable(let to, let address, let generation):
            guard members[to].generation == generation, isUp(to) else { return }
            if members[to].stalledUntil > now {
                queue.push(event, atNanoseconds: members[to].stalledUntil)
                return
            }
            step(to, .unreachable(address: address))
        case .tick(let i, let generation):
            guard members[i].generation == generation, isUp(i), members[i].scheduledTick == now else { return }
            members[i].scheduledTick = nil
            if members[i].stalledUntil > now {
                scheduleTick(i, at: members[i].stalledUntil)
                return
            }
            step(i, .tick)
        case .crash(let i, let icmp):
            crash(i, icmp: icmp)
            checker.noteCrash(members[i].id)
        case .restart(let i):
            guard members[i].status == .crashed else { return }
            members[i].restarts += 1
            start(i)
        case .leave(let i):
            guard isUp(i) else { return }
            checker.noteLeft(members[i].id)
            if config.planted == .leaveWithoutAnnouncing {
                crash(i, icmp: false)
                members[i].status = .left
                return
            }
            members[i].status = .leaving
            step(i, .leave)
            queue.push(.gone(i, generation: members[i].generation), atNanoseconds: now + 3_000_000_000)
        case .gone(let i, let generation):
            guard members[i].generation == generation, members[i].status == .leaving else { return }
            stop(i, as: .left)
        case .stall(let i, let length):
            guard isUp(i) else { return }
            members[i].stalledUntil = now + length
            members[i].lastStallEnd = now + length
            result.stalls += 1
            scheduleTick(i, at: now + length)
        case .lossy(let i, let on):
            members[i].lossy = on
        case .partition(let group, let on):
            for i in group { members[i].cut = on }
            partitionActive = on
            checker.partitionActive = on
            if !on {
                lastPartitionEnd = now
                checker.lastPartitionEnd = now
            }
        case .injectPrimary:
            let candidates = members.indices.filter { isUp($0) && members[$0].protected }
            guard let at = candidates.isEmpty ? nil : candidates[Int(uniform(UInt64(candidates.count)))] else { return }
            let primary = GossipPrimary(term: 7, epoch: 3, leaderID: members[at].id)
            injected = primary
            step(at, .setPrimary(primary))
            // An older primary elsewhere must not win.
            let other = candidates[Int(uniform(UInt64(candidates.count)))]
            step(other, .setPrimary(GossipPrimary(term: 6, epoch: 9, leaderID: members[other].id)))
        case .churnEnds:
            for i in members.indices {
                members[i].lossy = false
                members[i].cut = false
            }
            queue.push(.check, atNanoseconds: now + 500_000_000)
        case .check:
            check()
        case .probe(let vanish):
            startProbe(vanish: vanish)
        case .probeEnds(let vanish, let serial):
            // The first of the bound and shortly after the probe completed.
            if serial == probeSerial { endProbe(vanish: vanish) }
        case .steadyStarts:
            steadyStart = (now, datagrams, datagramBytes, liveCount, fullStateBytes)
            steadyCounters = totalCounters()
        case .end:
            break
        }
    }

    /// Whether the process runs (and its core is stepped).
    func isUp(_ i: Int) -> Bool { members[i].status == .up || members[i].status == .leaving || members[i].zombie }

    mutating func start(_ i: Int) {
        let seed = config.seed &* 0x9E37_79B9 &+ UInt64(i) &* 1_000_003 &+ UInt64(members[i].restarts)
        var core = GossipCore(id: members[i].id, address: members[i].address, voter: i < 5, settings: config.settings, seed: seed)
        members[i].generation += 1
        members[i].status = .up
        members[i].stalledUntil = 0
        members[i].scheduledTick = nil
        checker.noteUp(members[i].id)
        // Join through m0 and one random member that is up.
        let up = members.indices.filter { $0 != i && isUp($0) }
        var seeds: [String] = []
        if i != 0 { seeds.append(members[0].address) }
        if !up.isEmpty { seeds.append(members[up[Int(uniform(UInt64(up.count)))]].address) }
        let directives = core.step(.join(Array(Set(seeds)).sorted()), now: now)
        members[i].core = core
        result.steps += 1
        carry(i, directives)
    }

    mutating func crash(_ i: Int, icmp: Bool) {
        stop(i, as: .crashed)
        members[i].icmp = icmp
    }

    mutating func stop(_ i: Int, as status: Status) {
        members[i].status = status
        members[i].generation += 1
        members[i].core = nil
        members[i].scheduledTick = nil
        // A stopped process's port answers ICMP port unreachable (its host is up); a vanished
        // host answers nothing.
        members[i].icmp = status == .left || members[i].icmp
    }

    mutating func step(_ i: Int, _ event: GossipEvent) {
        // Moved out and back, never copied: a copy would make the core's next mutation copy
        // its whole member table.
        guard var core = members[i].core else { return }
        members[i].core = nil
        let directives = core.step(event, now: now)
        members[i].core = core
        result.steps += 1
        carry(i, directives)
    }

    mutating func scheduleTick(_ i: Int, at time: UInt64) {
        if let pending = members[i].scheduledTick, pending <= time { return }
        members[i].scheduledTick = time
        queue.push(.tick(i, generation: members[i].generation), atNanoseconds: time)
    }

    mutating func carry(_ i: Int, _ directives: [GossipDirective]) {
        for directive in directives {
            switch directive {
            case .send(let address, let message):
                send(message, from: i, to: address)
            case .requestFullState(let address):
                guard let to = byAddress[address], let state = members[i].core?.fullState(isReply: false) else { continue }
                sendFullState(state, from: i, to: to)
            case .memberChanged(let id, let from, let to, let inc):
                if tracing(members[i].id, id) { traceLine("\(members[i].id) sees \(id) \(from.map { "\($0)" } ?? "-") -> \(to.map { "\($0)" } ?? "-") @\(inc)") }
                observe(observer: i, subject: id, to: to)
            case .primaryChanged:
                break
            case .leaveComplete:
                if members[i].status == .leaving { stop(i, as: .left) }
            }
        }
        if isUp(i), let deadline = members[i].core?.nextDeadline { scheduleTick(i, at: deadline) }
    }

    /// Whether the network drops a datagram from `a` to `b` now (ground truth: cut or lossy),
    /// or a planted fault does.
    mutating func dropped(from a: Int, to b: Int) -> Bool {
        if members[a].cut != members[b].cut { return true }
        if members[a].lossy && chance(config.lossRate) { return true }
        if members[b].lossy && chance(config.lossRate) { return true }
        if let isolated, now >= churnEnd, a == isolated || b == isolated { return true }
        if config.planted == .silenceProtected, now >= churnEnd + checker.accuracyWindowNanoseconds, a == 0 { return true }
        return false
    }

    mutating func delay() -> UInt64 {
        var d = config.delayMinNanoseconds + uniform(max(1, config.delayMaxNanoseconds - config.delayMinNanoseconds))
        if chance(0.01) { d += uniform(config.slowExtraNanoseconds) }
        return d
    }

    mutating func send(_ message: GossipMessage, from i: Int, to address: String) {
        var message = message
        if config.planted == .stripPrimary {
            message.updates.removeAll { if case .primary = $0 { true } else { false } }
        }
        // Every datagram is encoded (its bytes counted); one in eight is decoded and must come
        // back equal (the codec on real traffic; decoding them all would double the run time).
        let bytes = GossipWire.encode(message)
        datagrams += 1
        datagramBytes += bytes.count
        if datagrams % 8 == 0 {
            do {
                let decoded = try GossipWire.decode(bytes)
                if decoded != message { checker.violations.append("codec: \(message) decodes as \(decoded)") }
            } catch {
                checker.violations.append("codec: a datagram the core made does not decode: \(error)")
            }
        }
        guard let to = byAddress[address] else { return }
        if dropped(from: i, to: to) { return }
        queue.push(.deliver(to: to, from: i, message, generation: members[to].generation), atNanoseconds: now + delay())
    }

    /// A datagram reached a stopped process's port: its host answers ICMP port unreachable.
    mutating func bounce(from: Int, to: Int) {
        guard isUp(from), !dropped(from: to, to: from) else { return }
        queue.push(.unreachable(to: from, address: members[to].address, generation: members[from].generation), atNanoseconds: now + delay())
    }

    mutating func sendFullState(_ state: GossipFullState, from i: Int, to: Int) {
        var state = state
        if config.planted == .stripPrimary { state.primary = nil }
        let bytes = GossipWire.encodeFullState(state)
        fullStateBytes += bytes.count
        if tracing(members[i].id, members[to].id) { traceLine("full state \(members[i].id) -> \(members[to].id) reply=\(state.isReply) \(state.members.count) members") }
        // TCP: no loss, but nothing passes a cut, and nobody answers when down.
        guard isUp(to), members[i].cut == members[to].cut else { return }
        if let isolated, now >= churnEnd, i == isolated || to == isolated { return }
        queue.push(.fullState(to: to, from: i, bytes, generation: members[to].generation), atNanoseconds: now + 2 * delay())
    }

    // MARK: Observations

    mutating func observe(observer i: Int, subject: String, to state: GossipMemberState?) {
        guard let state, let s = index(of: subject) else { return }
        let subjectUp = members[s].status == .up
        if state == .failed {
            checker.noteFailed(observer: members[i].id, subject: subject, subjectUp: subjectUp, at: now)
            if subjectUp && !checker.partitionActive && !(checker.lastPartitionEnd.map { now < $0 + checker.accuracyWindowNanoseconds } ?? false) {
                result.falseFailed += 1
                if let end = members[s].lastStallEnd, end + 5_000_000_000 > now { result.falseFailedOfStalled += 1 }
            }
        }
        if let victim = probeVictim, victim.index == s, !probeDone {
            if state == .suspect || state == .failed, probeFirstSuspicion == nil { probeFirstSuspicion = now }
            if state == .failed { probeFailedBy.insert(i); probeCompleteIfAll() }
        }
    }

    func index(of id: String) -> Int? {
        guard id.first == "m", let n = Int(id.dropFirst()), members.indices.contains(n) else { return nil }
        return n
    }

    // MARK: Checks

    /// Every live member's view of `subject`.
    func view(_ observer: Int, _ subject: Int) -> GossipMemberState? {
        members[observer].core?.member(members[subject].id)?.state
    }

    /// What is not yet as it must be after the churn (empty when (a), (b) and (d) hold).
    func missing(limit: Int) -> [String] {
        var found: [String] = []
        let live = members.indices.filter { members[$0].status == .up }
        for o in live {
            for s in members.indices where s != o {
                let state = view(o, s)
                switch members[s].status {
                case .up, .leaving:
                    if members[s].status == .up, state != .alive {
                        found.append("completeness: \(members[o].id) sees live \(members[s].id) as \(state.map { "\($0)" } ?? "unknown")")
                    }
                case .crashed:
                    if state == .alive || state == .suspect {
                        found.append("failure detection: \(members[o].id) sees crashed \(members[s].id) as \(state!)")
                    }
                case .left:
                    if let state, state != .left {
                        found.append("left: \(members[o].id) sees \(members[s].id), which left, as \(state)")
                    }
                case .notStarted:
                    break
                }
                if found.count >= limit { return found }
            }
            if let injected, members[o].core?.primary != injected {
                found.append("primary: \(members[o].id) knows \(members[o].core?.primary.map { "\($0)" } ?? "no primary"), not \(injected)")
            }
            if found.count >= limit { return found }
        }
        return found
    }

    mutating func check() {
        if missing(limit: 1).isEmpty {
            settled = true
            result.settledAfterNanoseconds = now - churnEnd
            // The steady figures: a quiet window from 5 s after settling to the first probe.
            queue.push(.steadyStarts, atNanoseconds: now + 5_000_000_000)
            queue.push(.probe(vanish: false), atNanoseconds: now + 5_000_000_000 + config.steadyNanoseconds)
            return
        }
        if now >= settleDeadline {
            let found = missing(limit: 5)
            checker.violations += found.map { "\($0) \((now - churnEnd) / 1_000_000)ms after the churn ended" }
            // Measure the crash probes all the same.
            queue.push(.probe(vanish: false), atNanoseconds: now + 2_000_000_000)
            return
        }
        queue.push(.check, atNanoseconds: now + 500_000_000)
    }

    var liveCount: Int { members.indices.filter { members[$0].status == .up }.count }

    mutating func startProbe(vanish: Bool) {
        if !vanish {
            let c = totalCounters()
            result.steadyExchanges = (
                c.joinExchanges - steadyCounters.joinExchanges, c.periodicExchanges - steadyCounters.periodicExchanges,
                c.repairExchanges - steadyCounters.repairExchanges, c.refutations - steadyCounters.refutations)
        }
        if !vanish, let s = steadyStart, now > s.time {
            let seconds = Double(now - s.time) / 1e9
            let m = Double(max(1, s.members))
            steadyFigures = (
                Double(datagrams - s.datagrams) / m / seconds, Double(datagramBytes - s.bytes) / m / seconds,
                Double(fullStateBytes - s.fullState) / m / seconds)
        }
        let bound = vanish ? config.vanishBoundNanoseconds : config.killBoundNanoseconds
        let candidates = members.indices.filter { members[$0].status == .up && $0 != 0 && $0 != isolated }
        if !candidates.isEmpty {
            let victim = candidates[Int(uniform(UInt64(candidates.count)))]
            probeVictim = (victim, vanish, now)
            probeFirstSuspicion = nil
            probeFailedBy = []
            probeDone = false
            checker.noteCrash(members[victim].id)
            if config.planted == .zombieCrash {
                // The ground truth says crashed; the process runs on (a lie the checks must see).
                members[victim].status = .crashed
                members[victim].zombie = true
            } else {
                crash(victim, icmp: !vanish)
            }
        }
        queue.push(.probeEnds(vanish: vanish, serial: probeSerial), atNanoseconds: now + bound)
    }

    mutating func endProbe(vanish: Bool) {
        if let victim = probeVictim, !probeDone {
            let live = members.indices.filter { members[$0].status == .up }
            let missed = live.filter { !probeFailedBy.contains($0) }
            checker.violations.append(
                "failure detection: \(members[victim.index].id), \(vanish ? "its host vanished" : "killed"), declared failed by"
                    + " \(live.count - missed.count) of \(live.count) live members within \((now - victim.at) / 1_000_000)ms"
                    + " (not by \(missed.prefix(3).map { members[$0].id }.joined(separator: ", "))\(missed.count > 3 ? ", ..." : ""))")
        }
        probeVictim = nil
        probeSerial += 1
        if vanish {
            // (The planted silence starts after the accuracy window: run until it shows.)
            endAt = config.planted == .silenceProtected ? max(now, churnEnd + checker.accuracyWindowNanoseconds + 15_000_000_000) : now
        } else {
            queue.push(.probe(vanish: true), atNanoseconds: now + 1_000_000_000)
        }
    }

    mutating func probeCompleteIfAll() {
        guard let victim = probeVictim, !probeDone else { return }
        for i in members.indices where members[i].status == .up && !probeFailedBy.contains(i) { return }
        probeDone = true
        queue.push(.probeEnds(vanish: victim.vanish, serial: probeSerial), atNanoseconds: now + 1_000_000_000)
        let first = (probeFirstSuspicion ?? now) - victim.at
        if victim.vanish {
            result.vanishFirstSuspicionNanoseconds = first
            result.vanishFailedByAllNanoseconds = now - victim.at
        } else {
            result.killFirstSuspicionNanoseconds = first
            result.killFailedByAllNanoseconds = now - victim.at
        }
    }

    mutating func finish() {
        let seconds = Double(now) / 1e9
        let live = max(1, liveCount)
        result.liveMembers = liveCount
        if seconds > 0 {
            result.messagesPerMemberSecond = Double(datagrams) / Double(live) / seconds
            result.bytesPerMemberSecond = Double(datagramBytes) / Double(live) / seconds
            result.fullStateBytesPerMemberSecond = Double(fullStateBytes) / Double(live) / seconds
        }
        if let steadyFigures {
            result.steadyMessagesPerMemberSecond = steadyFigures.messages
            result.steadyBytesPerMemberSecond = steadyFigures.bytes
            result.steadyFullStateBytesPerMemberSecond = steadyFigures.fullState
        }
        result.violations = checker.violations
    }
}
