import ClusterCore

/// Seed inputs for the fuzzer, by name: binary streams from the encoders (every frame type, in a
/// connection that opens with a HELLO from the member `n1`), the JSON lines of every message type
/// in PROTOCOL.md, each whole and cut into reads at awkward places, a member speaking JSON, floods
/// of requests, and a few violations and strangers.
func seedInputs() -> [(name: String, input: [UInt8])] {
    var seeds: [(String, [UInt8])] = []
    func add(_ name: String, _ reads: [[UInt8]]) { seeds.append((name, fuzzInput(reads))) }
    func frames(_ list: [WireFrame]) -> [UInt8] {
        var out: [UInt8] = []
        for f in list { try? Wire.encode(f, into: &out) }
        return out
    }
    /// Reads of the given sizes (the last takes the rest).
    func cut(_ bytes: [UInt8], _ sizes: [Int]) -> [[UInt8]] {
        var reads: [[UInt8]] = []
        var at = 0
        for size in sizes where at < bytes.count {
            let end = min(bytes.count, at + size)
            reads.append(Array(bytes[at..<end]))
            at = end
        }
        if at < bytes.count { reads.append(Array(bytes[at...])) }
        return reads
    }

    // Binary: every frame type after a hello.
    let hello = WireFrame.hello(HelloMessage(nodeID: "n1", nodeAddr: "127.0.0.1:7001", priority: 1))
    let tag = Wire.fnv1a64("n1")
    let heartbeat = WireFrame.heartbeat(
        HeartbeatFrame(seq: 7, epoch: 2, term: 3, lsn: 120, role: .primary, ackSeq: 6, senderTag: tag, probe: true))
    let reply = WireFrame.heartbeat(
        HeartbeatFrame(seq: 8, epoch: 2, term: 3, lsn: 121, role: .replica, ackSeq: 9, senderTag: tag, reply: true))
    let request = WireFrame.voteRequest(VoteRequest(candidateID: "n1", term: 4, lastLSN: 120, epoch: 2, priority: 1))
    let preVote = WireFrame.voteRequest(
        VoteRequest(candidateID: "n1", term: .max, lastLSN: .max, epoch: .max, priority: -1, preVote: true))
    let granted = WireFrame.voteResponse(VoteResponse(voterID: "n1", term: 4, voteGranted: true, epoch: 2))
    let refused = WireFrame.voteResponse(
        VoteResponse(voterID: "n1", term: 4, voteGranted: false, reason: "stale term ✗", preVote: true, epoch: 3))
    let goodbye = WireFrame.goodbye("shutting down")
    let timeoutNow = WireFrame.timeoutNow(TimeoutNowMessage(from: "n1", term: 3))
    let transferRequest = WireFrame.voteRequest(
        VoteRequest(candidateID: "n1", term: 4, lastLSN: 120, epoch: 2, priority: 1, transfer: true))
    let all = frames([hello, heartbeat, reply, request, preVote, granted, refused, timeoutNow, transferRequest, goodbye])
    add("bin-hello", [frames([hello])])
    add("bin-all", [all])
    add("bin-all-bytewise", all.map { [$0] })
    add("bin-all-cut-in-headers", cut(all, [2, 35, 3, 1, 55, 56, 4]))
    add("bin-all-cut-in-bodies", cut(all, [10, 40, 17, 200]))
    for (name, frame) in [
        ("heartbeat", heartbeat), ("vote-request", request), ("pre-vote", preVote), ("vote-granted", granted),
        ("vote-refused", refused), ("goodbye", goodbye), ("timeout-now", timeoutNow), ("transfer-vote", transferRequest),
    ] {
        add("bin-hello-\(name)", [frames([hello, frame])])
    }
    let longReason = String(repeating: "é", count: 600)  // 1200 bytes: cut to 1024 by the encoder
    var longGoodbye: [UInt8] = [0, 0, 0x04, 0xB3, 5, 0x04, 0xB0]
    longGoodbye += Array(longReason.utf8)
    add("bin-long-goodbye", [frames([hello]) + longGoodbye])
    var ids: [UInt8] = []
    try? Wire.encodeHello(
        HelloMessage(nodeID: String(repeating: "x", count: 255), nodeAddr: String(repeating: "a", count: 255), priority: .min),
        into: &ids)
    add("bin-hello-longest-ids", [ids])

    // HTTP: a metrics scrape, whole or cut; a long head.
    add("http-metrics", [Array("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".utf8)])
    add("http-cut", cut(Array("GET /metrics?x=1 HTTP/1.0\r\n\r\n".utf8), [1, 3, 9]))
    add("http-post", [Array("GET  HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\n\r\n".utf8)])

    // Binary violations.
    add("bin-heartbeat-before-hello", [frames([heartbeat])])
    add("bin-second-hello", [frames([hello, hello])])
    add("bin-hello-from-itself", [frames([.hello(HelloMessage(nodeID: FuzzNode.localID))])])
    add("bin-wrong-tag", [frames([hello, .heartbeat(HeartbeatFrame(seq: 1, epoch: 0, term: 0, lsn: 0, role: .replica, senderTag: 1))])])
    add("bin-too-large", [frames([hello]), [0, 1, 0, 1, 1]])
    add("bin-zero-length", [[0, 0, 0, 0, 1]])
    add("bin-unknown-type", [frames([hello]) + [0, 0, 0, 1, 9]])
    var badVersion = frames([hello])
    badVersion[5] = 2
    add("bin-bad-version", [badVersion])
    var badUTF8 = frames([hello])
    badUTF8[9] = 0xC3
    add("bin-bad-utf8", [badUTF8])

    // JSON: every message type of PROTOCOL.md.
    let messages = [
        #"{"message_type":"node_announcement","node_id":"n2","node_addr":"127.0.0.1:7002","role":0,"epoch":0,"term":0,"priority":1,"timestamp":"2026-11-26T10:00:00.123456789Z"}"#,
        #"{"message_type":"node_list","nodes":[{"ID":"n1","Addr":"127.0.0.1:7001","Role":2,"LastSeen":"2026-11-26T10:00:00.123456789Z","LastHeartbeatSeq":17,"Epoch":2,"Term":3,"LastLSN":120,"Priority":1}],"success":true}"#,
        #"{"message_type":"vote_request","candidate_id":"n2","term":3,"last_lsn":120,"epoch":2,"priority":1}"#,
        #"{"message_type":"vote_response","voter_id":"n1","term":3,"vote_granted":true}"#,
        #"{"message_type":"vote_response","voter_id":"n1","term":3,"vote_granted":false,"reason":"stale","pre_vote":true,"epoch":4}"#,
        #"{"message_type":"heartbeat","node_id":"n1","seq":7,"epoch":2,"term":3,"lsn":120,"role":2,"ack_seq":6,"probe":true}"#,
        #"{"message_type":"hello","version":1,"node_id":"n1","node_addr":"127.0.0.1:7001","priority":1}"#,
        #"{"message_type":"goodbye","reason":"shutting down"}"#,
        #"{"message_type":"transfer","to":"n2"}"#,
        #"{"message_type":"transfer"}"#,
        #"{"message_type":"transfer_response","success":true,"leader_id":"n2","took_ms":18.4}"#,
        #"{"message_type":"vote_request","candidate_id":"n2","term":3,"last_lsn":120,"epoch":2,"priority":1,"transfer":true}"#,
        #"{"message_type":"status"}"#,
        #"{"message_type":"status_response","node_id":"n1","role":2,"state":"leader","term":3,"epoch":2,"leader_id":"n1","lsn":120,"members":[{"ID":"n1","Addr":"127.0.0.1:7001","Role":2,"LastSeen":"2026-11-26T10:00:00Z","LastHeartbeatSeq":0,"Epoch":2,"Term":3,"LastLSN":120,"Priority":1}]}"#,
        #"{"message_type":"error","error":"unknown message_type \"gossip\""}"#,
        #"{"message_type":"gossip"}"#,
        #"{"message_type":"heartbeat","node_id":"n1","seq":7}"#,
        #"{"message_type":"node_announcement","node_id":"n9","timestamp":"2026-11-26T10:00:00.5+02:00"}"#,
        #"{"message_type":"vote_request","candidate_id":"\u00e9\ud83d\ude00","term":18446744073709551615,"priority":-9223372036854775808}"#,
        #"{"message_type":"hello","version":2,"node_id":"n1"}"#,
        #"{"message_type":1}"#,
        #"{"message_type":"status""#,
    ]
    for (i, m) in messages.enumerated() {
        add("json-\(i)", [Array((m + "\n").utf8)])
    }
    var stream = Array(messages.prefix(11).joined(separator: "\r\n").utf8)
    stream += [0x0A, 0x0A, 0x0D, 0x0A]
    add("json-all", [stream])
    add("json-all-cut", cut(stream, [1, 1, 30, 97, 2, 150, 5, 300]))
    let crlf = Array((messages[8] + "\r\n").utf8)
    add("json-crlf-cut-between", [Array(crlf.dropLast()), [0x0A]])
    add("json-bytewise", Array((messages[6] + "\n").utf8).map { [$0] })

    // JSON on the node's state: a member identified by its hello sends heartbeats; a vote
    // request with lines behind it (their replies wait for the vote); requests over many reads
    // (reading pauses and resumes) and in one read (the hard limit).
    let identified = [
        #"{"message_type":"hello","version":1,"node_id":"n1","node_addr":"127.0.0.1:7001","priority":1}"#,
        #"{"message_type":"heartbeat","node_id":"n1","seq":7,"epoch":2,"term":3,"lsn":120,"role":2,"ack_seq":6,"probe":true}"#,
        #"{"message_type":"heartbeat","node_id":"n2","seq":8,"term":3}"#,
        #"{"message_type":"vote_request","candidate_id":"n1","term":4,"last_lsn":120,"epoch":2,"priority":1}"#,
    ]
    add("json-identified-heartbeats", [Array((identified.joined(separator: "\n") + "\n").utf8)])
    add("json-vote-then-status", [Array((messages[2] + "\n" + messages[8] + "\n" + messages[11] + "\n").utf8)])
    let status = Array((messages[8] + "\n").utf8)
    add("json-status-many-reads", Array(repeating: status, count: 40))
    add("json-status-one-read", [Array(repeating: status, count: 150).flatMap { $0 }])

    // Strangers.
    add("stranger-http", [Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8)])
    add("stranger-empty-reads", [[], [], [0x7B, 0x7D, 0x0A]])
    return seeds
}
