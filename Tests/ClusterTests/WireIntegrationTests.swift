import Cluster
import Dispatch
import Foundation
import Testing
import UV

/// A raw TCP client on a loop of its own: sends `bytes`, collects what comes back until the peer
/// closes or `lines` newline-terminated lines arrived, with a time bound.
func exchange(port: Int, send bytes: [UInt8], lines: Int = 1, halfClose: Bool = false, timeoutMs: UInt64 = 5000) throws -> (reply: String, closedByPeer: Bool) {
    let loop = try UVLoop(name: "client")
    defer { loop.shutdown() }
    let result = UVLocked<(String, Bool)>(("", false))
    let done = DispatchSemaphore(value: 0)
    loop.execute {
        var text = ""
        var finished = false
        let guardTimer = try! UVTimer(loop: loop)
        func finish(_ closed: Bool, _ conn: UVTCPConnection?) {
            guard !finished else { return }
            finished = true
            guardTimer.close()
            conn?.close()
            result.withLock { $0 = (text, closed) }
            done.signal()
        }
        try! guardTimer.start(timeoutMs: timeoutMs) { finish(false, nil) }
        do {
            try UVTCPConnection.connect(loop: loop, host: "127.0.0.1", port: port, timeoutMs: 2000) { r in
                guard case .success(let conn) = r else { finish(false, nil); return }
                try? conn.startReading(onRead: { span in
                    span.withUnsafeBytes { text += String(decoding: $0, as: UTF8.self) }
                    if text.filter({ $0 == "\n" }).count >= lines && lines > 0 { finish(false, conn) }
                }, onEnd: { _ in finish(true, conn) })
                try? conn.write(bytes)
                if halfClose { conn.shutdown() }
            }
        } catch {
            finish(false, nil)
        }
    }
    done.wait()
    let (text, closed) = result.withLock { $0 }
    return (text, closed)
}

@Suite("The node's port", .serialized, .timeLimit(.minutes(1)))
struct WireIntegrationTests {
    func singleNode(_ id: String = "solo", dataDirectory: String? = nil) throws -> ElectionManager {
        let config = ClusterConfig(nodeID: id, nodeAddr: "127.0.0.1:0", electionTimeout: .milliseconds(300), heartbeatInterval: .milliseconds(30))
        let manager = ElectionManager(config: config, membership: ClusterMembership(localNodeID: id, localAddr: config.nodeAddr),
                                      options: NodeOptions(dataDirectory: dataDirectory, logger: quietLogger))
        try manager.start()
        return manager
    }

    @Test("a seed-style one-shot JSON vote request gets the seed's vote_response: refused, its term not adopted, even for a voter's id")
    func seedStyleVoteRequest() throws {
        // Voters ask for votes on their peer links; a JSON line only claims its candidate (issue 15:
        // an anonymous vote request naming a crashed primary kept the survivors leaderless).
        let config = ClusterConfig(nodeID: "solo", nodeAddr: "127.0.0.1:0", electionTimeout: .milliseconds(300), heartbeatInterval: .milliseconds(30))
        let membership = ClusterMembership(localNodeID: "solo", localAddr: config.nodeAddr)
        try membership.addNode(NodeInfo(id: "n2", addr: "127.0.0.1:1"))
        try membership.addNode(NodeInfo(id: "n3", addr: "127.0.0.1:1"))
        let node = ElectionManager(config: config, membership: membership, options: NodeOptions(logger: quietLogger))
        try node.start()
        defer { try? node.stop() }
        let port = node.listenAddress!.port
        #expect(node.voterConfiguration.configuration.voters == ["n2", "n3", "solo"])
        for candidate in ["x9", "n2"] {
            let request = #"{"message_type":"vote_request","candidate_id":""# + candidate + #"","term":3,"last_lsn":120,"epoch":0,"priority":1}"# + "\n"
            let (reply, _) = try exchange(port: port, send: Array(request.utf8))
            let response = try JSONDecoder().decode(VoteResponse.self, from: Data(reply.utf8))
            #expect(response.messageType == "vote_response")
            #expect(response.voterID == "solo")
            #expect(!response.voteGranted)
            #expect(response.reason.contains("peer links"))
            #expect(reply.contains(#""vote_granted":false"#))
            #expect(node.currentTerm == 0)
        }
        // The application's own door keeps the seed's rules (it vouches for the candidate).
        #expect(node.handleVoteRequest(VoteRequest(candidateID: "n2", term: 3, lastLSN: 120)).voteGranted)
        #expect(node.currentTerm == 3)
    }

    @Test("a JSON heartbeat with the probe flag gets an immediate heartbeat back, acknowledging it")
    func jsonProbe() throws {
        let config = ClusterConfig(nodeID: "solo", nodeAddr: "127.0.0.1:0", electionTimeout: .milliseconds(300), heartbeatInterval: .milliseconds(30))
        let membership = ClusterMembership(localNodeID: "solo", localAddr: config.nodeAddr)
        try membership.addNode(NodeInfo(id: "ghost", addr: "127.0.0.1:1"))
        let node = ElectionManager(config: config, membership: membership, options: NodeOptions(logger: quietLogger))
        try node.start()
        defer { try? node.stop() }
        let port = node.listenAddress!.port
        // A JSON heartbeat counts only on a connection that identified itself as that member.
        let hello = #"{"message_type":"hello","version":1,"node_id":"ghost"}"# + "\n"
        let probe = #"{"message_type":"heartbeat","node_id":"ghost","seq":7,"epoch":0,"term":0,"lsn":42,"role":0,"probe":true}"# + "\n"
        let (replies, _) = try exchange(port: port, send: Array((hello + probe).utf8), lines: 2)
        let lines = replies.split(separator: "\n")
        #expect(lines.count == 2)
        #expect(lines.first?.contains(#""message_type":"hello""#) == true)
        let reply = String(lines.last ?? "")
        #expect(reply.contains(#""message_type":"heartbeat""#))
        #expect(reply.contains(#""ack_seq":7"#))
        #expect(reply.contains(#""node_id":"solo""#))
        #expect(try membership.node("ghost").lastLSN == 42)
        #expect(try membership.node("ghost").lastHeartbeatSeq == 7)
    }

    @Test("a binary hello from a node that is not a member is refused with a goodbye")
    func unknownPeerRefused() throws {
        let node = try singleNode()
        defer { try? node.stop() }
        var hello: [UInt8] = []
        try Wire.encodeHello(HelloMessage(nodeID: "intruder", nodeAddr: "127.0.0.1:9"), into: &hello)
        let (reply, closed) = try exchange(port: node.listenAddress!.port, send: hello, lines: 0)
        #expect(closed)
        #expect(reply.contains("unknown node intruder"))
        #expect(node.stats.connectionsRefused == 1)
    }

    @Test("a stranger on the port is closed, and the node keeps answering")
    func strangerIsClosed() async throws {
        let node = try singleNode()
        defer { try? node.stop() }
        let port = node.listenAddress!.port
        let (_, closed) = try exchange(port: port, send: Array("SSH-2.0-OpenSSH_9.6\r\n".utf8), lines: 0)
        #expect(closed)
        // HTTP is only a metrics scrape: anything but GET /metrics is answered 404 and closed.
        let (http, closedHTTP) = try exchange(port: port, send: Array("GET / HTTP/1.1\r\n\r\n".utf8), lines: 0)
        #expect(closedHTTP)
        #expect(http.hasPrefix("HTTP/1.1 404"), "\(http.prefix(200))")
        // Malformed JSON: an error line, then the connection is closed.
        let (reply, closed2) = try exchange(port: port, send: Array("{not json\n".utf8), lines: 0)
        #expect(closed2)
        #expect(reply.contains(#""message_type":"error""#))
        // A binary frame claiming 1 GiB is refused from its header alone.
        let (_, closed3) = try exchange(port: port, send: [0x40, 0, 0, 0, 2], lines: 0)
        #expect(closed3)
        #expect(node.stats.protocolErrors >= 3)
        // A peer that vanishes mid-frame: half a hello, then EOF. The node just closes its end.
        var hello: [UInt8] = []
        try Wire.encodeHello(HelloMessage(nodeID: "half", nodeAddr: "127.0.0.1:9"), into: &hello)
        let (_, closed4) = try exchange(port: port, send: Array(hello.prefix(hello.count / 2)), lines: 0, halfClose: true)
        #expect(closed4)
        // And one that vanishes mid-line.
        let (_, closed5) = try exchange(port: port, send: Array(#"{"message_type":"vote_req"#.utf8), lines: 0, halfClose: true)
        #expect(closed5)
        let status = #"{"message_type":"status"}"# + "\n"
        let (reply4, _) = try exchange(port: port, send: Array(status.utf8))
        #expect(reply4.contains(#""node_id":"solo""#))
        // Every one of those connections is gone from the node (the last close may still be in flight).
        #expect(await eventually(timeout: .seconds(5)) { node.stats.openConnections == 0 })
    }

    @Test("a vote request with a term of 2^64 - 1 is refused, and the node goes on")
    func hugeTerm() throws {
        let node = try singleNode()
        defer { try? node.stop() }
        let request = #"{"message_type":"vote_request","candidate_id":"n2","term":18446744073709551615,"last_lsn":0,"epoch":0,"priority":1}"# + "\n"
        let (reply, _) = try exchange(port: node.listenAddress!.port, send: Array(request.utf8))
        let response = try JSONDecoder().decode(VoteResponse.self, from: Data(reply.utf8))
        #expect(!response.voteGranted)
        #expect(node.currentTerm == 0)
        #expect(node.handleVoteRequest(VoteRequest(candidateID: "n3", term: 1)).voteGranted)
    }

    @Test("a JSON line over the size limit is refused without buffering it all")
    func oversizedLine() throws {
        let node = try singleNode()
        defer { try? node.stop() }
        var big = Array(#"{"message_type":"vote_request","candidate_id":""#.utf8)
        big += [UInt8](repeating: UInt8(ascii: "a"), count: 200_000)
        let (reply, closed) = try exchange(port: node.listenAddress!.port, send: big, lines: 0)
        #expect(closed)
        #expect(reply.contains("error"))
    }

    @Test("a restarted node with a data directory never votes twice in one term")
    func durableVote() throws {
        let dir = NSTemporaryDirectory() + "durable-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let node = try singleNode("voter", dataDirectory: dir)
            let granted = node.handleVoteRequest(VoteRequest(candidateID: "a", term: 5))
            #expect(granted.voteGranted)
            try node.stop()
        }
        let restarted = try singleNode("voter", dataDirectory: dir)
        defer { try? restarted.stop() }
        #expect(restarted.currentTerm == 5)
        let refused = restarted.handleVoteRequest(VoteRequest(candidateID: "b", term: 5))
        #expect(!refused.voteGranted)
        #expect(refused.reason == ClusterError.alreadyVoted.description)
        // The same candidate asking again gets the same answer.
        #expect(restarted.handleVoteRequest(VoteRequest(candidateID: "a", term: 5)).voteGranted)
    }

    @Test("without a data directory, a restarted node forgets its vote (the seed's behaviour)")
    func inMemoryVoteIsLost() throws {
        do {
            let node = try singleNode("forgetful")
            #expect(node.handleVoteRequest(VoteRequest(candidateID: "a", term: 5)).voteGranted)
            try node.stop()
        }
        let restarted = try singleNode("forgetful")
        defer { try? restarted.stop() }
        #expect(restarted.currentTerm == 0)
        #expect(restarted.handleVoteRequest(VoteRequest(candidateID: "b", term: 5)).voteGranted)
    }
}
