import Cluster
import Foundation
import Testing
import UV

/// A node on port 0 (it owns its port: no reserve-and-release race) whose membership names
/// `members` (id → address; unreachable addresses are fine: the node dials and backs off).
func soloNode(
    _ id: String = "n1", members: [String: String] = [:], electionTimeout: Duration = .seconds(1),
    heartbeat: Duration = .milliseconds(50), autoFailover: Bool = false, options: NodeOptions = NodeOptions(logger: quietLogger)
) throws -> (ElectionManager, Int) {
    let membership = ClusterMembership(localNodeID: id, localAddr: "127.0.0.1:0")
    for (member, addr) in members { try membership.addNode(NodeInfo(id: member, addr: addr)) }
    let config = ClusterConfig(
        nodeID: id, nodeAddr: "127.0.0.1:0", seedNodes: autoFailover ? ["127.0.0.1:1"] : [],
        electionTimeout: electionTimeout, heartbeatInterval: heartbeat,
        minQuorumSize: 1, enableAutoFailover: autoFailover, voteRequestTimeout: electionTimeout)
    let node = ElectionManager(config: config, membership: membership, options: options)
    try node.start()
    return (node, node.listenAddress!.port)
}

/// An address nothing listens on (dials to it are refused at once).
let nowhere = "127.0.0.1:1"

/// Each defect of issue 6 that lives in the runtime, named for the defect; each failed on the
/// runtime before the fix.
@Suite("Runtime defects", .timeLimit(.minutes(1)))
struct RuntimeDefectTests {
    // #12: votes and heartbeats are bound to who sent them.

    @Test("a vote response on a peer's link that names another voter is a violation, and forged votes do not elect")
    func forgedVoteResponsesDoNotElect() async throws {
        let members = ["f": nowhere, "x": nowhere, "y": nowhere, "z": nowhere]
        let (node, port) = try soloNode(members: members, electionTimeout: .seconds(30))  // no silence timeout under load
        defer { try? node.stop() }
        let fake = try await WireClient.connect(port: port)
        fake.hello(as: "f")
        #expect(await fake.wait(timeout: .seconds(5)) { $0.frames.contains { if case .hello = $0 { true } else { false } } })
        try node.startElection()
        let term = node.currentTerm
        // Five voters: a quorum is three. f grants, and forges grants from x and y.
        for voter in ["f", "x", "y"] {
            let response = VoteResponse(voterID: voter, term: term, voteGranted: true)
            fake.sendFrame { try Wire.encodeVoteResponse(response, into: &$0) }
        }
        #expect(await fake.wait(timeout: .seconds(5)) { $0.closed })
        #expect(fake.current.frames.contains(.goodbye("malformed frame: vote response from x on the link of f")) ||
                fake.current.frames.contains { if case .goodbye(let r) = $0 { r.contains("vote response from x") } else { false } })
        #expect(node.state != .leader)
    }

    @Test("a JSON heartbeat from a connection that has not identified itself as that member is refused")
    func anonymousJSONHeartbeatIsRefused() async throws {
        let (node, port) = try soloNode(members: ["ghost": nowhere])
        defer { try? node.stop() }
        let client = try await WireClient.connect(port: port, json: true)
        client.send(line: #"{"message_type":"heartbeat","node_id":"ghost","seq":7,"epoch":5,"term":9,"lsn":42,"role":2}"#)
        #expect(await client.wait(timeout: .seconds(5)) { !$0.lines.isEmpty })
        #expect(client.current.lines.first?.contains("identify with a hello line") == true)
        let ghost = try node.membership.node("ghost")
        #expect(ghost.lastLSN == 0 && ghost.term == 0 && ghost.role == .replica)
        #expect(node.currentTerm == 0)
    }

    @Test("a hello naming a member whose link is live does not take that link over")
    func helloDoesNotTakeOverALiveLink() async throws {
        let (node, port) = try soloNode(members: ["f": nowhere], electionTimeout: .seconds(30), heartbeat: .milliseconds(20))
        defer { try? node.stop() }
        let real = try await WireClient.connect(port: port)
        real.hello(as: "f")
        real.heartbeat(as: "f", seq: 1)
        #expect(await real.wait(timeout: .seconds(5)) { $0.frames.contains { if case .heartbeat = $0 { true } else { false } } })
        let impostor = try await WireClient.connect(port: port)
        impostor.hello(as: "f")
        #expect(await impostor.wait(timeout: .seconds(5)) { $0.closed })
        #expect(impostor.current.frames.contains(.goodbye("duplicate connection")))
        // The real link is still there and still carries heartbeats.
        let before = real.current.frames.count
        real.heartbeat(as: "f", seq: 2)
        #expect(await real.wait(timeout: .seconds(5)) { $0.frames.count > before + 1 })
        #expect(!real.current.closed)
        #expect(node.stats.peersConnected == 1)
    }

    // #7: idle and dead connections hold slots.

    @Test("a peer link silent for an election timeout is replaced, and the peer can link again")
    func silentPeerLinkIsReplaced() async throws {
        let (node, port) = try soloNode(members: ["f": nowhere], electionTimeout: .milliseconds(300), heartbeat: .milliseconds(30))
        defer { try? node.stop() }
        let halfOpen = try await WireClient.connect(port: port)
        halfOpen.hello(as: "f")
        #expect(await halfOpen.wait(timeout: .seconds(5)) { $0.frames.contains { if case .hello = $0 { true } else { false } } })
        // Say nothing more, as a rebooted peer's dead socket would: the node closes it.
        #expect(await halfOpen.wait(timeout: .seconds(5)) { $0.closed })
        #expect(halfOpen.current.frames.contains(.goodbye("silent for an election timeout")))
        let rebooted = try await WireClient.connect(port: port)
        rebooted.hello(as: "f")
        // The node answers with its hello (it took the new link) and a heartbeat on it; the new
        // link may in turn be closed as silent later, since this fake never heartbeats.
        #expect(await rebooted.wait(timeout: .seconds(5)) { $0.frames.contains { if case .hello = $0 { true } else { false } } })
        #expect(!rebooted.current.frames.contains(.goodbye("duplicate connection")))
        #expect(node.stats.peerLinksEstablished == 2)
    }

    @Test("an idle JSON client is disconnected after clientIdleTimeout")
    func idleJSONClientIsDisconnected() async throws {
        var options = NodeOptions(logger: quietLogger)
        options.clientIdleTimeout = .milliseconds(200)
        let (node, port) = try soloNode(options: options)
        defer { try? node.stop() }
        let client = try await WireClient.connect(port: port, json: true)
        client.send(line: #"{"message_type":"status"}"#)
        #expect(await client.wait(timeout: .seconds(5)) { !$0.lines.isEmpty })
        #expect(await client.wait(timeout: .seconds(5)) { $0.closed })
        #expect(client.current.lines.last?.contains("idle") == true)
        #expect(node.stats.connectionsTimedOut == 1)
    }

    @Test("a dialled peer that accepts but never says hello is closed after helloTimeout")
    func dialledPeerWithoutHelloIsClosed() async throws {
        // A listener that accepts and says nothing.
        let loop = try UVLoop(name: "mute")
        defer { loop.shutdown() }
        let closed = UVLocked(0)
        let mutePort = loop.executeAndWait { () -> Int in
            let listener = try! UVTCPListener(loop: loop, host: "127.0.0.1", port: 0) { conn in
                conn.onClose = { closed.withLock { $0 += 1 } }
                try? conn.startReading(onRead: { _ in }, onEnd: { _ in closed.withLock { $0 += 1 }; conn.close() })
            }
            return listener.port
        }!
        var options = NodeOptions(logger: quietLogger)
        options.helloTimeout = .milliseconds(200)
        let (node, _) = try soloNode(members: ["mute": "127.0.0.1:\(mutePort)"], options: options)
        defer { try? node.stop() }
        #expect(await eventually(timeout: .seconds(5)) { closed.withLock { $0 } > 0 })
        #expect(node.stats.connectionsTimedOut >= 1)
    }

    @Test("an inbound connection that never sends a byte is closed after helloTimeout (issue 16 #9)")
    func hole9SilentInboundConnectionIsClosed() async throws {
        var options = NodeOptions(logger: quietLogger)
        options.helloTimeout = .milliseconds(200)
        let (node, port) = try soloNode(options: options)
        defer { try? node.stop() }
        let silent = try await WireClient.connect(port: port)
        #expect(await silent.wait(timeout: .seconds(5)) { $0.closed })
        #expect(node.stats.connectionsTimedOut == 1)
        #expect(node.stats.openConnections == 0)
    }

    // #4: the LSN rule uses the LSN of the moment.

    @Test("an LSN set through the membership before the first tick is used by the next vote")
    func staleLSNBeforeFirstTick() async throws {
        let (node, port) = try soloNode(members: ["c": nowhere], electionTimeout: .seconds(20), heartbeat: .seconds(10))
        defer { try? node.stop() }
        node.membership.setLocalLSN(100)
        let peer = try await WireClient.connect(port: port)
        peer.hello(as: "c")
        peer.sendFrame { try Wire.encodeVoteRequest(
            VoteRequest(candidateID: "c", term: 1, lastLSN: 50, configuration: ConfigurationID(term: 0, version: 1)), into: &$0) }
        @Sendable func responses(_ record: WireClient.Record) -> [VoteResponse] {
            record.frames.compactMap { if case .voteResponse(let r) = $0 { r } else { nil } }
        }
        #expect(await peer.wait(timeout: .seconds(5)) { !responses($0).isEmpty })
        let response = try #require(responses(peer.current).first)
        #expect(!response.voteGranted)
        #expect(response.reason == ClusterError.staleLSN.description)
    }

    // #13: range checks come first.

    @Test("a heartbeat with an out-of-range epoch is dropped before it reaches the membership")
    func outOfRangeHeartbeatNeverReachesTheMembership() async throws {
        let (node, port) = try soloNode(members: ["f": nowhere])
        defer { try? node.stop() }
        let fake = try await WireClient.connect(port: port)
        fake.hello(as: "f")
        fake.heartbeat(as: "f", seq: 1, term: 1 << 63, epoch: 1 << 63, lsn: 9, role: .primary)
        fake.heartbeat(as: "f", seq: 2, term: 0, epoch: 0, lsn: 10, role: .replica)
        #expect(await eventually(timeout: .seconds(5)) { (try? node.membership.node("f").lastHeartbeatSeq) == 2 })
        let f = try node.membership.node("f")
        #expect(f.term == 0 && f.epoch == 0 && f.role == .replica)
        #expect(node.membership.epoch == 0)
        #expect(node.currentTerm == 0)
    }

    // #5: shutdown races.

    @Test("a node freed while its dial is pending on a shared loop does not crash when the dial ends")
    func dialCompletionAfterTheNodeIsFreed() async throws {
        let loop = try UVLoop(name: "shared")
        defer { loop.shutdown() }
        // A listener whose backlog is full: a dial to it stays pending until its timeout.
        let blackhole = try Blackhole()
        defer { blackhole.close() }
        var options = NodeOptions(logger: quietLogger, loop: loop)
        options.connectTimeout = .milliseconds(300)
        for _ in 0..<3 {
            let (node, _) = try soloNode(members: ["b": "127.0.0.1:\(blackhole.port)"], options: options)
            try node.stop()
            _ = node  // released here, with its dial still pending on the shared loop
        }
        // The loop goes on: the dials' completions ran after their nodes were gone.
        let alive = await withCheckedContinuation { (c: CheckedContinuation<Bool, Never>) in
            if !loop.execute({ c.resume(returning: true) }) { c.resume(returning: false) }
        }
        #expect(alive)
    }
}

/// Issue 6 #6, #8 and #15 at the node's port: write limits, closing, voters.
@Suite("Runtime limits", .timeLimit(.minutes(1)))
struct RuntimeLimitTests {
    /// A node with 8 KiB socket buffers and the given write limits, and a JSON client with 8 KiB
    /// buffers that has stopped reading: the node's replies to it pile up early.
    func stalledClient(
        soft: Int, hard: Int, closeGrace: Duration = .seconds(2), configure: (inout NodeOptions) -> Void = { _ in }
    ) async throws -> (ElectionManager, WireClient) {
        var options = NodeOptions(logger: quietLogger)
        options.closeGracePeriod = closeGrace
        options.maxQueuedBytes = soft
        options.maxQueuedBytesHard = hard
        options.socketBufferBytes = 8 << 10
        configure(&options)
        let (node, port) = try soloNode(options: options)
        let client = try await WireClient.connect(port: port, json: true)
        client.setBuffers(8 << 10)
        client.stopReading()
        return (node, client)
    }

    func statusLines(_ count: Int) -> [UInt8] {
        Array(String(repeating: #"{"message_type":"status"}"# + "\n", count: count).utf8)
    }
    @Test("a client that sends status lines and never reads makes the node pause reading, not grow; resumed, it loses nothing (issue 6 #6)")
    func statusFloodWithoutReadingIsBounded() async throws {
        let (node, client) = try await stalledClient(soft: 64 << 10, hard: 64 << 20)
        defer { try? node.stop() }
        let port = node.listenAddress!.port
        // 1,000 replies of about 330 bytes: five times the soft limit, and what the node's 8 KiB
        // send buffer drains at TCP's pace for a tiny window (about 130 KB/s here) in seconds.
        let count = 1_000
        client.send(statusLines(count))
        #expect(await eventually(timeout: .seconds(10)) { node.stats.readsPaused >= 1 })
        // The node stopped reading: its backlog stays near the soft limit, far below the hard one.
        #expect(node.stats.writeOverflows == 0)
        #expect(node.stats.openConnections == 1)
        // Another client is served meanwhile.
        let other = try await WireClient.connect(port: port, json: true)
        other.send(line: #"{"message_type":"status"}"#)
        #expect(await other.wait(timeout: .seconds(5)) { !$0.lines.isEmpty })
        client.resumeReading()
        #expect(await client.wait(timeout: .seconds(30)) { $0.lines.count >= count })
        #expect(client.current.lines.allSatisfy { $0.contains(#""message_type":"status_response""#) })
    }

    @Test("a client over the hard limit is closed (issue 6 #6)")
    func clientOverTheHardLimitIsClosed() async throws {
        // Reading goes on well past the hard limit, which closes the connection: a client's
        // per-pass bounds (lines, replies queued) lifted, which would otherwise stop it first.
        let (node, client) = try await stalledClient(soft: 1 << 20, hard: 32 << 10) {
            $0.maxLinesPerRead = 1 << 20
            $0.maxClientReplyBytes = 1 << 30
        }
        defer { try? node.stop() }
        client.send(statusLines(5_000))
        #expect(await eventually(timeout: .seconds(10)) { node.stats.writeOverflows == 1 })
        #expect(await eventually(timeout: .seconds(10)) { node.stats.openConnections == 0 })
    }

    @Test("heartbeats to a peer that does not read are skipped over the soft limit, and the link stays (the 4 MiB rule, issue 6 #6)")
    func heartbeatsSkippedOverTheSoftLimit() async throws {
        var options = NodeOptions(logger: quietLogger)
        options.maxQueuedBytes = 16 << 10
        options.socketBufferBytes = 4 << 10
        let (node, port) = try soloNode(members: ["f": nowhere], electionTimeout: .seconds(30), heartbeat: .milliseconds(1), options: options)
        defer { try? node.stop() }
        let peer = try await WireClient.connect(port: port)
        peer.setBuffers(4 << 10)
        peer.hello(as: "f")
        #expect(await peer.wait(timeout: .seconds(5)) { $0.frames.contains { if case .hello = $0 { true } else { false } } })
        peer.stopReading()
        // Keep the link alive from our side while not reading.
        for seq in 1...3 { peer.heartbeat(as: "f", seq: UInt64(seq)) }
        #expect(await eventually(timeout: .seconds(20)) { node.stats.heartbeatsSkipped > 0 })
        #expect(node.stats.writeOverflows == 0)
        #expect(node.stats.peersConnected == 1)
    }

    @Test("heartbeats read together: each counted and acknowledged, a probe among them answered at once, the newest recorded")
    func heartbeatsReadTogether() async throws {
        let (node, port) = try soloNode(members: ["f": nowhere], electionTimeout: .seconds(30), heartbeat: .seconds(10))
        defer { try? node.stop() }
        let peer = try await WireClient.connect(port: port)
        peer.hello(as: "f")
        #expect(await peer.wait(timeout: .seconds(5)) { $0.frames.contains { if case .hello = $0 { true } else { false } } })
        #expect(await eventually(timeout: .seconds(5)) { node.stats.peersConnected == 1 })
        // One write, so one segment and one read on loopback: seq 1, a probe (seq 2), seq 3.
        let tag = Wire.fnv1a64("f")
        var out: [UInt8] = []
        for (seq, probe) in [(UInt64(1), false), (2, true), (3, false)] {
            Wire.encodeHeartbeat(
                HeartbeatFrame(seq: seq, epoch: 0, term: 0, lsn: 10 * seq, role: .replica, ackSeq: 0, senderTag: tag, probe: probe, reply: false),
                into: &out)
        }
        peer.send(out)
        #expect(await eventually(timeout: .seconds(5)) { node.stats.heartbeatsReceived == 3 })
        // The newest is what the membership holds.
        let f = try node.membership.node("f")
        #expect(f.lastHeartbeatSeq == 3 && f.lastLSN == 30, "\(f)")
        // Fewer applied than read (one, when the three came in one read).
        #expect(node.stats.heartbeatsApplied >= 1 && node.stats.heartbeatsApplied < 3, "applied \(node.stats.heartbeatsApplied)")
        // The probe is answered, acknowledging seq 2.
        #expect(await peer.wait(timeout: .seconds(5)) { record in
            record.frames.contains { if case .heartbeat(let hb) = $0 { hb.reply && hb.ackSeq == 2 } else { false } }
        })
    }

    @Test("closing a client sends what was queued first: every reply, then the error, then EOF (issue 6 #8)")
    func closingFlushesQueuedOutput() async throws {
        // A long grace period: a loaded machine drains tiny loopback buffers slowly. The replies
        // a client may leave unread raised: every request is handled before the close.
        let (node, client) = try await stalledClient(soft: 64 << 20, hard: 128 << 20, closeGrace: .seconds(30)) {
            $0.maxClientReplyBytes = 64 << 20
        }
        defer { try? node.stop() }
        // ~100 KB of replies: far more than the two 8 KiB socket buffers hold, so most are still
        // queued in the node when it closes; small enough to drain within the grace period
        // (tiny buffers make loopback TCP slow: delayed acknowledgements).
        let count = 500
        client.send(statusLines(count) + Array("not json\n".utf8))
        #expect(await eventually(timeout: .seconds(10)) { node.stats.protocolErrors >= 1 })
        // Read fast from now on.
        client.setBuffers(1 << 20)
        client.resumeReading()
        #expect(await client.wait(timeout: .seconds(30)) { $0.closed })
        let lines = client.current.lines
        #expect(lines.count == count + 1)
        #expect(lines.last?.contains(#""message_type":"error""#) == true)
    }

    @Test("announced strangers do not become voters: a node alone still wins with its own vote (issue 6 #15)")
    func announcedStrangersAreNotVoters() async throws {
        let (node, port) = try soloNode()
        defer { try? node.stop() }
        let client = try await WireClient.connect(port: port, json: true)
        for i in 0..<50 {
            client.send(line: #"{"message_type":"node_announcement","node_id":"fake\#(i)","node_addr":"127.0.0.1:\#(20_000 + i)","role":0,"epoch":0,"term":0,"priority":1,"timestamp":"2026-11-26T10:00:00Z"}"#)
        }
        #expect(await client.wait(timeout: .seconds(10)) { $0.lines.count == 50 }, "\(client.current.lines.prefix(2))")
        #expect(node.membership.nodeCount == 51)
        // minQuorumSize 1: with the strangers as voters a quorum would be 26.
        try node.startElection()
        #expect(await eventually(timeout: .seconds(5)) { node.isLeader })
    }
}

@Suite("Durable state in a cluster", .serialized, .timeLimit(.minutes(1)))
struct DurableClusterTests {
    @Test("a node restarted from its data directory in a 3-node cluster keeps its term and follows the primary")
    func restartFromDataDirectory() async throws {
        let cluster = try TestCluster(size: 3, durable: true)
        defer { cluster.shutdown() }
        let leader = try #require(await cluster.waitForAgreedLeader(among: cluster.ids))
        let follower = cluster.ids.first { $0 != leader }!
        let term = try #require(cluster.manager(follower)).currentTerm
        cluster.stopNode(follower)
        try cluster.startNode(follower)
        // Read back from disk before it hears anyone: the term it had.
        #expect(try #require(cluster.manager(follower)).currentTerm >= term)
        let again = await cluster.waitForAgreedLeader(among: cluster.ids)
        #expect(again != nil)
        #expect(cluster.watch.doubleLeaderTerms.isEmpty)
    }

    // Issue 6 #3: durable writes ran on the loop thread, stalling every heartbeat behind fsync.
    @Test("a slow durable write does not stall the loop: heartbeats go on, and the vote is answered once durable, in order")
    func slowWriteDoesNotStallTheLoop() async throws {
        let dir = NSTemporaryDirectory() + "cluster-slow-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let gate = DispatchSemaphore(value: 0)
        let (writes, wrote) = AsyncStream<Void>.makeStream()
        var options = NodeOptions(dataDirectory: dir, logger: quietLogger)
        options.persistBeforeSync = {
            wrote.yield()
            _ = gate.wait(timeout: .now() + 30)  // the disk is stuck until the test lets it go
        }
        let (node, port) = try soloNode(
            members: ["f": nowhere], electionTimeout: .seconds(30), heartbeat: .milliseconds(20), options: options)
        defer {
            gate.signal()
            try? node.stop()
        }
        let peer = try await WireClient.connect(port: port)
        peer.hello(as: "f")
        peer.sendFrame { try Wire.encodeVoteRequest(
            VoteRequest(candidateID: "f", term: 5, configuration: ConfigurationID(term: 0, version: 1)), into: &$0) }
        for await _ in writes { break }  // the write of the vote is stuck before its fsync
        @Sendable func heartbeats(_ record: WireClient.Record) -> Int {
            record.frames.count { if case .heartbeat = $0 { true } else { false } }
        }
        @Sendable func responses(_ record: WireClient.Record) -> [VoteResponse] {
            record.frames.compactMap { if case .voteResponse(let r) = $0 { r } else { nil } }
        }
        let before = heartbeats(peer.current)
        #expect(await peer.wait(timeout: .seconds(10)) { heartbeats($0) >= before + 5 }, "the loop stalled behind the write")
        // The vote is not answered while it is not durable.
        #expect(responses(peer.current).isEmpty)
        gate.signal()
        #expect(await peer.wait(timeout: .seconds(10)) { !responses($0).isEmpty })
        #expect(responses(peer.current).map(\.voteGranted) == [true])
        let saved = try savedElectionState(directory: dir)
        #expect(saved["votedFor"] as? String == "f" && saved["term"] as? Int == 5, "\(saved)")
    }

    @Test("a failed durable write refuses the vote with the reason; once the disk is back the vote is granted and saved")
    func failedWriteRefusesTheVote() async throws {
        let dir = NSTemporaryDirectory() + "cluster-failing-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (node, _) = try soloNode(
            electionTimeout: .milliseconds(200), options: NodeOptions(dataDirectory: dir, logger: quietLogger))
        defer { try? node.stop() }
        // A directory where the state file goes: its open fails, even for root.
        let obstacle = dir + "/election-state"
        try FileManager.default.createDirectory(atPath: obstacle, withIntermediateDirectories: true)
        let refused = node.handleVoteRequest(VoteRequest(candidateID: "c", term: 3))
        #expect(!refused.voteGranted)
        #expect(refused.reason == ElectionCore.notDurableReason)
        #expect(node.stats.persistFailures >= 1)
        try FileManager.default.removeItem(atPath: obstacle)
        // The core retries its write (term 3, no vote) a quarter of an election timeout later.
        #expect(await eventually(timeout: .seconds(10)) { (try? savedElectionState(directory: dir)) != nil })
        // The epoch the failed grant promised stays (epochs only rise): the candidate asks again
        // with the epoch the refusal carried, as a candidate's core does. (The file can show the
        // retried write before its sync returns, when the core still refuses: ask until granted.)
        var granted = VoteResponse(voterID: "", term: 0, voteGranted: false)
        #expect(await eventually(timeout: .seconds(10)) {
            granted = node.handleVoteRequest(VoteRequest(candidateID: "c", term: 3, epoch: refused.epoch))
            return granted.voteGranted
        }, "\(granted.reason)")
        let saved = try savedElectionState(directory: dir)
        #expect(saved["votedFor"] as? String == "c", "\(saved)")
    }

    @Test("a state file whose two copies are both damaged is reported with its path and why, and the node neither starts nor votes (issue 19)")
    func bothCopiesDamaged() throws {
        let dir = NSTemporaryDirectory() + "cluster-damaged-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var file = [UInt8](repeating: 0, count: StateSlots.fileSize)
        for sequence: UInt64 in 1...2 {
            var image = StateSlots.image(payload: Array(#"{"term":\#(sequence),"votedFor":"n2"}"#.utf8), sequence: sequence)!
            image[image.count - 2] ^= 0x20  // a bit flipped in each copy's payload
            let offset = StateSlots.slot(for: sequence) * StateSlots.slotSize
            file.replaceSubrange(offset..<(offset + image.count), with: image)
        }
        try Data(file).write(to: URL(fileURLWithPath: dir + "/election-state"))
        let node = ElectionManager(
            config: ClusterConfig(nodeID: "n1", nodeAddr: "127.0.0.1:0"),
            membership: ClusterMembership(localNodeID: "n1", localAddr: "127.0.0.1:0"),
            options: NodeOptions(dataDirectory: dir, logger: quietLogger))
        do {
            try node.start()
            Issue.record("a node with both copies damaged started")
        } catch {
            #expect("\(error)".contains(dir + "/election-state: neither copy"), "\(error)")
            #expect("\(error)".contains("checksum"), "\(error)")
        }
        #expect(!node.handleVoteRequest(VoteRequest(candidateID: "c", term: 9)).voteGranted)
    }

    @Test("a data directory of the earlier format (election-state.json) is read, and the next write goes to the two-slot file (issue 19)")
    func earlierFormat() async throws {
        let dir = NSTemporaryDirectory() + "cluster-legacy-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Data(#"{"term":7,"votedFor":"n9","epoch":4}"#.utf8).write(to: URL(fileURLWithPath: dir + "/election-state.json"))
        let (node, _) = try soloNode(
            electionTimeout: .milliseconds(200), autoFailover: true, options: NodeOptions(dataDirectory: dir, logger: quietLogger))
        defer { try? node.stop() }
        // Alone, it stands in term 8 at once: the term it read is the one it goes on from.
        #expect(await eventually(timeout: .seconds(10)) { (try? savedElectionState(directory: dir))?["term"] as? Int ?? 0 >= 8 })
        #expect(node.currentTerm >= 8)
    }

    @Test("a corrupt state file is reported with its path, and the node neither starts nor votes")
    func corruptStateFile() throws {
        let dir = NSTemporaryDirectory() + "cluster-corrupt-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Data("{\"term\": 3, \"voted".utf8).write(to: URL(fileURLWithPath: dir + "/election-state.json"))
        let membership = ClusterMembership(localNodeID: "n1", localAddr: "127.0.0.1:0")
        let node = ElectionManager(
            config: ClusterConfig(nodeID: "n1", nodeAddr: "127.0.0.1:0"), membership: membership,
            options: NodeOptions(dataDirectory: dir, logger: quietLogger))
        do {
            try node.start()
            Issue.record("a node with a corrupt state file started")
        } catch {
            #expect("\(error)".contains("election-state.json"), "\(error)")
        }
        let answer = node.handleVoteRequest(VoteRequest(candidateID: "c", term: 9))
        #expect(!answer.voteGranted)
        #expect(node.currentTerm == 0)
    }
}
