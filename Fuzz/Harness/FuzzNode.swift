import Cluster
import ClusterCore
import Foundation
import Logging
import UV

/// What one connection did on the fuzz node, and what was wrong with it.
struct ConnectionReport: Sendable {
    var problems: [String] = []
    /// The runtime closed the connection before the input ended (a violation, a goodbye, a
    /// stranger, the hard limit).
    var closedByRuntime = false
    /// Everything the runtime wrote to the connection, and how many frames or lines that is.
    var written: [UInt8] = []
    var replies = 0
    /// The most bytes the connection ever had queued, and how often the runtime paused reading.
    var maxQueued = 0
    var pauses = 0
    /// The election state or the membership before and after, if they differ.
    var stateChange: (before: ClusterState, after: ClusterState)?
    var stateChanged: Bool { stateChange != nil }
}

/// The node the fuzzer talks to: one real runtime (`ElectionManager`), made once per process,
/// listening on 127.0.0.1 port 0 and running on a loop of its own. Its members are `localID` and
/// `members`, which have no address: nobody is dialled, so only the input reaches the node. Its
/// timers are hours long (nothing but the input changes its state while an input runs, and an
/// input runs whole in one pass of the loop), and its write limits small, so that inputs of a
/// few KiB reach them. A client's lines are not bounded per pass (`maxLinesPerRead`,
/// `clientTimeSlice`): there is one pass; its unread replies are (`maxClientReplyBytes`, the soft limit here).
final class FuzzNode: Sendable {
    static let localID = "fuzz-node"
    /// The other members: the ids the seeds use (`n9` is a stranger's id).
    static let members: Set<String> = ["n1", "n2"]
    static let softLimit = 2048
    static let hardLimit = 8192

    static let shared = FuzzNode()

    let loop: UVLoop
    let manager: ElectionManager
    let membership: ClusterMembership

    init() {
        do {
            loop = try UVLoop(name: "fuzz-node")
            membership = ClusterMembership(localNodeID: Self.localID, localAddr: "127.0.0.1:0")
            for id in Self.members.sorted() { try membership.addNode(NodeInfo(id: id, addr: "")) }
            let config = ClusterConfig(
                nodeID: Self.localID, nodeAddr: "127.0.0.1:0", electionTimeout: .seconds(7200), heartbeatInterval: .seconds(3600))
            var options = NodeOptions(
                maxConnections: 16, helloTimeout: .seconds(3600), reconnectBackoffBase: .seconds(3600),
                reconnectBackoffMax: .seconds(3600), maxQueuedBytes: Self.softLimit, maxQueuedBytesHard: Self.hardLimit,
                clientIdleTimeout: .seconds(3600), randomSeed: 1,
                logger: Logger(label: "fuzz", factory: { _ in DiscardingLogHandler() }), loop: loop)
            options.maxLinesPerRead = .max
            options.clientTimeSlice = .seconds(3600)
            manager = ElectionManager(config: config, membership: membership, options: options)
            try manager.start()
        } catch {
            fatalError("cannot start the fuzz node: \(error)")
        }
    }

    /// Runs one connection on the node's loop (see `runOnLoop`).
    func run(reads: [[UInt8]]) -> ConnectionReport {
        let node = self
        return loop.executeAndWait { node.runOnLoop(reads: reads) }
            ?? ConnectionReport(problems: ["the fuzz node's loop has stopped"])
    }

    /// One connection, start to end, in one pass of the loop: accepted as the listener accepts
    /// one, its reads delivered in order through the read callback the runtime gave it (the
    /// peer draining what it was sent whenever the runtime paused reading), then the end of the
    /// stream if the runtime has not closed it, then the close completed. Checks on the way:
    /// - the link table holds the link while it is open and lets go of it as soon as the runtime
    ///   closes it, and is back to its size before once the connection is closed; nothing in the
    ///   runtime holds the connection after that (no link is left behind);
    /// - an open connection never has more than the hard limit queued, and never more than the
    ///   hard limit and one frame; nothing is written after the close began;
    /// - every reply decodes (frames or JSON lines by the connection's kind; a stranger gets none).
    /// The cluster state before and after goes into the report if it changed, for `checkState`.
    /// Announced nodes are removed afterwards, so that every input meets the same membership.
    func runOnLoop(reads: [[UInt8]]) -> ConnectionReport {
        var report = ConnectionReport()
        func problem(_ text: String) {
            if report.problems.count < 8 { report.problems.append(text) }
        }
        let before = ClusterState(manager, membership)
        let baseline = manager.openLinkCount
        weak var released: FakeConnection?
        do {
            let conn = FakeConnection()
            released = conn
            drive(conn, reads: reads, baseline: baseline, into: &report)
        }
        if released != nil { problem("the runtime still holds the connection once it is closed") }

        let after = ClusterState(manager, membership)
        if after != before { report.stateChange = (before, after) }
        for id in after.nodes.keys where id != Self.localID && !Self.members.contains(id) {
            try? membership.removeNode(id)
        }
        return report
    }

    /// The connection's life on the node, with the checks on the link table, the queue and the
    /// replies (see `runOnLoop`).
    private func drive(_ conn: FakeConnection, reads: [[UInt8]], baseline: Int, into report: inout ConnectionReport) {
        func problem(_ text: String) {
            if report.problems.count < 8 { report.problems.append(text) }
        }
        manager.accept(conn)
        if manager.openLinkCount != baseline + 1 || !conn.isReading {
            problem("the accepted connection is not in the link table (\(manager.openLinkCount) links, \(baseline) before) or not reading")
        }
        let kind = reads.first { !$0.isEmpty }.map { Wire.classify(firstByte: $0[0]) }
        for read in reads where !read.isEmpty {
            if conn.closeRequested { break }
            if !conn.isReading {
                drainUntilReading(conn)
                // (What the runtime held of earlier reads may have closed the connection.)
                if conn.closeRequested { break }
                if !conn.isReading { problem("reading stays paused after the peer read everything") }
            }
            conn.deliver(read)
            if conn.closeRequested {
                if manager.openLinkCount != baseline { problem("the runtime closed the connection but keeps its link") }
            } else if conn.queued > Self.hardLimit {
                problem("an open connection has \(conn.queued) bytes queued, over the hard limit \(Self.hardLimit)")
            }
        }
        // The peer reads on: what the runtime still holds of the input is handled.
        if !conn.closeRequested && !conn.isReading {
            drainUntilReading(conn)
            if !conn.closeRequested && !conn.isReading { problem("reading stays paused after the peer read everything") }
        }
        report.closedByRuntime = conn.closeRequested
        if !conn.closeRequested {
            conn.end()
            if !conn.closeRequested { problem("the end of the stream left the connection open") }
        }
        if manager.openLinkCount != baseline { problem("\(manager.openLinkCount) links after the close, \(baseline) before") }
        conn.drain()
        conn.finishClose()
        if manager.openLinkCount != baseline { problem("\(manager.openLinkCount) links once closed, \(baseline) before") }
        if conn.writesAfterClose > 0 { problem("\(conn.writesAfterClose) writes after the close began") }
        if conn.maxQueued > Self.hardLimit + 4 + Wire.maxFrameBytes {
            problem("\(conn.maxQueued) bytes queued at once, more than the hard limit and one frame")
        }
        report.written = conn.written
        report.maxQueued = conn.maxQueued
        report.pauses = conn.pauses
        let replies = checkReplies(conn.written, kind: kind)
        report.replies = replies.count
        for p in replies.problems { problem(p) }
    }

    /// The peer reads everything it was sent, again each time that makes the runtime handle
    /// more of what it holds and answer (a client's unread replies are bounded, so a read's
    /// requests are answered in steps), until the runtime reads again; at most 100,000 steps.
    private func drainUntilReading(_ conn: FakeConnection) {
        var steps = 0
        while !conn.isReading && !conn.closeRequested && steps < 100_000 {
            let before = conn.written.count
            conn.drain()
            steps += 1
            if conn.written.count == before { break }
        }
    }

    /// What may change on one connection. The election state (term, vote, epochs, leader, role)
    /// only when the input names a member as its sender (`claims`: a hello, a heartbeat, a vote
    /// request's candidate), and then the vote and the leader only go to such a member; the
    /// voters only then too (a voter's CONFIG); a node of the membership only when the input names it as sender or
    /// announces it (its address and priority never), except that a member's claim may record
    /// another node as a replica; a new node only as announced, as a replica.
    func checkState(before: ClusterState, after: ClusterState, claims: Set<String>, announced: [String: Set<String>]) -> [String] {
        var problems: [String] = []
        let members = claims.intersection(Self.members)
        if after.voters != before.voters, members.isEmpty {
            // A voter's CONFIG may carry a newer configuration (a member's link relays it); a
            // connection that names no member changes none.
            problems.append("a connection naming no member changed the voters from \(before.voters) to \(after.voters)")
        }
        if members.isEmpty {
            if after.election != before.election {
                problems.append("a connection naming no member changed the election state from \(before.election) to \(after.election)")
            }
            if after.nodes[Self.localID] != before.nodes[Self.localID] {
                problems.append("a connection naming no member changed this node from \(before.nodes[Self.localID]!) to \(after.nodes[Self.localID]!)")
            }
        } else {
            if let vote = after.election.votedFor, vote != before.election.votedFor, !members.contains(vote) {
                problems.append("the vote went to \(vote), which the input does not name")
            }
            if let leader = after.election.leaderID, leader != before.election.leaderID, !members.contains(leader) {
                problems.append("the leader became \(leader), which the input does not name")
            }
        }
        for (id, old) in before.nodes where id != Self.localID {
            guard let new = after.nodes[id] else {
                problems.append("\(id) was removed")
                continue
            }
            if claims.contains(id) || announced[id] != nil {
                if new.addr != old.addr || new.priority != old.priority { problems.append("\(id) changed from \(old) to \(new)") }
            } else {
                var demoted = old
                if !members.isEmpty { demoted.role = .replica }
                if new != old && new != demoted { problems.append("\(id), which the input does not name, changed from \(old) to \(new)") }
            }
        }
        for (id, new) in after.nodes where before.nodes[id] == nil {
            if !(announced[id]?.contains(new.addr) ?? false) || new.role != .replica {
                problems.append("\(new) was added, not as announced")
            }
        }
        return problems
    }
}

/// The cluster state a stranger must not change: the election core's, and the membership.
struct ClusterState: Equatable, Sendable {
    struct Election: Equatable, Sendable, CustomStringConvertible {
        var term: UInt64
        var votedFor: String?
        var epoch: UInt64
        var fencingEpoch: UInt64
        var leaderID: String?
        var state: ElectionState
        var membershipEpoch: UInt64

        var description: String {
            "term \(term), vote \(votedFor ?? "none"), epoch \(epoch), fencing epoch \(fencingEpoch), leader \(leaderID ?? "none"), \(state), membership epoch \(membershipEpoch)"
        }
    }

    var election: Election
    var voters: Set<String>
    /// The members by id; the local node's `lastSeen` (always now) left out.
    var nodes: [String: NodeInfo]

    init(_ manager: ElectionManager, _ membership: ClusterMembership) {
        let core = manager.electionCore
        election = Election(
            term: core.term, votedFor: core.votedFor, epoch: core.epoch, fencingEpoch: core.fencingEpoch,
            leaderID: core.leaderID, state: core.state, membershipEpoch: membership.epoch)
        voters = core.voters
        var nodes: [String: NodeInfo] = [:]
        for node in membership.allNodes { nodes[node.id] = node }
        nodes[membership.localNodeID]?.lastSeen = Date(timeIntervalSince1970: 0)
        self.nodes = nodes
    }
}

/// The replies on a connection of `kind`, decoded as its peer would: whole frames on a binary
/// connection (the first a hello or a goodbye, every hello this node's), whole JSON lines of the
/// protocol's limit on a JSON one, nothing to a stranger. Returns how many, and what is wrong.
func checkReplies(_ written: [UInt8], kind: WireKind?) -> (count: Int, problems: [String]) {
    var problems: [String] = []
    var count = 0
    switch kind {
    case .binary:
        var decoder = FrameDecoder()
        var frames: [WireFrame] = []
        do throws(WireError) {
            try decoder.feed(written) { frame in frames.append(frame) }
        } catch {
            problems.append("the replies do not decode as frames: \(error) after \(frames.count)")
        }
        if decoder.bufferedByteCount > 0 { problems.append("the replies end in \(decoder.bufferedByteCount) bytes of an unfinished frame") }
        count = frames.count
        switch frames.first {
        case nil, .hello?, .goodbye?: break
        case let first?: problems.append("the first reply is a \(first.type), not a hello or a goodbye")
        }
        for case .hello(let hello) in frames where hello.nodeID != FuzzNode.localID {
            problems.append("a hello from \(hello.nodeID) among the replies")
        }
    case .json:
        var splitter = LineSplitter()
        do throws(WireError) {
            try splitter.feed(written) { line in
                count += 1
                do throws(WireError) {
                    _ = try JSONMessage.decode(line: line)
                } catch {
                    problems.append("a reply line does not decode: \(error): \(String(decoding: Wire.copyBytes(line), as: UTF8.self))")
                }
            }
        } catch {
            problems.append("the replies do not split into lines: \(error)")
        }
        if splitter.bufferedByteCount > 0 { problems.append("the replies end in \(splitter.bufferedByteCount) bytes of an unfinished line") }
    case .http:
        // One response (a scrape: this node has no exporter, so 404, or 400/405/431), then close.
        let text = String(decoding: written, as: UTF8.self)
        if !written.isEmpty {
            count = 1
            if !text.hasPrefix("HTTP/1.1 ") || !text.contains("\r\n\r\n") || !text.contains("Connection: close\r\n") {
                problems.append("an HTTP reply that is not one whole response: \(text.prefix(120))")
            }
        }
    case .stranger, nil:
        if !written.isEmpty { problems.append("\(written.count) bytes written to a connection of no kind") }
    }
    return (count, problems)
}

/// Logs nothing, at every level: the runtime still builds every message, so that code is run too.
struct DiscardingLogHandler: LogHandler {
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {}
}
