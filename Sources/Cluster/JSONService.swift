import ClusterCore
import Logging
import UV

/// The JSON-lines service on a node's port (PROTOCOL.md, "JSON lines"): status queries, the
/// seed's announcements and vote requests, and heartbeats from members that speak JSON. Loop
/// thread only.
///
/// What a client may do:
/// - `status`, `hello` (answered with this node's hello), `node_announcement` (the seed's
///   discovery, validated), `goodbye`;
/// - `vote_request`: answered under the network rules of the election core (a known voter only,
///   not while a live primary is heard, terms bounded), and, on a connection that identified
///   itself, only for its own id;
/// - `heartbeat`: only on a connection that identified itself with `hello` as that member, and
///   only while that member has no live binary link.
/// With a cluster key (`NodeOptions.keyring`) and without `allowUnauthenticatedJSON`, JSON is
/// read-only: `heartbeat` and `hello` are refused with an `error` line, `vote_request` with a
/// `vote_response` not granted that says why (what the seed's candidate reads), and
/// announcements must carry the cluster's name and a MAC under one of its keys.
/// A client's flood is bounded: at most `NodeOptions.maxLinesPerRead` of its lines, and what
/// fits in `NodeOptions.clientTimeSlice`, are handled per pass of the loop, and none while more than `NodeOptions.maxClientReplyBytes` of its
/// replies wait to be taken by the kernel; the rest of what was read is held and reading from it
/// pauses until the next pass (`LinkTable.continueNextPass`) or until its replies drain.
/// An unknown or unexpected message is answered with an `error` line; after
/// ``maxClientErrors`` such lines the connection is closed. A line that is not JSON or is too
/// long closes it at once (with an `error` line first).
final class JSONService {
    /// The runtime that owns this (a `lazy var` of it) and alone calls it: it cannot outlive the
    /// runtime. `unowned(unsafe)`, not `unowned`: every access would otherwise retain and release
    /// the runtime through its side table (it has weak references), a fifth of the CPU of a
    /// heartbeat in the mesh benchmark's profile.
    unowned(unsafe) let node: NodeRuntime
    private var logger: Logger { node.logger }

    /// Error lines a client gets before its connection is closed.
    static let maxClientErrors = 16

    init(node: NodeRuntime) {
        self.node = node
    }

    func received(_ bytes: RawSpan, on link: Link) {
        guard link.heldInput.isEmpty else {
            // Read before the pause took effect: after what is held, in order.
            bytes.withUnsafeBytes { link.heldInput.append(contentsOf: $0) }
            holdInput(link)
            return
        }
        let used = feed(bytes, on: link)
        guard used < bytes.byteCount, !link.isClosed else { return }
        link.heldInput = Wire.copyBytes(bytes.extracting(used..<bytes.byteCount))
        holdInput(link)
    }

    /// Handles the lines of `bytes` within this pass's bounds; returns the bytes taken.
    private func feed(_ bytes: RawSpan, on link: Link) -> Int {
        let maxLines = max(1, node.options.maxLinesPerRead)
        let replyLimit = node.outbox.clientLimit
        let outbox = node.outbox
        let deadlineNs = UVLoop.hrtimeNs() &+ max(1, node.options.clientTimeSlice.nanoseconds)
        var handled = 0
        // The lines of one read are handled at one instant: their `status` answers are the
        // same, encoded once (a status flood costs a decode per line, not an encode).
        statusReply = nil
        defer { statusReply = nil }
        do throws(WireError) {
            return try link.lines.feed(bytes, stoppingWhen: {
                handled >= maxLines || outbox.backlog(link) > replyLimit || (handled > 0 && UVLoop.hrtimeNs() >= deadlineNs)
            }) { line in
                guard !link.isClosed else { return }
                handled += 1
                handle(line, on: link)
            }
        } catch {
            node.stats.protocolErrors += 1
            close(link, "\(error)")
            return bytes.byteCount
        }
    }

    /// The encoded `status` answer for the rest of the read being handled (see `feed`); nil
    /// after any other request, which may have changed what it says.
    private var statusReply: [UInt8]?

    /// `link` holds input not handled yet: reading pauses, and the input waits for the next pass.
    private func holdInput(_ link: Link) {
        link.conn.pauseReading()
        node.links.continueNextPass(link)
    }

    /// A held client's next turn (the next pass of the loop, or its replies drained): handles
    /// what it holds within the bounds, then reads again once it holds nothing.
    func resume(_ link: Link) {
        guard !link.isClosed, link.kind == .json else { return }
        if !link.heldInput.isEmpty {
            if node.outbox.backlog(link) > node.outbox.clientLimit {
                // Its replies are not being read: wait until they drain.
                if !link.readingPaused {
                    if link.conn.writeQueueSize > node.outbox.clientLimit / 2 {
                        node.outbox.pauseReading(link)
                    } else {
                        node.links.continueNextPass(link)  // the buffer, written at this pass's end
                    }
                }
                return
            }
            let input = link.heldInput
            var used = 0
            node.handlingRead { now in
                link.lastHeardNs = now
                used = input.withUnsafeBytes { feed(RawSpan(_unsafeBytes: $0), on: link) }
            }
            guard !link.isClosed else { return }
            link.heldInput.removeFirst(min(used, link.heldInput.count))
            if !link.heldInput.isEmpty {
                holdInput(link)
                return
            }
        }
        if !link.readingPaused { link.conn.resumeReading() }
    }

    /// Sends an `error` line with `reason`, then closes the connection once it is written.
    func close(_ link: Link, _ reason: String) {
        logger.debug("closing JSON client \(link.description): \(reason)")
        node.outbox.append(JSONMessage.error(reason).encodeLine(), to: link)
        node.links.close(link)
    }

    /// Replies go out in the order of the requests: behind a reply still being made (a vote
    /// waiting for its write), they are held, up to the outbox's soft limit in bytes.
    private func reply(_ message: JSONMessage, on link: Link) {
        reply(line: message.encodeLine(), on: link)
    }

    private func reply(line: [UInt8], on link: Link) {
        if link.heldReplies.isEmpty {
            node.outbox.append(line, to: link)
        } else {
            hold(line, on: link)
        }
    }

    private func hold(_ bytes: [UInt8], on link: Link) {
        link.heldReplies.append(bytes)
        link.heldBytes += bytes.count
        if link.heldBytes > node.outbox.softLimit {
            link.heldReplies.removeAll()
            close(link, "too many requests while a vote is being made durable")
        }
    }

    /// A place for a reply not known yet; `fill` puts it there.
    private func holdReply(on link: Link) -> Int {
        link.heldReplies.append(nil)
        return link.heldRepliesBase + link.heldReplies.count - 1
    }

    private func fill(_ slot: Int, with message: JSONMessage, on link: Link) {
        let index = slot - link.heldRepliesBase
        guard !link.isClosed, link.heldReplies.indices.contains(index) else { return }
        let bytes = message.encodeLine()
        link.heldReplies[index] = bytes
        link.heldBytes += bytes.count
        var ready = 0
        while ready < link.heldReplies.count, let bytes = link.heldReplies[ready] {
            node.outbox.append(bytes, to: link)
            link.heldBytes -= bytes.count
            ready += 1
        }
        link.heldReplies.removeFirst(ready)
        link.heldRepliesBase += ready
        node.outbox.flush()
    }

    /// A client error: an `error` line, and the connection closed after too many.
    private func refuse(_ reason: String, on link: Link) {
        node.stats.protocolErrors += 1
        link.jsonErrors += 1
        if link.jsonErrors > Self.maxClientErrors {
            close(link, "too many errors; last: \(reason)")
        } else {
            reply(.error(reason), on: link)
        }
    }

    private func handle(_ line: RawSpan, on link: Link) {
        let message: JSONMessage
        do throws(WireError) {
            message = try JSONMessage.decode(line: line)
        } catch {
            if case .unknownMessageType = error {
                refuse("\(error)", on: link)
            } else {
                node.stats.protocolErrors += 1
                close(link, "\(error)")
            }
            return
        }
        if node.options.keyring != nil, !node.options.allowUnauthenticatedJSON {
            let reason = "this node requires the cluster key: \(message.messageType) is refused on JSON (peers link with binary frames "
                + "and a key; NodeOptions.allowUnauthenticatedJSON re-enables the seed's exchanges)"
            switch message {
            case .voteRequest(let request):
                // The seed's candidate reads one `vote_response` back, whatever comes: the
                // refusal is one, not granted, with the reason (an `error` line would reach its
                // code as a refusal with no reason).
                node.stats.protocolErrors += 1
                link.jsonErrors += 1
                guard link.jsonErrors <= Self.maxClientErrors else {
                    close(link, "too many errors; last: \(reason)")
                    return
                }
                reply(.voteResponse(VoteResponse(
                    voterID: node.config.nodeID, term: node.core.term, voteGranted: false, reason: reason,
                    preVote: request.preVote)), on: link)
                return
            case .heartbeat, .hello:
                refuse(reason, on: link)
                return
            default:
                break
            }
        }
        if case .status = message {} else { statusReply = nil }
        switch message {
        case .voteRequest(let request):
            // A JSON line only claims its candidate, and voters speak on their peer links: a vote
            // asked here is refused, and its term is not adopted (the seed's nodes, which ask so,
            // are members that do not vote).
            node.stats.voteRequestsReceived += 1
            reply(.voteResponse(VoteResponse(
                voterID: node.config.nodeID, term: node.core.term, voteGranted: false,
                reason: Self.jsonVoteRefusal(candidate: request.candidateID), epoch: node.core.epoch)), on: link)
        case .announcement(let announcement):
            reply(.nodeList(node.handleAnnouncement(announcement)), on: link)
        case .heartbeat(let hb):
            guard let identified = link.peerID else {
                refuse("identify with a hello line before sending heartbeats", on: link)
                return
            }
            guard hb.from == identified, let peer = node.links.peers[identified] else {
                refuse("heartbeat from \(hb.from) on a connection identified as \(identified)", on: link)
                return
            }
            guard !node.links.hasLiveLink(identified) else {
                refuse("\(identified) has a live peer link; heartbeats go there", on: link)
                return
            }
            guard !node.faults.blocks(identified) else { return }
            // A member speaking JSON (the seed's Go node) never links: its heartbeats confirm it.
            node.membership.confirmLinked(identified)
            if node.heartbeatArrived(hb, from: peer), hb.probe {
                reply(.heartbeat(node.peerProtocol.heartbeatMessage(ackSeq: hb.seq)), on: link)
            }
        case .status:
            let line = statusReply ?? JSONMessage.statusResponse(node.status()).encodeLine()
            statusReply = line
            reply(line: line, on: link)
            return
        case .transfer(let target):
            guard node.options.remoteTransfers || link.conn.peerAddress?.isLoopback == true else {
                refuse("transfer is accepted from this node's own host only", on: link)
                return
            }
            let slot = holdReply(on: link)
            let startedNs = node.nowNs
            node.transferLeadership(to: target) { [weak self] result in
                guard let self else { return }
                let tookMs = Double(node.nowNs &- startedNs) / 1e6
                let response: TransferResponse
                switch result {
                case .success(let leader): response = TransferResponse(success: true, leaderID: leader, tookMs: tookMs)
                case .failure(let error):
                    let reason: String
                    if case .transferFailed(let why) = error { reason = why } else { reason = error.description }
                    response = TransferResponse(success: false, leaderID: node.core.leaderID, error: reason, tookMs: tookMs)
                }
                fill(slot, with: .transferResponse(response), on: link)
            }
        case .voters(let request):
            voters(request, on: link)
        case .forceLeave(let id):
            guard node.options.remoteTransfers || link.conn.peerAddress?.isLoopback == true else {
                refuse("force_leave is accepted from this node's own host only", on: link)
                return
            }
            reply(.forceLeaveResponse(node.forceLeave(id)), on: link)
        case .keyring(let request):
            guard link.conn.peerAddress?.isLoopback == true else {
                refuse("keyring is accepted from this node's own host only", on: link)
                return
            }
            reply(.keyringResponse(node.keyringRequest(request)), on: link)
        case .hello(let hello):
            identify(link, as: hello.nodeID)
            reply(.hello(HelloMessage(nodeID: node.config.nodeID, nodeAddr: node.membership.localNode.addr, priority: node.config.priority)), on: link)
        case .goodbye:
            node.links.close(link)
        case .voteResponse, .nodeList, .statusResponse, .error, .transferResponse, .keyringResponse, .votersResponse,
             .forceLeaveResponse:
            refuse("unexpected message from a client", on: link)
        }
    }

    /// Why a JSON `vote_request` is refused.
    static func jsonVoteRefusal(candidate: String) -> String {
        "votes are granted only to voters, over their peer links (\(candidate) asked on a JSON line)"
    }

    /// A `voters` request: `list` from anyone; `add` and `remove` from this node's own host only
    /// (or anywhere, with `NodeOptions.remoteTransfers`), answered once committed.
    private func voters(_ request: VotersRequest, on link: Link) {
        func answer(success: Bool, error: String? = nil, tookMs: Double? = nil) -> JSONMessage {
            .votersResponse(VotersResponse(
                success: success, configuration: node.core.configuration, committed: node.core.configurationCommitted,
                leaderID: node.core.leaderID, error: error, tookMs: tookMs))
        }
        let change: VoterChange
        switch (request.op, request.nodeID) {
        case ("list", _):
            reply(answer(success: true), on: link)
            return
        case ("add", let id?): change = .add(id)
        case ("remove", let id?): change = .remove(id)
        case ("add", nil), ("remove", nil):
            reply(answer(success: false, error: "\(request.op) needs \"node_id\""), on: link)
            return
        default:
            refuse("unknown voters op \"\(request.op)\" (list, add, remove)", on: link)
            return
        }
        guard node.options.remoteTransfers || link.conn.peerAddress?.isLoopback == true else {
            refuse("voter changes are accepted from this node's own host only", on: link)
            return
        }
        let slot = holdReply(on: link)
        let startedNs = node.nowNs
        node.changeVoters(change) { [weak self] result in
            guard let self else { return }
            let tookMs = Double(node.nowNs &- startedNs) / 1e6
            switch result {
            case .success: fill(slot, with: answer(success: true, tookMs: tookMs), on: link)
            case .failure(let error):
                let reason: String
                if case .voterChangeFailed(let why) = error { reason = why } else { reason = error.description }
                fill(slot, with: answer(success: false, error: reason, tookMs: tookMs), on: link)
            }
        }
    }

    /// A client's `hello` identifies its connection as a member, which lets it send that
    /// member's heartbeats; not while the member has a live binary link, and only once.
    private func identify(_ link: Link, as id: String) {
        guard link.peerID == nil else { return }
        guard id != node.config.nodeID, node.links.peers[id] != nil else {
            let why = id == node.config.nodeID ? "\(id) is this node" : "\(id) is not a member of this node's cluster"
            refuse("\(why); this connection stays anonymous", on: link)
            return
        }
        if node.links.hasLiveLink(id) {
            refuse("\(id) has a live peer link; this connection stays anonymous", on: link)
            return
        }
        link.peerID = id
    }
}
