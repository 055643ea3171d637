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
        do throws(WireError) {
            try link.lines.feed(bytes) { line in
                guard !link.isClosed else { return }
                handle(line, on: link)
            }
        } catch {
            node.stats.protocolErrors += 1
            close(link, "\(error)")
        }
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
        if link.heldReplies.isEmpty {
            node.outbox.append(message.encodeLine(), to: link)
        } else {
            hold(message.encodeLine(), on: link)
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
        switch message {
        case .voteRequest(var request):
            // A JSON line only claims its candidate: it never skips the lease as a transfer.
            request.transfer = false
            if let identified = link.peerID, identified != request.candidateID {
                refuse("vote request for \(request.candidateID) on a connection identified as \(identified)", on: link)
                return
            }
            // A grant is answered once it is durable; the replies to later lines wait behind it.
            let slot = holdReply(on: link)
            node.answerVoteRequest(request, vouched: false) { [weak self] response in
                self?.fill(slot, with: .voteResponse(response), on: link)
            }
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
            if node.heartbeatArrived(hb, from: peer), hb.probe {
                reply(.heartbeat(node.peerProtocol.heartbeatMessage(ackSeq: hb.seq)), on: link)
            }
        case .status:
            reply(.statusResponse(node.status()), on: link)
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
        case .voteResponse, .nodeList, .statusResponse, .error, .transferResponse, .keyringResponse:
            refuse("unexpected message from a client", on: link)
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
