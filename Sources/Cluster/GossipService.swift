import ClusterCore
import Logging
import UV

/// The gossip membership layer on the node's loop (SWIM with Lifeguard; `GossipCore`,
/// PROTOCOL.md "Gossip membership", docs/membership.md): the core's driver. It owns the core, its
/// one timer, and the address targets it sends to; the datagrams go out on the node's UDP socket
/// (`DatagramChannel`, with the heartbeats'), the full-state exchanges on short TCP connections
/// (`LinkTable.exchange`). Loop thread only.
///
/// What the core says of members goes to the membership (`ClusterMembership.setGossipState`): a
/// member the gossip layer knows is added, its health is its gossip state, a member it forgets is
/// removed (voters and the members the application added excepted). The primary it spreads is
/// recorded as the membership's primary, which is how a member without links knows who leads.
final class GossipService {
    /// The runtime that owns this (a `lazy var` of it): see `PeerProtocol.node`.
    unowned(unsafe) let node: NodeRuntime
    private var logger: Logger { node.logger }
    /// Nil until `start` (the core's address is the listener's, known once it is bound).
    private(set) var core: GossipCore?
    private var timer: UVTimer?
    private var armedFor: UInt64?
    /// Parsed targets by address: members' addresses are few and stable.
    private var targets: [String: UVDatagramTarget] = [:]
    private var leaveDone: (() -> Void)?
    /// Counters (NodeStats shows them).
    private(set) var datagramsSent: UInt64 = 0
    private(set) var datagramsReceived: UInt64 = 0
    private(set) var datagramsRejected: UInt64 = 0
    private(set) var exchanges: UInt64 = 0
    /// Bytes sent: datagrams, and full states over TCP.
    private(set) var bytesSent: UInt64 = 0
    /// Datagrams held while a benchmark keeps this node deaf (`BenchHooks.makeDeaf`).
    private var held: [(bytes: [UInt8], source: String, host: String)] = []
    /// On a keyed cluster: what seals every datagram and full state this node sends, and checks
    /// every one it takes (`GossipSeal`). Nil on a cluster without a key.
    private var seal: GossipSeal?

    init(node: NodeRuntime) {
        self.node = node
    }

    var isRunning: Bool { core != nil }

    /// Starts the layer for this node at `address` (its listener, whose port the UDP socket must
    /// share: a member's one address serves both), and joins through `seeds` (their addresses).
    func start(address: String, seeds: [String]) throws(ClusterError) {
        guard node.options.gossip else { return }
        seal = node.options.keyring.map { GossipSeal(keys: $0.keys, clusterName: node.options.clusterName) }
        guard let port = node.datagrams.port, let bound = try? HostPort(parsing: address), Int(port) == bound.port else {
            throw .io("the gossip layer needs UDP on the listener's port \(address), which is taken")
        }
        var settings = GossipCore.Settings()
        settings.probeInterval = node.options.gossipProbeInterval.nanoseconds
        settings.probeTimeout = settings.probeInterval / 2
        settings.gossipInterval = settings.probeInterval / 2
        core = GossipCore(id: node.config.nodeID, address: address, voter: node.core.isVoter, settings: settings, seed: node.seed ^ 0x9e37_79b9)
        timer = try? UVTimer(loop: node.loop)
        let own = Set([address, node.config.nodeAddr])
        // A seed at port 0 is a placeholder (no seed): nothing can be dialled there.
        step(.join(seeds.filter { !own.contains($0) && (try? HostPort(parsing: $0))?.port != 0 }))
    }

    /// Stops the layer at once (no leave): the others find this member failed.
    func stop() {
        timer?.close()
        timer = nil
        armedFor = nil
        core = nil
        seal = nil
        targets.removeAll()
        leaveDone?()
        leaveDone = nil
    }

    /// Leaves for good: the others hear that this member left, and `done` runs once the news
    /// went out as often as news goes (or at once when the layer is off).
    func leave(_ done: @escaping () -> Void) {
        guard core != nil else { return done() }
        leaveDone = done
        step(.leave)
        // Gossip reaches a member with high probability, not certainty; a member that missed the
        // news would find this one gone and call it failed. Leaving is rare and the cluster's
        // size is known: every member is told once more, directly.
        guard let core else { return }
        let left = GossipMessage(sender: core.id, kind: .gossip, updates: [.left(id: core.id, incarnation: core.incarnation)])
        for member in core.members where member.state == .alive || member.state == .suspect {
            guard let target = target(member.address) else { continue }
            send(left, to: target)
        }
        node.outbox.flush()
    }

    // MARK: - Events

    /// Steps the core and carries out what it says.
    func step(_ event: GossipEvent) {
        guard core != nil else { return }
        if !held.isEmpty, let hooks = node.benchHooks, !hooks.isDeaf(node.config.nodeID, nowNs: node.hrtimeNs) {
            let backlog = held
            held = []
            for (bytes, source, host) in backlog { take(bytes, from: source, host: host) }
        }
        // In place: a copy of the core would copy its member table on the first write.
        let directives = core!.step(event, now: node.nowNs)
        for directive in directives { carryOut(directive) }
        arm()
        node.outbox.flush()
    }

    /// A gossip datagram (its first byte said so) from `source`. On a keyed cluster its seal is
    /// checked first; what fails is dropped, counted and logged (at most once a second a cause).
    func received(_ bytes: RawSpan, from source: UVDatagramSource) {
        guard core != nil else { return }
        let data = bytes.withUnsafeBytes { Array($0) }
        if let hooks = node.benchHooks, hooks.isDeaf(node.config.nodeID, nowNs: node.hrtimeNs) {
            if held.count < 100_000 { held.append((data, source.address.description, source.address.host)) }
            return
        }
        take(data, from: source.address.description, host: source.address.host)
    }

    private func take(_ data: [UInt8], from source: String, host: String) {
        guard core != nil else { return }
        let message: GossipMessage
        do throws(WireError) {
            if let seal, data.count > 1, data[1] & 1 != 0 {
                do throws(GossipSeal.Refusal) {
                    try seal.open(data)
                } catch {
                    node.stats.authenticationFailures &+= 1
                    return reject("a gossip datagram from \(source) is refused: \(error)", cause: "gossip seal \(host) \(error)")
                }
            }
            message = try GossipWire.decode(data, keyed: seal != nil)
        } catch {
            return reject("a gossip datagram from \(source) is refused: \(error)", cause: "gossip datagram \(host)")
        }
        datagramsReceived &+= 1
        step(.datagram(message, from: source))
    }

    /// A datagram this node sent to `address` was refused: nothing listens there.
    func refused(_ address: UVSocketAddress) {
        step(.unreachable(address: address.description))
    }

    /// A full-state frame that arrived on `link` (an exchange: see `LinkTable.exchange`).
    /// Returns the reply to send back, or nil (a reply needs none; the layer is off).
    /// On a keyed cluster a frame whose seal fails is a violation (the caller closes the
    /// connection, logging why).
    func fullStateArrived(_ frame: RawSpan, on link: Link) throws(WireError) -> [UInt8]? {
        let data = frame.withUnsafeBytes { Array($0) }
        if let seal, data.count > 5, data[5] & 4 != 0 {
            do throws(GossipSeal.Refusal) {
                try seal.open(data)
            } catch {
                // Counted as an authentication failure where the violation is handled.
                throw .unauthenticated("a full state \(error)")
            }
        }
        let state = try GossipWire.decodeFullState(data, keyed: seal != nil)
        guard let core else { return nil }
        exchanges &+= 1
        let from = core.member(state.sender)?.address ?? link.conn.peerAddress?.description ?? state.sender
        step(.fullState(state, from: from))
        guard !state.isReply, let now = self.core else { return nil }
        return fullStateFrame(now.fullState(isReply: true))
    }

    /// The election's word, for the gossip layer to spread: the primary as this node knows it.
    func primaryChanged(leader: String, term: UInt64, epoch: UInt64) {
        guard let core, (core.primary.map { GossipPrimary(term: term, epoch: epoch, leaderID: leader).isNewer(than: $0) } ?? true) else { return }
        step(.setPrimary(GossipPrimary(term: term, epoch: epoch, leaderID: leader)))
    }

    /// Whether this node votes (its own record says so, with a new incarnation).
    func voterChanged(_ voter: Bool) {
        guard let core, core.voter != voter else { return }
        step(.setVoter(voter))
    }

    // MARK: - Directives

    private func carryOut(_ directive: GossipDirective) {
        switch directive {
        case .send(let to, var message):
            guard let target = target(to) else { return }
            // The primary rides on every fourth ack besides its own gossip: a member that missed
            // the news (gossip reaches each with high probability, not certainty) has it again
            // within about four of its probes, at some 30 bytes a second per member.
            if case .ack(let seq) = message.kind, seq % 4 == 0, let primary = core?.primary,
               !message.updates.contains(.primary(primary)),
               GossipWire.size(of: message) + GossipWire.size(of: .primary(primary)) <= 1_400,
               message.updates.count < GossipWire.maxUpdates {
                message.updates.append(.primary(primary))
            }
            send(message, to: target)
        case .requestFullState(let address):
            guard let core, let hostPort = try? HostPort(parsing: address) else { return }
            node.links.exchange(with: hostPort, fullStateFrame(core.fullState(isReply: false)))
        case .memberChanged(let id, let from, let to, let incarnation):
            memberChanged(id, from: from, to: to, incarnation: incarnation)
        case .primaryChanged(let primary):
            node.benchHooks?.gossipPrimary(observer: node.config.nodeID, leader: primary.leaderID, term: primary.term, atNs: node.hrtimeNs)
            // A member with links hears the primary itself; one without, from here.
            if primary.leaderID != node.config.nodeID, node.membership.contains(primary.leaderID) {
                node.membership.recordGossipedPrimary(primary.leaderID, term: primary.term, epoch: primary.epoch)
            }
        case .leaveComplete:
            let done = leaveDone
            leaveDone = nil
            done?()
        }
    }

    /// Queues `message` for `target` on the node's UDP socket, sealed on a keyed cluster.
    private func send(_ message: GossipMessage, to target: UVDatagramTarget) {
        let seal = self.seal
        node.datagrams.append(to: target) { out in
            let start = out.count
            GossipWire.encode(message, keyed: seal != nil, into: &out)
            seal?.seal(&out, from: start)
        }
        datagramsSent &+= 1
        bytesSent &+= UInt64(GossipWire.size(of: message) + (seal != nil ? GossipSeal.trailerBytes : 0))
    }

    /// The FULL_STATE frame of `state`, sealed on a keyed cluster.
    private func fullStateFrame(_ state: GossipFullState) -> [UInt8] {
        var frame = GossipWire.encodeFullState(state, keyed: seal != nil)
        seal?.seal(&frame)
        bytesSent &+= UInt64(frame.count)
        return frame
    }

    /// A datagram dropped: counted, and logged at most once a second per cause.
    private func reject(_ text: @autoclosure () -> String, cause: String) {
        datagramsRejected &+= 1
        node.links.logLimited(.warning, cause, text())
    }

    /// The keyring changed: seal with its primary key from now on, and take any of its keys.
    func keyringChanged() {
        guard let seal, let keyring = node.options.keyring else { return }
        seal.use(keyring.keys)
    }

    private func memberChanged(_ id: String, from: GossipMemberState?, to: GossipMemberState?, incarnation: UInt64) {
        guard id != node.config.nodeID else { return }
        node.benchHooks?.gossipChanged(observer: node.config.nodeID, subject: id, state: to.map(\.description) ?? "forgotten", atNs: node.hrtimeNs)
        let membership = node.membership
        guard let to else {
            // Forgotten (reaped after failing, or long after leaving).
            membership.setGossipState(id, nil, incarnation: 0)
            if !node.core.configuration.voters.contains(id), membership.unlinkedMembers.contains(id) || membership.contains(id) {
                try? membership.removeNode(id)
            }
            logger.debug("gossip: forgot \(id)")
            return
        }
        if !membership.contains(id), to == .alive || to == .suspect, let member = core?.member(id) {
            do {
                try membership.addLearned(NodeInfo(id: id, addr: member.address, role: .replica), firstHand: true)
            } catch {
                // Forgotten on purpose (force-left), or too many members not linked yet.
            }
        }
        // A member the gossip layer vouches for is no longer provisional (`addLearned`).
        if to == .alive { membership.confirmLinked(id) }
        membership.setGossipState(id, to, incarnation: incarnation)
        switch (from, to) {
        case (nil, .alive): logger.info("gossip: \(id) joined")
        case (_, .failed): logger.warning("gossip: \(id) failed (incarnation \(incarnation))")
        case (_, .left): logger.info("gossip: \(id) left")
        case (.failed?, .alive), (.left?, .alive): logger.info("gossip: \(id) is back (incarnation \(incarnation))")
        case (_, .suspect): logger.debug("gossip: \(id) suspected (incarnation \(incarnation))")
        default: logger.debug("gossip: \(id) \(from.map(\.description) ?? "unknown") -> \(to)")
        }
    }

    private func target(_ address: String) -> UVDatagramTarget? {
        if let known = targets[address] { return known }
        guard let hostPort = try? HostPort(parsing: address), let target = try? UVDatagramTarget(host: hostPort.host, port: hostPort.port) else {
            return nil
        }
        // Bounded: members' addresses, and the seeds'.
        if targets.count > 4 * max(64, (core?.clusterSize ?? 0)) { targets.removeAll() }
        targets[address] = target
        return target
    }

    private func arm() {
        guard let core, let timer else { return }
        let due = core.nextDeadline
        if let armed = armedFor, armed <= due { return }
        armedFor = due
        let now = node.nowNs
        let delayMs = due > now ? max(1, (due - now + 999_999) / 1_000_000) : 0
        try? timer.start(timeoutMs: delayMs) { [anchor = node.anchor] in
            guard let gossip = anchor.runtime?.gossip else { return }
            gossip.armedFor = nil
            gossip.step(.tick)
        }
    }
}
