import ClusterCore
import Foundation
import Testing

// The gossip core's rules one by one (SWIM §4.1-4.4, Lifeguard §4.1-4.3), driving a core with
// explicit times and reading its directives.

private let ms: UInt64 = 1_000_000

private func address(_ id: String) -> String { "\(id):7946" }

private func record(_ id: String, _ state: GossipMemberState = .alive, incarnation: UInt64 = 0) -> GossipMember {
    GossipMember(id: id, address: address(id), state: state, incarnation: incarnation, voter: false)
}

/// A driver for one core under test.
private struct Harness {
    var core: GossipCore
    var now: UInt64 = 1_000 * ms
    var log: [GossipDirective] = []

    init(_ id: String = "a", knows others: [String] = [], settings: GossipCore.Settings = GossipCore.Settings()) {
        core = GossipCore(id: id, address: address(id), voter: true, settings: settings, seed: 42)
        step(.tick)
        if !others.isEmpty {
            step(.fullState(GossipFullState(sender: others[0], isReply: true, members: others.map { record($0) }, primary: nil), from: address(others[0])))
        }
    }

    @discardableResult
    mutating func step(_ event: GossipEvent) -> [GossipDirective] {
        let out = core.step(event, now: now)
        log += out
        return out
    }

    /// Ticks at every deadline up to `time` (as a driver does) and returns what came out.
    @discardableResult
    mutating func run(until time: UInt64) -> [GossipDirective] {
        var out: [GossipDirective] = []
        while core.nextDeadline <= time {
            now = max(now, core.nextDeadline)
            out += step(.tick)
        }
        now = max(now, time)
        out += step(.tick)
        return out
    }

    /// As `run(until:)`, with every member answering every ping at once (in 10 ms steps).
    @discardableResult
    mutating func runAnswering(until time: UInt64, except silent: Set<String> = []) -> [GossipDirective] {
        var out: [GossipDirective] = []
        while now < time {
            var unanswered = run(until: min(time, now + 10 * ms))
            out += unanswered
            // An ack may start the next probe: answer until nothing is left unanswered.
            while !unanswered.isEmpty {
                let asked = pings(unanswered).filter { !silent.contains($0.target) }
                unanswered = []
                for p in asked {
                    let reply = receive(GossipMessage(sender: p.target, kind: .ack(seq: p.seq)))
                    out += reply
                    unanswered += reply
                }
            }
        }
        return out
    }

    @discardableResult
    mutating func receive(_ message: GossipMessage) -> [GossipDirective] {
        step(.datagram(message, from: address(message.sender)))
    }
}

private func sends(_ directives: [GossipDirective]) -> [(to: String, message: GossipMessage)] {
    directives.compactMap { if case .send(let to, let message) = $0 { (to, message) } else { nil } }
}

private func pings(_ directives: [GossipDirective]) -> [(to: String, seq: UInt32, target: String)] {
    sends(directives).compactMap { if case .ping(let seq, let target) = $0.message.kind { ($0.to, seq, target) } else { nil } }
}

private func changes(_ directives: [GossipDirective], of id: String) -> [GossipMemberState?] {
    directives.compactMap { if case .memberChanged(id, _, let to, _) = $0 { to } else { nil } }
}

@Suite("Gossip core: SWIM and Lifeguard rules")
struct GossipCoreTests {
    @Test("SWIM §4.1: each period one member is probed; its ack keeps it alive and health good")
    func probeThenAck() throws {
        var h = Harness(knows: ["b"])
        let out = h.run(until: h.now + 200 * ms)
        let ping = try #require(pings(out).first)
        #expect(ping.to == address("b") && ping.target == "b")
        h.receive(GossipMessage(sender: "b", kind: .ack(seq: ping.seq)))
        let later = h.runAnswering(until: h.now + 2_000 * ms)
        #expect(changes(later, of: "b").isEmpty)
        #expect(h.core.member("b")?.state == .alive)
        #expect(h.core.localHealth == 0)
        // Each further period probes again: about one ping per probe interval.
        #expect((8...11).contains(pings(later).count))
    }

    @Test("a member answers a ping for itself with an ack, and ignores one for another id")
    func pingIsAnswered() {
        var h = Harness(knows: ["b"])
        let acks = sends(h.receive(GossipMessage(sender: "b", kind: .ping(seq: 9, target: "a"))))
        #expect(acks.count == 1 && acks[0].to == address("b") && acks[0].message.kind == .ack(seq: 9))
        #expect(sends(h.receive(GossipMessage(sender: "b", kind: .ping(seq: 10, target: "z")))).isEmpty)
    }

    @Test("SWIM §4.1: no ack within the probe timeout: k others are asked to probe (ping-req), never the target")
    func timeoutSendsPingReqToK() throws {
        var h = Harness(knows: ["b", "c", "d", "e", "f"])
        let ping = try #require(pings(h.run(until: h.now + 200 * ms)).first)
        let out = h.run(until: h.now + h.core.settings.probeTimeout)
        let requests = sends(out).filter { if case .pingReq = $0.message.kind { true } else { false } }
        #expect(requests.count == h.core.settings.indirectChecks)
        #expect(Set(requests.map(\.to)).count == requests.count)
        #expect(!requests.contains { $0.to == address(ping.target) })
        for r in requests {
            #expect(r.message.kind == .pingReq(seq: ping.seq, target: ping.target, targetAddress: address(ping.target)))
        }
    }

    @Test("Lifeguard §4.3: a relay pings the target, relays its ack, or sends a nack when none comes")
    func relayAcksOrNacks() throws {
        var h = Harness("r", knows: ["o", "t"])
        let out = h.receive(GossipMessage(sender: "o", kind: .pingReq(seq: 5, target: "t", targetAddress: address("t"))))
        let ping = try #require(pings(out).first { $0.target == "t" })
        // The target answers: the ack goes to the origin with the origin's seq.
        let relayed = sends(h.receive(GossipMessage(sender: "t", kind: .ack(seq: ping.seq))))
        #expect(relayed.contains { $0.to == address("o") && $0.message.kind == .ack(seq: 5) })
        // Another request the target does not answer: a nack before the origin's period ends.
        let second = try #require(pings(h.receive(GossipMessage(sender: "o", kind: .pingReq(seq: 6, target: "t", targetAddress: address("t"))))).first)
        _ = second
        let nacks = sends(h.run(until: h.now + h.core.settings.probeTimeout)).filter { $0.message.kind == .nack(seq: 6) }
        #expect(nacks.count == 1 && nacks[0].to == address("o"))
    }

    @Test("SWIM §4.3 and Lifeguard §4.1: an unanswered probe suspects; relays that nack spare the prober's health, silent ones count against it")
    func suspectAndNacks() throws {
        var h = Harness(knows: ["b", "c", "d", "e"])
        let ping = try #require(pings(h.run(until: h.now + 200 * ms)).first)
        let requests = sends(h.run(until: h.now + h.core.settings.probeTimeout)).filter {
            if case .pingReq = $0.message.kind { true } else { false }
        }
        #expect(requests.count == 3)
        // Two of three relays nack.
        for r in requests.prefix(2) {
            h.receive(GossipMessage(sender: String(r.to.prefix { $0 != ":" }), kind: .nack(seq: ping.seq)))
        }
        let out = h.run(until: h.now + 100 * ms)
        #expect(changes(out, of: ping.target) == [.suspect])
        #expect(h.core.localHealth == 1)
        #expect(h.core.member(ping.target)?.state == .suspect)
    }

    @Test("Lifeguard §4.1: health rises by the missing nacks (period and timeout scale with it), and falls with each ack")
    func localHealthUpAndDown() throws {
        var h = Harness(knows: ["b", "c", "d", "e"])
        let first = h.run(until: h.now + 400 * ms)  // a probe: no ack, no nacks
        #expect(h.core.localHealth == 3)
        #expect(h.core.probePeriod == 4 * h.core.settings.probeInterval)
        // The next probe (already under way) is answered.
        for p in pings(first).dropFirst() { h.receive(GossipMessage(sender: p.target, kind: .ack(seq: p.seq))) }
        // Answer every probe from now on: health falls by one per answered probe.
        // The unanswered target was suspected; it refutes, so that every member is alive again.
        let target = try #require(h.core.members.first { $0.state == .suspect })
        let refuted = h.receive(GossipMessage(sender: target.id, kind: .gossip, updates: [.alive(id: target.id, incarnation: 1, address: target.address, voter: false)]))
        for p in pings(refuted) { h.receive(GossipMessage(sender: p.target, kind: .ack(seq: p.seq))) }
        #expect(h.core.localHealth <= 3)
        var healths: [Int] = [h.core.localHealth]
        for _ in 0..<30 where h.core.localHealth > 0 {
            h.runAnswering(until: h.now + 100 * ms)
            if healths.last != h.core.localHealth { healths.append(h.core.localHealth) }
        }
        // One less per answered probe, down to 0.
        #expect(healths.last == 0 && zip(healths, healths.dropFirst()).allSatisfy { $0 == $1 + 1 }, "\(healths)")
        // It never exceeds the maximum.
        var sick = Harness(knows: ["b", "c", "d", "e"])
        _ = sick.run(until: sick.now + 60_000 * ms)
        #expect(sick.core.localHealth == sick.core.settings.maxLocalHealth)
    }

    @Test("Lifeguard §4.2: a suspicion times out between min and max; independent confirmations bring it down to min")
    func confirmationsShrinkTheTimeout() {
        // Members b...k; "a" hears "x1" suspect "b" and waits; each further suspecter shortens the wait.
        let others = ["b", "c", "d", "e", "f", "g", "h", "i", "j", "k"]
        func failedAfter(confirmations: Int) -> UInt64 {
            var h = Harness(knows: others)
            let start = h.now
            h.receive(GossipMessage(sender: "c", kind: .gossip, updates: [.suspect(id: "b", incarnation: 0, from: "c")]))
            for n in 0..<confirmations {
                let from = others[2 + n]
                h.receive(GossipMessage(sender: from, kind: .gossip, updates: [.suspect(id: "b", incarnation: 0, from: from)]))
            }
            // Every probe is answered (b's too: an ack does not end a suspicion, only a
            // refutation does), so that only the suspicion's own timer matters.
            var failedAt: UInt64?
            for _ in 0..<10_000 where failedAt == nil {
                let out = h.runAnswering(until: h.now + 10 * ms)
                if changes(out, of: "b").contains(.failed) { failedAt = h.now }
            }
            return (failedAt ?? .max) - start
        }
        let n = 11.0  // clusterSize: a + 10
        let s = GossipCore.Settings()
        let min = UInt64(Double(s.suspicionMinMultiplier) * max(1, log10(n)) * Double(s.probeInterval))
        let max = min * s.suspicionMaxMultiplier
        let none = failedAfter(confirmations: 0), one = failedAfter(confirmations: 1), all = failedAfter(confirmations: 3)
        #expect(none >= max && none <= max + 20 * ms, "\(none) vs \(max)")
        #expect(one < none && one > min)
        #expect(all >= min && all <= min + 20 * ms, "\(all) vs \(min)")
    }

    @Test("SWIM §4.3: a member that hears itself suspected or declared failed refutes with a higher incarnation, sent first")
    func refuteByIncarnation() throws {
        var h = Harness(knows: ["b", "c"])
        let out = h.receive(GossipMessage(sender: "b", kind: .ping(seq: 3, target: "a"), updates: [.suspect(id: "a", incarnation: 0, from: "b")]))
        #expect(h.core.incarnation == 1)
        #expect(h.core.localHealth == 1)
        let ack = try #require(sends(out).first)
        #expect(ack.message.updates.first == .alive(id: "a", incarnation: 1, address: address("a"), voter: true))
        h.receive(GossipMessage(sender: "c", kind: .gossip, updates: [.failed(id: "a", incarnation: 4, from: "c")]))
        #expect(h.core.incarnation == 5)
        // A stale claim (an incarnation already refuted) is answered, not refuted again.
        h.receive(GossipMessage(sender: "c", kind: .gossip, updates: [.suspect(id: "a", incarnation: 2, from: "c")]))
        #expect(h.core.incarnation == 5)
    }

    @Test("a member that has to refute a suspicion exchanges full states with the teller (what it missed while apart), at most once a second")
    func refutationRepairsTheView() {
        var h = Harness(knows: ["b", "c"])
        let out = h.receive(GossipMessage(sender: "b", kind: .gossip, updates: [.suspect(id: "a", incarnation: 0, from: "b")]))
        #expect(out.contains(.requestFullState(address: address("b"))))
        let again = h.receive(GossipMessage(sender: "c", kind: .gossip, updates: [.suspect(id: "a", incarnation: 1, from: "c")]))
        #expect(!again.contains(.requestFullState(address: address("c"))))
        h.run(until: h.now + 1_100 * ms)
        let later = h.receive(GossipMessage(sender: "c", kind: .gossip, updates: [.failed(id: "a", incarnation: 2, from: "c")]))
        #expect(later.contains(.requestFullState(address: address("c"))))
    }

    @Test("a member that spreads news older than ours (it missed a leave) is sent ours back")
    func staleNewsIsCorrected() throws {
        var h = Harness(knows: ["b", "c"])
        h.receive(GossipMessage(sender: "b", kind: .gossip, updates: [.left(id: "b", incarnation: 2)]))
        let out = h.receive(GossipMessage(sender: "c", kind: .gossip, updates: [.failed(id: "b", incarnation: 1, from: "c")]))
        let reply = try #require(sends(out).first { $0.to == address("c") })
        #expect(reply.message.updates == [.left(id: "b", incarnation: 2)])
        #expect(h.core.member("b")?.state == .left)
    }

    @Test("news about a member at a lower incarnation is ignored; a failed member is alive again only with a higher one")
    func failedComesBackWithHigherIncarnation() {
        var h = Harness(knows: ["b", "c"])
        h.receive(GossipMessage(sender: "c", kind: .gossip, updates: [.failed(id: "b", incarnation: 2, from: "c")]))
        #expect(h.core.member("b")?.state == .failed)
        h.receive(GossipMessage(sender: "c", kind: .gossip, updates: [.alive(id: "b", incarnation: 2, address: address("b"), voter: false)]))
        #expect(h.core.member("b")?.state == .failed)
        h.receive(GossipMessage(sender: "c", kind: .gossip, updates: [.suspect(id: "b", incarnation: 1, from: "c")]))
        #expect(h.core.member("b")?.state == .failed)
        h.receive(GossipMessage(sender: "b", kind: .gossip, updates: [.alive(id: "b", incarnation: 3, address: address("b"), voter: true)]))
        #expect(h.core.member("b") == GossipMember(id: "b", address: address("b"), state: .alive, incarnation: 3, voter: true))
    }

    @Test("a left member's old alive news (lower or equal incarnation) does not resurrect it; it is never suspected")
    func leftIsNotResurrected() {
        var h = Harness(knows: ["b", "c"])
        h.receive(GossipMessage(sender: "b", kind: .gossip, updates: [.left(id: "b", incarnation: 1)]))
        #expect(h.core.member("b")?.state == .left)
        for inc: UInt64 in [0, 1] {
            h.receive(GossipMessage(sender: "c", kind: .gossip, updates: [.alive(id: "b", incarnation: inc, address: address("b"), voter: false)]))
        }
        h.receive(GossipMessage(sender: "c", kind: .gossip, updates: [.suspect(id: "b", incarnation: 1, from: "c"), .failed(id: "b", incarnation: 1, from: "c")]))
        #expect(h.core.member("b")?.state == .left)
        // Left members are not probed.
        let out = h.run(until: h.now + 5_000 * ms)
        #expect(!pings(out).contains { $0.target == "b" })
        // It comes back only by rejoining with a higher incarnation.
        h.receive(GossipMessage(sender: "b", kind: .gossip, updates: [.alive(id: "b", incarnation: 2, address: address("b"), voter: false)]))
        #expect(h.core.member("b")?.state == .alive)
    }

    @Test("leave: the member announces it at a higher incarnation, stops probing, and says when the news is out")
    func leave() {
        var h = Harness(knows: ["b", "c", "d"])
        let out = h.step(.leave)
        #expect(h.core.hasLeft)
        #expect(sends(out).contains { $0.message.updates.contains(.left(id: "a", incarnation: 1)) })
        let later = h.run(until: h.now + 10_000 * ms)
        #expect(pings(later).isEmpty)
        #expect(later.contains(.leaveComplete))
    }

    @Test("a failed member is forgotten after reapFailedAfter; a left one is kept as left until forgetLeftAfter")
    func reaping() {
        var settings = GossipCore.Settings()
        settings.reapFailedAfter = 10_000 * ms
        settings.forgetLeftAfter = 30_000 * ms
        var h = Harness(knows: ["b", "c", "d"], settings: settings)
        h.receive(GossipMessage(sender: "d", kind: .gossip, updates: [.failed(id: "b", incarnation: 0, from: "d"), .left(id: "c", incarnation: 1)]))
        let start = h.now
        h.run(until: start + 9_000 * ms)
        #expect(h.core.member("b")?.state == .failed)
        h.run(until: start + 12_000 * ms)
        #expect(h.core.member("b") == nil)
        #expect(h.core.member("c")?.state == .left)
        h.run(until: start + 25_000 * ms)
        #expect(h.core.member("c")?.state == .left)
        h.run(until: start + 35_000 * ms)
        #expect(h.core.member("c") == nil)
        #expect(h.log.contains(.memberChanged(id: "b", from: .failed, to: nil, incarnation: 0)))
    }

    @Test("a partition that outlasts reaping: the failed members forgotten are reconnected with (a full-state exchange with one of them every reconnectInterval), and the exchange brings them back; a member that is gone costs a dial per interval")
    func reconnectAfterReaping() {
        let settings = GossipCore.Settings()
        let reconnectInterval = 30_000 * ms  // the default `reconnectInterval` (written out: this test ran before it existed)
        var h = Harness(knows: ["b", "c", "d"], settings: settings)
        // b and c are cut off (they answer nothing); d answers: b and c are suspected, declared
        // failed, and forgotten a minute later.
        let start = h.now
        let apart = h.runAnswering(until: start + settings.reapFailedAfter + 10_000 * ms, except: ["b", "c"])
        #expect(h.core.member("b") == nil && h.core.member("c") == nil, "\(String(describing: h.core.member("b")))")
        #expect(apart.contains(.memberChanged(id: "b", from: .failed, to: nil, incarnation: 0)))
        // Still apart: a full-state exchange with b or c every reconnectInterval (2 forgotten,
        // 2 members alive: always), and with no one else but the periodic exchange's d.
        let reconnecting = h.runAnswering(until: h.now + 2 * reconnectInterval + 1_000 * ms, except: ["b", "c"])
        let asked = reconnecting.compactMap { if case .requestFullState(let to) = $0 { to } else { nil } }
        #expect(asked.filter { $0 == address("b") || $0 == address("c") }.count == 2, "\(asked)")
        #expect(asked.allSatisfy { [address("b"), address("c"), address("d")].contains($0) }, "\(asked)")
        // Healed: b answers the exchange with its side's view (b and c alive): both are back,
        // and no more reconnecting.
        h.step(.fullState(GossipFullState(sender: "b", isReply: true, members: [record("b", incarnation: 1), record("c", incarnation: 1)], primary: nil), from: address("b")))
        #expect(h.core.member("b")?.state == .alive && h.core.member("c")?.state == .alive)
        // (At most one exchange in the next minute: the periodic one, with a random member, at
        // least 45 s apart.)
        let after = h.runAnswering(until: h.now + 2 * reconnectInterval, except: [])
        #expect(after.filter { if case .requestFullState = $0 { true } else { false } }.count <= 1, "\(after.filter { if case .requestFullState = $0 { true } else { false } })")
    }

    @Test("SWIM §4.2: an update is sent λ·(ceil(log10(N+1)) + 1) times (a round more than memberlist), then no more")
    func retransmitLimit() {
        let others = (0..<20).map { "m\($0)" }
        var h = Harness(knows: others)
        // Let the join news go out.
        h.runAnswering(until: h.now + 30_000 * ms)
        #expect(h.core.pendingBroadcasts == 0)
        h.receive(GossipMessage(sender: "m1", kind: .gossip, updates: [.alive(id: "m0", incarnation: 5, address: address("m0"), voter: true)]))
        let out = h.runAnswering(until: h.now + 20_000 * ms)
        let carried = sends(out).reduce(0) { n, s in
            n + s.message.updates.filter { $0 == .alive(id: "m0", incarnation: 5, address: address("m0"), voter: true) }.count
        }
        #expect(h.core.retransmitLimit == 4 * 3)  // N = 21: ceil(log10(22)) + 1 = 3
        #expect(carried == h.core.retransmitLimit)
        #expect(h.core.pendingBroadcasts == 0)
    }

    @Test("piggybacked updates fill a datagram up to the byte budget, fewest transmissions first")
    func byteBudget() {
        var settings = GossipCore.Settings()
        settings.maxDatagramBytes = 300
        var h = Harness(knows: ["b"], settings: settings)
        let news = (0..<100).map { GossipMember(id: "n\($0)", address: "10.0.0.\($0):7946", state: .alive, incarnation: 1, voter: false) }
        h.step(.fullState(GossipFullState(sender: "b", isReply: true, members: news, primary: nil), from: address("b")))
        let out = h.run(until: h.now + 1_000 * ms)
        let datagrams = sends(out)
        #expect(!datagrams.isEmpty)
        for d in datagrams {
            let size = GossipWire.encode(d.message).count
            #expect(size <= 300)
            // Full: another update would not have fitted.
            #expect(size + 30 > 300 || d.message.updates.count < 5)
        }
        // The first datagrams carry the newest, never-sent updates: no update twice before all once.
        let first = datagrams.prefix(3).flatMap(\.message.updates)
        #expect(Set(first.compactMap(\.memberID)).count == first.count)
    }

    @Test("evidence (ICMP port unreachable): suspected at once, failed after evidenceSuspicionTimeout")
    func unreachableIsEvidence() {
        var h = Harness(knows: ["b", "c", "d"])
        let start = h.now
        let out = h.step(.unreachable(address: address("b")))
        #expect(changes(out, of: "b") == [.suspect])
        h.run(until: start + h.core.settings.evidenceSuspicionTimeout - 10 * ms)
        #expect(h.core.member("b")?.state == .suspect)
        h.run(until: start + h.core.settings.evidenceSuspicionTimeout + 10 * ms)
        #expect(h.core.member("b")?.state == .failed)
    }

    @Test("the primary: the newest (term, epoch) wins wherever it is heard")
    func primaryNewestWins() {
        var h = Harness(knows: ["b"])
        let p1 = GossipPrimary(term: 3, epoch: 2, leaderID: "a")
        #expect(h.step(.setPrimary(p1)).contains(.primaryChanged(p1)))
        h.receive(GossipMessage(sender: "b", kind: .gossip, updates: [.primary(GossipPrimary(term: 2, epoch: 9, leaderID: "b"))]))
        #expect(h.core.primary == p1)
        let p2 = GossipPrimary(term: 3, epoch: 3, leaderID: "b")
        h.receive(GossipMessage(sender: "b", kind: .gossip, updates: [.primary(p2)]))
        #expect(h.core.primary == p2)
        #expect(h.core.fullState(isReply: false).primary == p2)
    }

    @Test("join asks each seed for a full state, again while no other member is known; a full state teaches the view")
    func joinAndFullState() {
        var h = Harness()
        let out = h.step(.join(["s1:1", "s2:1", address("a")]))
        #expect(out.filter { if case .requestFullState = $0 { true } else { false } }.count == 2)
        let retry = h.run(until: h.now + 1_500 * ms)
        #expect(retry.contains(.requestFullState(address: "s1:1")))
        h.step(.fullState(GossipFullState(sender: "s1", isReply: true, members: [record("s1"), record("x", .failed, incarnation: 2)], primary: nil), from: "s1:1"))
        #expect(h.core.member("s1")?.state == .alive)
        // A failed record in a full state only raises a suspicion here.
        #expect(h.core.member("x")?.state == .suspect)
        let quiet = h.run(until: h.now + 1_500 * ms)
        #expect(!quiet.contains(.requestFullState(address: "s1:1")))
    }

    @Test("Lifeguard: after a stall (no step for long), timers wait a probe timeout so that waiting datagrams are read first")
    func stallHoldsTimers() throws {
        var h = Harness(knows: ["b", "c"])
        let ping = try #require(pings(h.run(until: h.now + 200 * ms)).first)
        // The driver stalls for 2 s; the ack waited in the socket.
        h.now += 2_000 * ms
        let afterStall = h.step(.tick)
        #expect(changes(afterStall, of: ping.target).isEmpty)
        h.receive(GossipMessage(sender: ping.target, kind: .ack(seq: ping.seq)))
        let out = h.run(until: h.now + 150 * ms)
        #expect(changes(out, of: ping.target).isEmpty)
    }
}

