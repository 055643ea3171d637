// The membership state machine of one member: SWIM (Das, Gupta, Motivala 2002) with Lifeguard's
// refinements (Dadgar, Phillips, Currey 2018). Pure: no I/O, no clock, no global randomness.
// Every input comes through `step(_:now:)`; every output is a directive.
//
// References in comments:
// - SWIM §4.1 (failure detector: randomised probe, k indirect probes), §4.2 (dissemination by
//   piggybacking, infection style), §4.3 (suspicion, incarnation numbers), §4.4 (round-robin
//   probe order, reshuffled each pass).
// - Lifeguard §4.1 (local health multiplier: "Local Health Aware Probe"), §4.2 (suspicion
//   timeout that starts high and shrinks logarithmically with independent confirmations:
//   "Local Health Aware Suspicion"), §4.3 (nacks from ping-req relays: "Buddy System" and nack).

/// The membership state machine of one member.
///
/// A driver (the node runtime, or `GossipSimulation`) owns one core per member and:
/// - MUST feed every event through ``step(_:now:)`` with the current time in nanoseconds (any
///   monotonic origin, never going back), and carry out the returned directives in order.
/// - MUST deliver ``GossipEvent/tick`` no later than ``nextDeadline`` (earlier or extra ticks are
///   harmless).
/// - MUST send each ``GossipDirective/send(to:_:)`` as one datagram (``GossipWire``) to the
///   address, and feed every gossip datagram that decodes as ``GossipEvent/datagram(_:from:)``
///   with the address it came from. Loss, duplication and reordering are tolerated.
/// - MUST, for ``GossipDirective/requestFullState(address:)``, dial the address over TCP, send
///   ``fullState(isReply:)`` (not a reply), and feed the answer as ``GossipEvent/fullState(_:from:)``;
///   and answer a full state that is not a reply with ``fullState(isReply:)`` (a reply) after
///   feeding it. A failed dial is simply dropped (the core retries what needs retrying).
/// - SHOULD report ``GossipEvent/unreachable(address:)`` when a datagram to an address came back
///   refused (ICMP port unreachable): nothing listens there, the usual sign of a killed process.
///   It is what lets a killed member be declared failed in a fraction of the suspicion timeout
///   (see ``Settings/evidenceSuspicionTimeout``) while a merely slow one gets the whole timeout.
///
/// Guarantees (tested rule by rule in `GossipCoreTests`, and as properties by the simulator):
/// - Only a member raises its own incarnation; news about a member at a lower incarnation than
///   known is ignored; `alive` needs a strictly higher incarnation to override anything, so a left
///   or failed member is not resurrected by old news, and comes back only by refuting.
/// - A member that hears itself suspected or declared failed refutes: it raises its incarnation
///   above the claim and spreads `alive` (and counts it against its own health, Lifeguard §4.1).
/// - The load per member per protocol period is one probe (and its ack), plus `indirectChecks`
///   ping-reqs when a probe goes unanswered, plus gossip while there is news: independent of N.
///
/// Time, in nanoseconds. The probe period and the probe timeout are scaled by the local health
/// multiplier ``localHealth`` + 1 (Lifeguard §4.1): a member whose own probes keep failing, or
/// that has to refute, slows down instead of accusing others.
package struct GossipCore: Sendable {
    /// Timings and limits. All times in nanoseconds.
    ///
    /// The trade in the defaults: detection is fast where there is evidence, and as patient as
    /// memberlist's (with Lifeguard) where there is not. A killed process (its host up) answers a
    /// probe with an ICMP port unreachable at once; with ``evidenceSuspicionTimeout`` (one probe
    /// interval) it is declared failed within about a probe interval of the first probe that
    /// reaches it, and that spreads by gossip in a few gossip intervals. A member that is only
    /// slow (a stalled process, a paused VM) sends no such signal, and gets the full Lifeguard
    /// suspicion timeout: `suspicionMinMultiplier`·max(1, log10 N)·probeInterval at least,
    /// `suspicionMaxMultiplier` times that at most, shrinking with independent confirmations.
    /// The defaults (4, 6, 3 confirmations) are memberlist's, so a stall is no more likely to be
    /// called a failure than under memberlist; lowering them makes a vanished host (no ICMP)
    /// detected sooner and a stall of that length a false "failed".
    package struct Settings: Sendable, Equatable {
        /// One protocol period: each member probes one other per period (SWIM §4.1).
        package var probeInterval: UInt64 = 200_000_000
        /// How long a direct probe waits for its ack before asking others (under the period).
        package var probeTimeout: UInt64 = 100_000_000
        /// k: members asked to probe indirectly when the direct probe times out (SWIM §4.1).
        package var indirectChecks = 3
        /// How often news is gossiped (beside piggybacking) to `gossipFanout` random members,
        /// while there is news. Nothing is sent when there is none.
        package var gossipInterval: UInt64 = 100_000_000
        package var gossipFanout = 3
        /// λ: each update is sent λ·ceil(log10(N + 1)) times (SWIM §4.2).
        package var retransmitMultiplier = 4
        /// α of Lifeguard §4.2: the shortest suspicion timeout is α·max(1, log10 N)·probeInterval.
        package var suspicionMinMultiplier: UInt64 = 4
        /// β of Lifeguard §4.2: the longest is β times the shortest.
        package var suspicionMaxMultiplier: UInt64 = 6
        /// K of Lifeguard §4.2: independent confirmations that bring the timeout down to the shortest.
        package var suspicionConfirmations = 3
        /// How long a member suspected on evidence (``GossipEvent/unreachable(address:)``) has to
        /// refute before it is declared failed.
        package var evidenceSuspicionTimeout: UInt64 = 200_000_000
        /// The largest local health score (Lifeguard's S: the multiplier is 1...S+1).
        package var maxLocalHealth = 8
        /// The largest datagram the core makes, in bytes (its updates fill it up to this). 1,368
        /// leaves room under 1,400 for a keyed datagram's header fields and tag.
        package var maxDatagramBytes = 1_368
        /// A full-state exchange with one random member over TCP (anti-entropy) every this long
        /// for clusters of up to `fullStateScaleMembers` members, longer in proportion beyond,
        /// so that its bytes per member per second do not grow with N.
        package var fullStateInterval: UInt64 = 90_000_000_000
        package var fullStateScaleMembers = 100
        /// While it knows no other live member, a member asks its seeds again this often.
        package var joinRetryInterval: UInt64 = 1_000_000_000
        /// A failed member is forgotten this long after it was declared failed. Until then it is
        /// still probed now and then (one ping, no suspicion), so that a member cut off by a
        /// partition hears that it was declared failed when the partition heals and refutes.
        /// Once forgotten, its address is kept for `reconnectTimeout` (see `reconnectInterval`).
        package var reapFailedAfter: UInt64 = 60_000_000_000
        /// Serf's reconnect: every this long, a member that keeps the addresses of failed members
        /// it forgot (reaped) exchanges full states with one of them, at random, with probability
        /// (addresses kept) / (members alive or suspect, itself included), at most 1: about one
        /// attempt per forgotten member per interval across the cluster, whatever N. It is what
        /// merges the two sides of a partition that outlasted `reapFailedAfter`: by then neither
        /// side probes, gossips to or exchanges with the other.
        package var reconnectInterval: UInt64 = 30_000_000_000
        /// A forgotten failed member's address is given up this long after it was forgotten.
        package var reconnectTimeout: UInt64 = 86_400_000_000_000
        /// The most forgotten failed members whose addresses are kept (the oldest go first).
        package var reconnectMaxAddresses = 1_024
        /// A member that left is remembered as left this long (its old news cannot resurrect it).
        package var forgetLeftAfter: UInt64 = 3_600_000_000_000

        package init() {}
    }

    /// The member this core is.
    package let id: String
    package private(set) var address: String
    package private(set) var incarnation: UInt64 = 0
    package private(set) var voter: Bool
    /// True once ``GossipEvent/leave`` was stepped.
    package private(set) var hasLeft = false
    package let settings: Settings
    /// Lifeguard's local health score, 0...maxLocalHealth: probe period and timeout are scaled by
    /// this plus one.
    package private(set) var localHealth = 0
    /// The newest primary heard of, or set here.
    package private(set) var primary: GossipPrimary?
    /// Why full-state exchanges were asked for, counted (for metrics).
    package struct Counters: Sendable, Equatable {
        package var joinExchanges = 0
        package var periodicExchanges = 0
        /// After being declared failed, hearing a member we declared failed come back, or
        /// hearing a stranger (see ``GossipCore``).
        package var repairExchanges = 0
        /// With a failed member forgotten (see ``Settings/reconnectInterval``).
        package var reconnectExchanges = 0
        package var refutations = 0

        package init() {}
    }
    package private(set) var counters = Counters()
    /// When the driver must deliver a tick at the latest.
    package private(set) var nextDeadline: UInt64 = 0

    struct Entry: Sendable {
        var member: GossipMember
        var changedAt: UInt64
        var suspicion: Suspicion?
        /// Its failure was declared by this member's own timer (not heard).
        var declaredHere = false
    }

    /// Lifeguard §4.2: a suspicion's timeout starts at `max` and falls towards `min` as
    /// independent members confirm it.
    struct Suspicion: Sendable {
        var start: UInt64
        var confirmers: [String]
        var expected: Int
        var min: UInt64
        var max: UInt64
        var deadline: UInt64
    }

    struct Probe: Sendable {
        var target: String
        var seq: UInt32
        var ackDeadline: UInt64
        var periodEnd: UInt64
        var acked = false
        var direct = true
        var indirectSent = false
        var expectedNacks = 0
        var nacks = 0
        /// A probe of a member held failed: one ping, no suspicion (it may refute).
        var ofFailed = false
    }

    struct Relay: Sendable {
        var seq: UInt32
        var originAddress: String
        var originSeq: UInt32
        var nackAt: UInt64
        var expiresAt: UInt64
        var nacked = false
    }

    /// A failed member forgotten (reaped): where to try to reconnect with it.
    struct Departed: Sendable {
        var id: String
        var address: String
        var forgottenAt: UInt64
    }

    struct Broadcast: Sendable {
        var key: String
        var update: GossipUpdate
        var size: Int
        var order: UInt64
    }

    var entries: [Entry] = []
    var index: [String: Int] = [:]
    var byAddress: [String: String] = [:]
    var activeCount = 0
    var probeOrder: [String] = []
    var probePosition = 0
    var probe: Probe?
    var relays: [Relay] = []
    var suspected: [String] = []
    /// The earliest deadline among `suspected` (or earlier: a refuted one's, which is then skipped).
    var nextSuspicionDeadline: UInt64 = .max
    /// The piggyback queue, by transmissions so far: `buckets[t]` holds the updates sent t times,
    /// oldest first. `latest[key]` is the order of the one live broadcast per key; older ones are
    /// dropped when met.
    var buckets: [[Broadcast]] = []
    var latest: [String: UInt64] = [:]
    var broadcastOrder: UInt64 = 0
    var rng: SplitMix64
    var seq: UInt32 = 0
    var started = false
    var lastStepAt: UInt64 = 0
    var holdTimersUntil: UInt64 = 0
    var nextProbeAt: UInt64 = 0
    var nextGossipAt: UInt64 = 0
    var nextFullStateAt: UInt64 = 0
    var lastFullStateAt: UInt64 = 0
    var fullStateJitter = 1.0
    var nextReapAt: UInt64 = 0
    /// Failed members forgotten, oldest first (see ``Settings/reconnectInterval``).
    var departed: [Departed] = []
    var nextReconnectAt: UInt64 = 0
    var seeds: [String] = []
    var nextJoinAt: UInt64?
    var leaveAnnounced = false
    var refutedHere = false
    var staleNews: [GossipUpdate] = []
    var nextCorrectAt: UInt64 = 0
    var nextRepairAt: UInt64 = 0
    var nextTellAt: UInt64 = 0
    var claimAboutUs = false
    var cameBack: String?
    var strangers: [String: UInt64] = [:]
    var out: [GossipDirective] = []

    /// A member `id` at `address` (`host:port`, where its datagrams arrive), voting or not;
    /// `seed` drives every random choice (probe order, relays, gossip targets), so that a run
    /// replays exactly.
    package init(id: String, address: String, voter: Bool, settings: Settings = Settings(), seed: UInt64) {
        precondition(!id.isEmpty && id.utf8.count <= 255, "GossipCore: an id is 1...255 bytes")
        precondition(address.utf8.count <= 255, "GossipCore: an address is at most 255 bytes")
        self.id = id
        self.address = address
        self.voter = voter
        self.settings = settings
        self.rng = SplitMix64(seed: seed)
    }

    // MARK: Reading

    /// Every other member known, in no particular order.
    package var members: [GossipMember] { entries.map(\.member) }

    /// What this member knows of `id` (itself included).
    package func member(_ id: String) -> GossipMember? {
        if id == self.id { return ownRecord }
        return index[id].map { entries[$0].member }
    }

    /// This member's own record.
    package var ownRecord: GossipMember {
        GossipMember(id: id, address: address, state: hasLeft ? .left : .alive, incarnation: incarnation, voter: voter)
    }

    /// Members alive or suspect, itself included: N in every formula.
    package var clusterSize: Int { activeCount + 1 }

    /// How many times an update is sent: λ·(ceil(log10(N + 1)) + 1). One round more than
    /// memberlist's λ·ceil(log10(N + 1)): a member misses an update with odds near e^-(copies it
    /// is sent), and with 12 copies at 700 members a batch of 100 joins left one member in
    /// 700 unaware of one of them (seen at 1,000 members in one process) until the periodic
    /// full-state exchange, minutes later at that size; 16 copies make that some 50 times rarer.
    /// Costs bytes only while there is news.
    package var retransmitLimit: Int {
        settings.retransmitMultiplier * (Int(ceilLog10(clusterSize + 1)) + 1)
    }

    /// Updates waiting to be piggybacked or gossiped.
    package var pendingBroadcasts: Int { latest.count }

    /// The whole view, to send over TCP: this member first, then the others.
    package func fullState(isReply: Bool) -> GossipFullState {
        GossipFullState(sender: id, isReply: isReply, members: [ownRecord] + members, primary: primary)
    }

    /// The current probe period: `probeInterval`·(localHealth + 1).
    package var probePeriod: UInt64 { settings.probeInterval &* UInt64(localHealth + 1) }

    // MARK: The door

    /// Steps the core with `event` at `now` and returns what the driver must do, in order.
    package mutating func step(_ event: GossipEvent, now: UInt64) -> [GossipDirective] {
        out = []
        if !started {
            started = true
            lastStepAt = now
            nextProbeAt = now &+ rng.next(upperBound: max(1, settings.probeInterval))
            nextGossipAt = now &+ settings.gossipInterval
            fullStateJitter = 0.5 + Double(rng.next() >> 11) / Double(1 << 53)
            lastFullStateAt = now
            nextFullStateAt = now &+ fullStateSpan()
            nextReapAt = now &+ reapInterval
        } else if now > lastStepAt &+ probePeriod &+ settings.probeInterval {
            // The driver was stalled (a tick is due at least every period): what its timers say
            // now is stale, and the datagrams that waited meanwhile may hold the acks and
            // refutations that make them moot. Hold the timers for a probe timeout so that the
            // driver reads its socket first, and count the stall against its own health.
            holdTimersUntil = now &+ settings.probeTimeout
            adjustHealth(+1)
        }
        lastStepAt = max(lastStepAt, now)
        switch event {
        case .tick: break
        case .datagram(let message, let from): receive(message, from: from, now: now)
        case .fullState(let state, _): merge(state, now: now)
        case .join(let addresses): join(addresses, now: now)
        case .leave: leave(now: now)
        case .setVoter(let voter): setVoter(voter, now: now)
        case .setPrimary(let primary): adoptPrimary(primary, now: now)
        case .unreachable(let address): unreachable(address, now: now)
        case .forceLeave(let memberID): forceLeave(memberID, now: now)
        }
        claimAboutUs = false
        if now >= holdTimersUntil { runTimers(now: now) }
        nextDeadline = computeDeadline(now: now)
        return out
    }

    // MARK: Events

    mutating func receive(_ message: GossipMessage, from: String, now: UInt64) {
        guard message.sender != id else { return }
        refutedHere = false
        claimAboutUs = false
        cameBack = nil
        staleNews = []
        for update in message.updates { apply(update, now: now) }
        if !staleNews.isEmpty && now >= nextCorrectAt {
            // The sender spreads news older than ours: send ours back (at most once per probe
            // interval), so that a member that missed an update is corrected by the first
            // member it tells the old one to.
            nextCorrectAt = now &+ settings.probeInterval
            out.append(.send(to: from, GossipMessage(sender: id, kind: .gossip, updates: staleNews)))
        }
        staleNews = []
        let senderState = index[message.sender].map { entries[$0].member.state }
        if claimAboutUs, !hasLeft, now >= nextTellAt {
            // The sender holds us suspect, failed or gone (perhaps at an incarnation we have long
            // refuted, so that the refutation will not come again): answer with our alive news.
            // A ping's ack carries it (below); anything else gets a gossip datagram back.
            nextTellAt = now &+ settings.probeInterval
            if case .ping = message.kind {} else { send(.gossip, to: from, about: message.sender, now: now) }
        }
        var stranger = false
        if senderState == nil {
            // A member we never heard of. Most are newcomers whose news is still spreading: only
            // one heard again a while after the first time is taken for news we missed.
            if let first = strangers[message.sender] {
                stranger = now &- first >= settings.joinRetryInterval
            } else if strangers.count < 64 {
                strangers[message.sender] = now
            }
        }
        if let back = cameBack, now >= nextRepairAt, !hasLeft {
            // A member we ourselves declared failed is alive after all: a partition or a stall
            // kept us apart, so exchange full states with it.
            nextRepairAt = now &+ repairSpan
            counters.repairExchanges += 1
            out.append(.requestFullState(address: back))
        } else if now >= nextRepairAt && (refutedHere || stranger) && !hasLeft {
            // Someone held us suspect or failed, or we hear from a member we never heard of: a
            // partition, a stall or a lost update kept us apart, and what each of us learnt meanwhile (joins,
            // leaves, the primary) has stopped spreading. Exchange full states with the sender so
            // that both views, and through their gossip everyone's, are whole again (memberlist's
            // push-pull on rejoin). At most once per `repairSpan`.
            nextRepairAt = now &+ repairSpan
            counters.repairExchanges += 1
            out.append(.requestFullState(address: from))
        } else if senderState == .failed && now >= nextTellAt {
            // A member we hold failed speaks: tell it, so that it refutes (and, by the rule above,
            // exchanges full states with us). At most once per probe interval.
            nextTellAt = now &+ settings.probeInterval
            send(.gossip, to: from, about: message.sender, now: now)
        }
        switch message.kind {
        case .ping(let seq, let target):
            guard target == id else { return }
            send(.ack(seq: seq), to: from, about: message.sender, now: now)
        case .ack(let seq):
            if var p = probe, p.seq == seq, !p.acked {
                p.acked = true
                probe = p
                if !p.ofFailed { adjustHealth(p.direct ? -1 : 0) }
            }
            if let i = relays.firstIndex(where: { $0.seq == seq }) {
                let relay = relays.remove(at: i)
                send(.ack(seq: relay.originSeq), to: relay.originAddress, about: nil, now: now)
            }
        case .pingReq(let originSeq, let target, let targetAddress):
            guard !hasLeft, target != id else { return }
            seq &+= 1
            relays.append(Relay(
                seq: seq, originAddress: from, originSeq: originSeq,
                nackAt: now &+ settings.probeTimeout * 4 / 5, expiresAt: now &+ settings.probeInterval * 2))
            send(.ping(seq: seq, target: target), to: targetAddress, about: target, now: now)
        case .nack(let seq):
            if var p = probe, p.seq == seq {
                p.nacks += 1
                probe = p
            }
        case .gossip:
            break
        }
    }

    mutating func join(_ addresses: [String], now: UInt64) {
        seeds = addresses.filter { $0 != address }
        if !hasLeft { enqueue(aliveSelf, now: now) }
        for seed in seeds { out.append(.requestFullState(address: seed)) }
        counters.joinExchanges += seeds.count
        nextJoinAt = seeds.isEmpty ? nil : now &+ settings.joinRetryInterval
    }

    mutating func leave(now: UInt64) {
        guard !hasLeft else { return }
        hasLeft = true
        incarnation &+= 1
        probe = nil
        enqueue(.left(id: id, incarnation: incarnation), now: now)
        // Spread it at once rather than at the next gossip interval.
        gossip(now: now)
    }

    mutating func setVoter(_ voter: Bool, now: UInt64) {
        guard voter != self.voter, !hasLeft else { return }
        self.voter = voter
        incarnation &+= 1
        enqueue(aliveSelf, now: now)
    }

    mutating func adoptPrimary(_ candidate: GossipPrimary, now: UInt64) {
        guard candidate.isNewer(than: primary) else { return }
        primary = candidate
        enqueue(.primary(candidate), now: now)
        out.append(.primaryChanged(candidate))
    }

    /// Evidence that nothing listens at `address` (ICMP port unreachable): the member there is
    /// suspected at once, and its suspicion runs out after `evidenceSuspicionTimeout` unless it
    /// refutes.
    mutating func unreachable(_ address: String, now: UInt64) {
        guard !hasLeft, let memberID = byAddress[address], let i = index[memberID] else { return }
        let member = entries[i].member
        switch member.state {
        case .alive:
            suspect(memberID, incarnation: member.incarnation, from: id, now: now)
            shortenSuspicion(memberID, now: now)
        case .suspect:
            shortenSuspicion(memberID, now: now)
        case .failed, .left:
            break
        }
        if var p = probe, p.target == memberID { p.direct = false; probe = p }
    }

    mutating func shortenSuspicion(_ memberID: String, now: UInt64) {
        guard let i = index[memberID], var s = entries[i].suspicion else { return }
        s.deadline = min(s.deadline, now &+ settings.evidenceSuspicionTimeout)
        entries[i].suspicion = s
        nextSuspicionDeadline = min(nextSuspicionDeadline, s.deadline)
    }

    // MARK: Applying news

    var aliveSelf: GossipUpdate { .alive(id: id, incarnation: incarnation, address: address, voter: voter) }

    /// Applies one piece of news (SWIM §4.3's order of overriding, memberlist's strictness:
    /// `alive` only with a higher incarnation).
    mutating func apply(_ update: GossipUpdate, now: UInt64) {
        switch update {
        case .alive(let memberID, let inc, let addr, let isVoter):
            if memberID == id {
                // Someone speaks of an older life of ours at a higher incarnation: rise above it.
                if inc > incarnation && !hasLeft { refute(atLeast: inc, now: now) }
                return
            }
            guard addr.utf8.count <= 255 else { return }
            guard let i = index[memberID] else {
                add(GossipMember(id: memberID, address: addr, state: .alive, incarnation: inc, voter: isVoter), now: now)
                enqueue(update, now: now)
                return
            }
            guard inc > entries[i].member.incarnation else {
                if inc < entries[i].member.incarnation || entries[i].member.state != .alive { noteStale(i) }
                return
            }
            if entries[i].member.address != addr {
                byAddress[entries[i].member.address] = nil
                byAddress[addr] = memberID
            }
            entries[i].member.address = addr
            entries[i].member.voter = isVoter
            entries[i].member.incarnation = inc
            if entries[i].member.state == .failed && entries[i].declaredHere { cameBack = addr }
            setState(i, .alive, now: now)
            enqueue(update, now: now)
        case .suspect(let memberID, let inc, let from):
            if memberID == id {
                claimAboutUs = true
                if !hasLeft && inc >= incarnation { refute(atLeast: inc, now: now) }
                return
            }
            suspect(memberID, incarnation: inc, from: from, now: now)
        case .failed(let memberID, let inc, let from):
            if memberID == id {
                claimAboutUs = true
                if !hasLeft && inc >= incarnation { refute(atLeast: inc, now: now) }
                return
            }
            guard let i = index[memberID] else { return }
            guard inc >= entries[i].member.incarnation else { return noteStale(i) }
            switch entries[i].member.state {
            case .failed: return
            case .left: return noteStale(i)
            case .alive, .suspect: break
            }
            entries[i].member.incarnation = inc
            setState(i, .failed, now: now)
            enqueue(.failed(id: memberID, incarnation: inc, from: from), now: now)
        case .left(let memberID, let inc):
            if memberID == id {
                claimAboutUs = true
                if !hasLeft && inc >= incarnation { refute(atLeast: inc, now: now) }
                return
            }
            guard let i = index[memberID] else { return }
            guard inc >= entries[i].member.incarnation else { return noteStale(i) }
            guard entries[i].member.state != .left else { return }
            entries[i].member.incarnation = inc
            setState(i, .left, now: now)
            enqueue(update, now: now)
        case .primary(let p):
            adoptPrimary(p, now: now)
        }
    }

    /// News about member `i` older than what we hold (a lower incarnation, or anything but
    /// `left` about a member that left): the sender missed our news, which has perhaps stopped
    /// spreading. Noted, to be sent back to it (see `receive`).
    mutating func noteStale(_ i: Int) {
        guard staleNews.count < 8 else { return }
        let m = entries[i].member
        let news: GossipUpdate = switch m.state {
        case .alive: .alive(id: m.id, incarnation: m.incarnation, address: m.address, voter: m.voter)
        case .suspect: .suspect(id: m.id, incarnation: m.incarnation, from: id)
        case .failed: .failed(id: m.id, incarnation: m.incarnation, from: id)
        case .left: .left(id: m.id, incarnation: m.incarnation)
        }
        if !staleNews.contains(news) { staleNews.append(news) }
    }

    /// SWIM §4.3: raise our incarnation above a claim about us and say we are alive. Lifeguard
    /// §4.1: having to refute is a sign that we are slow, so health gets worse.
    mutating func refute(atLeast claimed: UInt64, now: UInt64) {
        incarnation = max(incarnation, claimed) &+ 1
        counters.refutations += 1
        refutedHere = true
        enqueue(aliveSelf, now: now)
        adjustHealth(+1)
    }

    /// `from` suspects `memberID` at `inc`: a new suspicion, or a confirmation of one.
    mutating func suspect(_ memberID: String, incarnation inc: UInt64, from: String, now: UInt64) {
        guard let i = index[memberID] else { return }
        guard inc >= entries[i].member.incarnation else { return noteStale(i) }
        switch entries[i].member.state {
        case .failed:
            return
        case .left:
            return noteStale(i)
        case .suspect:
            // Lifeguard §4.2: an independent confirmation shrinks the timeout; passed on, so that
            // others count it too.
            // (Checked in place: most suspicions heard are already counted, and copying the
            // suspicion out would copy its confirmers.)
            guard let count = entries[i].suspicion?.confirmers.count, count <= entries[i].suspicion!.expected,
                entries[i].suspicion?.confirmers.contains(from) == false
            else { return }
            entries[i].suspicion!.confirmers.append(from)
            let s = entries[i].suspicion!
            let deadline = max(now, min(s.deadline, s.start &+ suspicionTimeout(s)))
            entries[i].suspicion!.deadline = deadline
            nextSuspicionDeadline = min(nextSuspicionDeadline, deadline)
            enqueue(.suspect(id: memberID, incarnation: inc, from: from), now: now)
        case .alive:
            entries[i].member.incarnation = inc
            let minimum = suspicionMin
            let expected = max(0, min(settings.suspicionConfirmations, clusterSize - 2))
            var s = Suspicion(
                start: now, confirmers: [from], expected: expected, min: minimum,
                max: minimum &* settings.suspicionMaxMultiplier, deadline: 0)
            s.deadline = now &+ suspicionTimeout(s)
            entries[i].suspicion = s
            nextSuspicionDeadline = min(nextSuspicionDeadline, s.deadline)
            setState(i, .suspect, now: now)
            suspected.append(memberID)
            enqueue(.suspect(id: memberID, incarnation: inc, from: from), now: now)
        }
    }

    /// α·max(1, log10 N)·probeInterval.
    var suspicionMin: UInt64 {
        let scale = max(1.0, naturalLog(Double(clusterSize)) / naturalLog(10))
        return UInt64(Double(settings.suspicionMinMultiplier) * scale * Double(settings.probeInterval))
    }

    /// Lifeguard §4.2: max − (max − min)·log(C + 1)/log(K + 1), C the confirmations beyond the
    /// first suspicion, K those expected; min when K is 0.
    func suspicionTimeout(_ s: Suspicion) -> UInt64 {
        let confirmations = s.confirmers.count - 1
        guard s.expected > 0 else { return s.min }
        let fraction = naturalLog(Double(confirmations + 1)) / naturalLog(Double(s.expected + 1))
        let span = Double(s.max - s.min)
        let timeout = Double(s.max) - min(1, fraction) * span
        return max(s.min, UInt64(timeout))
    }

    /// A full state: every record as news, except that `failed` only raises a suspicion here
    /// (memberlist's rule: a member declares failure from its own timer, never from a bulk copy).
    mutating func merge(_ state: GossipFullState, now: UInt64) {
        for member in state.members {
            switch member.state {
            case .alive:
                apply(.alive(id: member.id, incarnation: member.incarnation, address: member.address, voter: member.voter), now: now)
            case .suspect, .failed:
                if member.id != id && index[member.id] == nil {
                    // Learn of it first, so that it can be suspected (the suspicion replaces
                    // the alive news in the queue).
                    apply(.alive(id: member.id, incarnation: member.incarnation, address: member.address, voter: member.voter), now: now)
                }
                apply(.suspect(id: member.id, incarnation: member.incarnation, from: state.sender), now: now)
            case .left:
                apply(.left(id: member.id, incarnation: member.incarnation), now: now)
            }
        }
        if let p = state.primary { adoptPrimary(p, now: now) }
    }

    // MARK: Members

    mutating func add(_ member: GossipMember, now: UInt64) {
        strangers[member.id] = nil
        if !departed.isEmpty { departed.removeAll { $0.id == member.id } }
        index[member.id] = entries.count
        entries.append(Entry(member: member, changedAt: now))
        byAddress[member.address] = member.id
        if member.state == .alive || member.state == .suspect { activeCount += 1 }
        // memberlist's trick: a newcomer joins the rest of this pass at a random place.
        let remaining = probeOrder.count - probePosition
        let at = probePosition + Int(rng.next(upperBound: UInt64(remaining + 1)))
        probeOrder.insert(member.id, at: at)
        out.append(.memberChanged(id: member.id, from: nil, to: member.state, incarnation: member.incarnation))
    }

    mutating func remove(_ i: Int) {
        let member = entries[i].member
        index[member.id] = nil
        if byAddress[member.address] == member.id { byAddress[member.address] = nil }
        if member.state == .alive || member.state == .suspect { activeCount -= 1 }
        let last = entries.count - 1
        if i != last {
            entries.swapAt(i, last)
            index[entries[i].member.id] = i
        }
        entries.removeLast()
        out.append(.memberChanged(id: member.id, from: member.state, to: nil, incarnation: member.incarnation))
    }

    /// An operator's word that `memberID`, failed, is gone for good (Serf's force-leave): it is
    /// held left at its incarnation and the news spreads (left overrides failed at an equal
    /// incarnation), so that no member reconnects to it or keeps it failed. A member alive or
    /// suspect is left alone (it would refute); so is this member.
    mutating func forceLeave(_ memberID: String, now: UInt64) {
        guard memberID != id else { return }
        if !departed.isEmpty { departed.removeAll { $0.id == memberID } }
        guard let i = index[memberID], entries[i].member.state == .failed else { return }
        let incarnation = entries[i].member.incarnation
        setState(i, .left, now: now)
        enqueue(.left(id: memberID, incarnation: incarnation), now: now)
    }

    mutating func setState(_ i: Int, _ state: GossipMemberState, now: UInt64) {
        let old = entries[i].member.state
        if state != .suspect { entries[i].suspicion = nil }
        guard old != state else { return }
        let wasActive = old == .alive || old == .suspect
        let isActive = state == .alive || state == .suspect
        if wasActive != isActive { activeCount += isActive ? 1 : -1 }
        entries[i].member.state = state
        entries[i].changedAt = now
        entries[i].declaredHere = false
        out.append(.memberChanged(id: entries[i].member.id, from: old, to: state, incarnation: entries[i].member.incarnation))
    }

    mutating func adjustHealth(_ delta: Int) {
        localHealth = min(settings.maxLocalHealth, max(0, localHealth + delta))
    }

    // MARK: Timers

    mutating func runTimers(now: UInt64) {
        if var p = probe {
            if !p.acked && !p.indirectSent && !p.ofFailed && now >= p.ackDeadline {
                p.indirectSent = true
                p.direct = false
                let relayIDs = randomMembers(settings.indirectChecks, excluding: p.target) { $0.state == .alive }
                if let target = index[p.target].map({ entries[$0].member }) {
                    for relayID in relayIDs {
                        guard let relay = index[relayID].map({ entries[$0].member }) else { continue }
                        send(.pingReq(seq: p.seq, target: target.id, targetAddress: target.address), to: relay.address, about: relayID, now: now)
                    }
                }
                p.expectedNacks = relayIDs.count
                probe = p
            }
            if now >= p.periodEnd {
                probe = nil
                if !p.acked && !p.ofFailed { probeFailed(p, now: now) }
            }
        }
        if !hasLeft && now >= nextProbeAt { startProbe(now: now) }
        if !relays.isEmpty { runRelays(now: now) }
        if !suspected.isEmpty && now >= nextSuspicionDeadline { runSuspicions(now: now) }
        if now >= nextGossipAt {
            nextGossipAt = now &+ settings.gossipInterval
            if !latest.isEmpty { gossip(now: now) }
        }
        if !hasLeft && now >= nextFullStateAt && now < lastFullStateAt &+ fullStateSpan() {
            // The cluster grew since the exchange was planned: the span is longer now.
            nextFullStateAt = lastFullStateAt &+ fullStateSpan()
        }
        if !hasLeft && now >= nextFullStateAt, now >= lastFullStateAt &+ fullStateSpan() {
            lastFullStateAt = now
            fullStateJitter = 0.5 + Double(rng.next() >> 11) / Double(1 << 53)
            nextFullStateAt = now &+ fullStateSpan()
            let picked = randomMembers(1, excluding: nil) { $0.state == .alive }
            if let target = picked.first, let i = index[target] {
                counters.periodicExchanges += 1
                out.append(.requestFullState(address: entries[i].member.address))
            }
        }
        if let at = nextJoinAt, now >= at {
            if activeCount == 0 && !hasLeft {
                for seed in seeds { out.append(.requestFullState(address: seed)) }
                counters.joinExchanges += seeds.count
                nextJoinAt = now &+ settings.joinRetryInterval
            } else {
                nextJoinAt = hasLeft ? nil : now &+ settings.joinRetryInterval
            }
        }
        if now >= nextReapAt {
            nextReapAt = now &+ reapInterval
            reap(now: now)
        }
        if !departed.isEmpty && now >= nextReconnectAt {
            nextReconnectAt = now &+ settings.reconnectInterval
            if !hasLeft { reconnect() }
        }
        if hasLeft && !leaveAnnounced && latest.isEmpty {
            leaveAnnounced = true
            out.append(.leaveComplete)
        }
    }

    /// Lifeguard §4.3: missing nacks mean the trouble is likely ours, so health gets worse by
    /// the number missing; with no relay to ask, by one. Then SWIM: suspect the target.
    mutating func probeFailed(_ p: Probe, now: UInt64) {
        adjustHealth(p.expectedNacks > 0 ? max(0, p.expectedNacks - p.nacks) : 1)
        guard let i = index[p.target], entries[i].member.state == .alive || entries[i].member.state == .suspect else { return }
        suspect(p.target, incarnation: entries[i].member.incarnation, from: id, now: now)
    }

    mutating func startProbe(now: UInt64) {
        let period = probePeriod
        nextProbeAt = now &+ period
        guard let target = nextProbeTarget(), let i = index[target] else { return }
        let member = entries[i].member
        seq &+= 1
        probe = Probe(
            target: target, seq: seq, ackDeadline: now &+ settings.probeTimeout &* UInt64(localHealth + 1),
            periodEnd: now &+ period, ofFailed: member.state == .failed)
        send(.ping(seq: seq, target: target), to: member.address, about: target, now: now)
    }

    /// SWIM §4.4: round robin over a random order, reshuffled at the end of each pass. Alive,
    /// suspect and failed members are probed (a failed one with one ping that tells it so);
    /// members that left are not.
    mutating func nextProbeTarget() -> String? {
        for _ in 0..<2 {
            while probePosition < probeOrder.count {
                let candidate = probeOrder[probePosition]
                probePosition += 1
                if let i = index[candidate], entries[i].member.state != .left { return candidate }
            }
            probeOrder = entries.compactMap { $0.member.state == .left ? nil : $0.member.id }
            probePosition = 0
            guard !probeOrder.isEmpty else { return nil }
            for j in stride(from: probeOrder.count - 1, to: 0, by: -1) {
                probeOrder.swapAt(j, Int(rng.next(upperBound: UInt64(j + 1))))
            }
        }
        return nil
    }

    mutating func runRelays(now: UInt64) {
        var j = 0
        while j < relays.count {
            if relays[j].expiresAt <= now {
                relays.remove(at: j)
                continue
            }
            if !relays[j].nacked && relays[j].nackAt <= now {
                relays[j].nacked = true
                send(.nack(seq: relays[j].originSeq), to: relays[j].originAddress, about: nil, now: now)
            }
            j += 1
        }
    }

    mutating func runSuspicions(now: UInt64) {
        var j = 0
        nextSuspicionDeadline = .max
        while j < suspected.count {
            let memberID = suspected[j]
            guard let i = index[memberID], let s = entries[i].suspicion, entries[i].member.state == .suspect else {
                suspected.remove(at: j)
                continue
            }
            if s.deadline <= now {
                suspected.remove(at: j)
                let inc = entries[i].member.incarnation
                setState(i, .failed, now: now)
                entries[i].declaredHere = true
                enqueue(.failed(id: memberID, incarnation: inc, from: id), now: now)
                continue
            }
            nextSuspicionDeadline = min(nextSuspicionDeadline, s.deadline)
            j += 1
        }
    }

    mutating func reap(now: UInt64) {
        strangers = strangers.filter { now &- $0.value < 10 &* settings.joinRetryInterval }
        departed.removeAll { now &- $0.forgottenAt >= settings.reconnectTimeout }
        var i = 0
        while i < entries.count {
            let e = entries[i]
            let limit: UInt64? = switch e.member.state {
            case .failed: settings.reapFailedAfter
            case .left: settings.forgetLeftAfter
            case .alive, .suspect: nil
            }
            if let limit, now &- e.changedAt >= limit {
                remove(i)
                if e.member.state == .failed && settings.reconnectMaxAddresses > 0 {
                    // Kept, to reconnect with: the other side of a partition is forgotten too.
                    if departed.isEmpty { nextReconnectAt = now &+ settings.reconnectInterval }
                    departed.removeAll { $0.id == e.member.id }
                    if departed.count >= settings.reconnectMaxAddresses { departed.removeFirst() }
                    departed.append(Departed(id: e.member.id, address: e.member.address, forgottenAt: now))
                }
                continue
            }
            i += 1
        }
    }

    /// The shortest time between two repair exchanges of this member: `joinRetryInterval`, times
    /// N over `fullStateScaleMembers` beyond that many members (a full state grows with N, so its
    /// bytes per member per second stay flat; and when a thousand members join at once, every one
    /// hears strangers, and exchanges at a fixed rate would swamp them all).
    var repairSpan: UInt64 {
        UInt64(Double(settings.joinRetryInterval) * sizeScale)
    }

    /// Serf's reconnect: a full-state exchange with one failed member forgotten, at random, with
    /// probability (forgotten ones) / (members alive or suspect, itself included). A side of a
    /// healed partition learns the other's members from it, and they this side's (the answer
    /// and their gossip spread both); a member truly gone costs a dial that fails.
    mutating func reconnect() {
        let chance = Double(departed.count) / Double(clusterSize)
        if chance < 1 && Double(rng.next() >> 11) / Double(1 << 53) >= chance { return }
        let target = departed[Int(rng.next(upperBound: UInt64(departed.count)))]
        counters.reconnectExchanges += 1
        out.append(.requestFullState(address: target.address))
    }

    /// N over `fullStateScaleMembers`, at least 1: what the intervals of exchanges, whose full
    /// states grow with N, are multiplied by.
    var sizeScale: Double { max(1.0, Double(clusterSize) / Double(max(1, settings.fullStateScaleMembers))) }

    var reapInterval: UInt64 { max(settings.probeInterval, min(settings.reapFailedAfter, settings.forgetLeftAfter) / 10) }

    /// The time between two periodic full-state exchanges: `fullStateInterval`, times N over
    /// `fullStateScaleMembers` beyond that many members, times a random factor in [0.5, 1.5)
    /// drawn for each, so that members do not exchange in step.
    func fullStateSpan() -> UInt64 {
        UInt64(Double(settings.fullStateInterval) * sizeScale * fullStateJitter)
    }

    func computeDeadline(now: UInt64) -> UInt64 {
        var deadline = latest.isEmpty ? nextReapAt : max(nextGossipAt, now)
        if !hasLeft {
            deadline = min(deadline, nextProbeAt, nextFullStateAt)
        }
        if let p = probe {
            deadline = min(deadline, p.periodEnd)
            if !p.acked && !p.indirectSent && !p.ofFailed { deadline = min(deadline, p.ackDeadline) }
        }
        for relay in relays { deadline = min(deadline, relay.nacked ? relay.expiresAt : relay.nackAt) }
        if !suspected.isEmpty { deadline = min(deadline, nextSuspicionDeadline) }
        if let at = nextJoinAt { deadline = min(deadline, at) }
        if !departed.isEmpty && !hasLeft { deadline = min(deadline, nextReconnectAt) }
        deadline = min(deadline, nextReapAt)
        return max(deadline, holdTimersUntil, now)
    }

    /// Up to `count` distinct members that pass `filter`, chosen at random, not `excluding`.
    mutating func randomMembers(_ count: Int, excluding: String?, _ filter: (GossipMember) -> Bool) -> [String] {
        guard count > 0, !entries.isEmpty else { return [] }
        var picked: [String] = []
        // Rejection sampling first: cheap when most members pass.
        var tries = 0
        while picked.count < count && tries < count * 4 {
            tries += 1
            let member = entries[Int(rng.next(upperBound: UInt64(entries.count)))].member
            if member.id != excluding && filter(member) && !picked.contains(member.id) { picked.append(member.id) }
        }
        guard picked.count < count else { return picked }
        var candidates = entries.compactMap { e -> String? in
            e.member.id != excluding && filter(e.member) && !picked.contains(e.member.id) ? e.member.id : nil
        }
        while picked.count < count && !candidates.isEmpty {
            picked.append(candidates.remove(at: Int(rng.next(upperBound: UInt64(candidates.count)))))
        }
        return picked
    }

    // MARK: Dissemination

    /// Queues `update` for piggybacking, replacing any older one about the same member.
    mutating func enqueue(_ update: GossipUpdate, now: UInt64) {
        let key = update.memberID ?? ""
        broadcastOrder &+= 1
        latest[key] = broadcastOrder
        if buckets.isEmpty { buckets.append([]) }
        buckets[0].append(Broadcast(key: key, update: update, size: GossipWire.size(of: update), order: broadcastOrder))
    }

    /// Takes updates for one datagram within `budget` bytes: fewest transmissions first, newest
    /// first among equals (memberlist's TransmitLimitedQueue order). Each taken one counts a
    /// transmission and is dropped at the limit.
    mutating func takeBroadcasts(budget: Int, skipping: String?) -> [GossipUpdate] {
        var taken: [GossipUpdate] = []
        var room = budget
        let limit = retransmitLimit
        var moved: [(Int, Broadcast)] = []
        var bucket = 0
        while bucket < buckets.count && room > 0 && taken.count < GossipWire.maxUpdates {
            var misfits: [Broadcast] = []
            while let b = buckets[bucket].last, room > 0, taken.count < GossipWire.maxUpdates {
                buckets[bucket].removeLast()
                guard latest[b.key] == b.order else { continue }
                if bucket >= limit {
                    latest[b.key] = nil
                    continue
                }
                if b.key == skipping && skipping != nil { misfits.append(b); continue }
                if b.size > room {
                    misfits.append(b)
                    if misfits.count >= 8 { break }
                    continue
                }
                room -= b.size
                taken.append(b.update)
                if bucket + 1 >= limit {
                    latest[b.key] = nil
                } else {
                    moved.append((bucket + 1, b))
                }
            }
            buckets[bucket].append(contentsOf: misfits.reversed())
            bucket += 1
        }
        for (to, b) in moved {
            while buckets.count <= to { buckets.append([]) }
            buckets[to].append(b)
        }
        while let last = buckets.last, last.isEmpty, buckets.count > 1 { buckets.removeLast() }
        return taken
    }

    /// Sends `kind` to `address` with as many updates as fit. A message to a member we hold
    /// suspect or failed carries that news first, so that it can refute at once.
    mutating func send(_ kind: GossipMessage.Kind, to address: String, about recipient: String?, now: UInt64) {
        var updates: [GossipUpdate] = []
        var room = settings.maxDatagramBytes - GossipWire.headerSize(sender: id, kind: kind)
        if claimAboutUs && !hasLeft {
            claimAboutUs = false
            updates.append(aliveSelf)
            room -= GossipWire.size(of: aliveSelf)
        }
        if let recipient, let i = index[recipient] {
            let m = entries[i].member
            let news: GossipUpdate? = switch m.state {
            case .suspect: .suspect(id: m.id, incarnation: m.incarnation, from: id)
            case .failed: .failed(id: m.id, incarnation: m.incarnation, from: id)
            case .alive, .left: nil
            }
            if let news {
                updates.append(news)
                room -= GossipWire.size(of: news)
            }
        }
        if room > 0 && !latest.isEmpty {
            updates += takeBroadcasts(budget: room, skipping: updates.isEmpty ? nil : recipient)
        }
        out.append(.send(to: address, GossipMessage(sender: id, kind: kind, updates: updates)))
    }

    /// Gossip (beside piggybacking): news to `gossipFanout` random members, alive or suspect,
    /// or failed (so that a member wrongly declared failed hears it and refutes).
    mutating func gossip(now: UInt64) {
        let targets = randomMembers(settings.gossipFanout, excluding: nil) { $0.state != .left }
        for target in targets {
            guard !latest.isEmpty, let i = index[target] else { break }
            send(.gossip, to: entries[i].member.address, about: target, now: now)
        }
    }
}

/// What happens to a member's core.
package enum GossipEvent: Sendable, Equatable {
    /// Time passed (deliver one by ``GossipCore/nextDeadline``).
    case tick
    /// A gossip datagram arrived from `from` (`host:port` as the socket saw it).
    case datagram(GossipMessage, from: String)
    /// A full state arrived over TCP (a reply to ours, or another member's push).
    case fullState(GossipFullState, from: String)
    /// Join through these addresses: a full-state exchange with each (retried while no other
    /// live member is known).
    case join([String])
    /// Leave for good: the member announces it and stops probing. ``GossipDirective/leaveComplete``
    /// says when the news has been sent as often as it is sent.
    case leave
    /// This member now votes, or no longer does (gossiped with a new incarnation).
    case setVoter(Bool)
    /// The primary as the election layer knows it here; kept if newer than what is known.
    case setPrimary(GossipPrimary)
    /// A datagram to `address` was refused (ICMP port unreachable): nothing listens there.
    case unreachable(address: String)
    /// An operator removed this failed member for good (`cluster force-leave`): it becomes left,
    /// and the news spreads. Nothing happens to a member alive or suspect.
    case forceLeave(String)
}

/// What a core asks its driver to do.
package enum GossipDirective: Sendable, Equatable {
    /// Send this datagram to `to` (`host:port`).
    case send(to: String, GossipMessage)
    /// Exchange full states with the member at `address` over TCP (see ``GossipCore``).
    case requestFullState(address: String)
    /// A member's state changed here (`from` nil: newly known; `to` nil: forgotten), for logs
    /// and metrics.
    case memberChanged(id: String, from: GossipMemberState?, to: GossipMemberState?, incarnation: UInt64)
    /// A newer primary became known.
    case primaryChanged(GossipPrimary)
    /// After a leave: the news that this member left has been sent as often as news is sent;
    /// the driver may stop.
    case leaveComplete
}

/// ceil(log10(n)) for n ≥ 1, in integers.
package func ceilLog10(_ n: Int) -> Int {
    var digits = 0
    var power = 1
    while power < n {
        power *= 10
        digits += 1
    }
    return max(1, digits)
}

/// The natural logarithm of a positive finite `x` (the core needs a few, and imports no libm).
func naturalLog(_ x: Double) -> Double {
    guard x > 0, x.isFinite else { return 0 }
    // x = m·2^e with m in [1, 2); ln m = 2·atanh((m − 1)/(m + 1)), the series converging fast.
    let e = Double(x.exponent)
    let m = x.significand
    let y = (m - 1) / (m + 1)
    let y2 = y * y
    var term = y
    var sum = 0.0
    var k = 1.0
    for _ in 0..<20 {
        sum += term / k
        term *= y2
        k += 2
    }
    return e * 0.693_147_180_559_945_3 + 2 * sum
}
