import ClusterCore

// The fuzz target: the bytes one TCP connection carries, fed in chunks through the path the node
// runtime feeds them (NodeRuntime `received` → `receivedFrames` / `receivedLines` →
// `handleFrame` / `handleLine`), with checks on everything the decoders hand over.
//
// An input is the connection's byte stream, cut into reads by `chunkCut`: the bytes between two
// cuts arrive as one read, so the fuzzer chooses the chunk boundaries. The stream is the input
// without the cuts.

/// The three bytes that end one read of the connection and start the next.
let chunkCut: [UInt8] = [0xFF, 0xFE, 0xFD]

/// Cuts an input into the reads of one connection (empty reads included; the runtime skips them).
func chunks(of input: [UInt8]) -> [[UInt8]] {
    var out: [[UInt8]] = []
    var start = 0
    var i = 0
    while i + 3 <= input.count {
        if input[i] == chunkCut[0] && input[i + 1] == chunkCut[1] && input[i + 2] == chunkCut[2] {
            out.append(Array(input[start..<i]))
            i += 3
            start = i
        } else {
            i += 1
        }
    }
    out.append(Array(input[start...]))
    return out
}

/// The fuzz input format for a connection that receives `reads`, one after the other.
func fuzzInput(_ reads: [[UInt8]]) -> [UInt8] {
    var out: [UInt8] = []
    for (i, read) in reads.enumerated() {
        if i > 0 { out += chunkCut }
        out += read
    }
    return out
}

/// Feeds one connection's bytes (a fuzz input: the stream cut into reads by `chunkCut`) through
/// the runtime's input path and returns every broken expectation (none when all is well).
///
/// The harness's only unsafe pointer: `bytes` is libFuzzer's input, borrowed for this call and
/// copied at once.
@discardableResult
func feedConnection(_ bytes: UnsafeRawBufferPointer) -> [String] {
    feedConnection(reads: chunks(of: [UInt8](bytes)))
}

/// Feeds the reads of one connection, in order, through the runtime's input path, then checks
/// what the decoders handed over against the whole stream decoded at once.
func feedConnection(reads: [[UInt8]]) -> [String] {
    let link = FuzzLink()
    for read in reads {
        link.received(read)
        if link.isClosed { break }
    }
    let stream = reads.flatMap { $0 }
    link.checkAgainstWholeStream(stream)
    checkLineSplitter(reads: reads, stream: stream, into: &link.problems)
    return link.problems
}

/// What a decoder handed over, in order.
enum Output: Equatable {
    case frame(WireFrame)
    case line([UInt8])
}

/// One inbound connection as the runtime keeps it (its `Link`), with what the harness saw on it.
/// The node is `localID`; every other id that says hello is taken for a member of its cluster.
final class FuzzLink {
    enum Kind { case undecided, binary, json }

    static let localID = "fuzz-node"

    var kind = Kind.undecided
    var decoder = FrameDecoder()
    var lines = LineSplitter()  // the runtime's: `Wire.maxLineBytes`
    var peerID: String?
    var peerTag: UInt64 = 0
    var jsonErrors = 0
    var isClosed = false

    /// Everything the decoder handed over, also what arrived after the link closed inside a read.
    var outputs: [Output] = []
    /// The error the decoder itself threw (not one the handler threw through it).
    var decoderError: WireError?
    /// The error the frame handler threw to refuse a frame (the runtime's violation).
    var handlerError: WireError?
    /// The bytes fed so far, and where the next frame starts in them.
    var fed: [UInt8] = []
    var nextFrameStart = 0
    var problems: [String] = []

    func problem(_ text: String) {
        if problems.count < 8 { problems.append(text) }
    }

    // MARK: The runtime's input path

    /// `NodeRuntime.received`: the first byte of the first read decides the kind.
    func received(_ read: [UInt8]) {
        guard !isClosed, !read.isEmpty else { return }
        if kind == .undecided {
            switch Wire.classify(firstByte: read[0]) {
            case .json: kind = .json
            case .binary: kind = .binary
            case .stranger, .http:  // HTTP is a metrics scrape, not decoded here
                close()
                return
            }
        }
        fed += read
        switch kind {
        case .binary: receivedFrames(read)
        case .json: receivedLines(read)
        case .undecided: break
        }
        if decoder.bufferedByteCount > 4 + Wire.maxFrameBytes {
            problem("the frame decoder holds \(decoder.bufferedByteCount) bytes, more than one frame")
        }
        if lines.bufferedByteCount > Wire.maxLineBytes + 1 {
            problem("the line splitter holds \(lines.bufferedByteCount) bytes, more than one line")
        }
    }

    /// `NodeRuntime.receivedFrames`.
    func receivedFrames(_ read: [UInt8]) {
        do throws(WireError) {
            try decoder.feed(read.span.bytes) { (frame) throws(WireError) in
                outputs.append(.frame(frame))
                checkFrame(frame)
                guard !isClosed else { return }
                try handleFrame(frame)
            }
        } catch {
            if error != handlerError {
                decoderError = error
                checkStaysFailed(error)
            }
            violation(error)
        }
    }

    /// `NodeRuntime.handleFrame` and `receivedHello`, without the node's state.
    func handleFrame(_ frame: WireFrame) throws(WireError) {
        switch frame {
        case .hello(let hello):
            guard peerID == nil else { throw refuse(.malformed("second hello")) }
            guard hello.nodeID != Self.localID else {
                violationReason("connected to itself")
                return
            }
            peerID = hello.nodeID
            peerTag = Wire.fnv1a64(hello.nodeID)
            return
        case .goodbye:
            close()
            return
        default:
            break
        }
        guard let peerID else { throw refuse(.malformed("\(frame.type) before hello")) }
        if case .heartbeat(let hb) = frame, hb.senderTag != peerTag {
            throw refuse(.malformed("heartbeat sender tag does not match the hello"))
        }
        // What the runtime hands the election core, back in a frame.
        guard let message = frame.electionMessage(from: peerID) else {
            problem("\(frame.type) carries no election message")
            return
        }
        var expected = frame
        if case .heartbeat(var hb) = frame {
            hb.reply = false  // a HeartbeatMessage has no reply flag
            expected = .heartbeat(hb)
        }
        if WireFrame(message) != expected {
            problem("\(frame) as an election message \(message) gives back \(WireFrame(message))")
        }
    }

    /// Records an error the handler throws (the feed rethrows it).
    func refuse(_ error: WireError) -> WireError {
        handlerError = error
        return error
    }

    /// `NodeRuntime.receivedLines`.
    func receivedLines(_ read: [UInt8]) {
        do throws(WireError) {
            try lines.feed(read.span.bytes) { line in
                let bytes = Wire.copyBytes(line)
                outputs.append(.line(bytes))
                checkLine(bytes)
                guard !isClosed else { return }
                handleLine(line)
            }
        } catch {
            decoderError = error
            checkStaysFailed(error)
            violation(error)
        }
    }

    /// `NodeRuntime.handleLine`, without the node's state: every answer the runtime would queue
    /// is encoded and checked.
    func handleLine(_ line: RawSpan) {
        let message: JSONMessage
        do throws(WireError) {
            message = try JSONMessage.decode(line: line)
        } catch {
            if case .unknownMessageType = error, jsonErrors < 16 {
                jsonErrors += 1
                answer(.error("\(error)"))
                return
            }
            violation(error)
            return
        }
        checkMessage(message)
        switch message {
        case .voteRequest(let request):
            answer(.voteResponse(VoteResponse(voterID: Self.localID, term: request.term, voteGranted: false, reason: "fuzz")))
        case .announcement:
            answer(.nodeList(DiscoveryResponse(success: false, error: "fuzz")))
        case .heartbeat(let hb):
            if hb.probe {
                answer(.heartbeat(HeartbeatMessage(from: Self.localID, seq: 1, epoch: 0, term: 0, lsn: 0, role: .replica, ackSeq: hb.seq)))
            }
        case .status:
            answer(.statusResponse(StatusResponse(nodeID: Self.localID, role: .replica, state: .follower, term: 0, epoch: 0, lsn: 0)))
        case .hello:
            answer(.hello(HelloMessage(nodeID: Self.localID, nodeAddr: "127.0.0.1:1", priority: 1)))
        case .goodbye:
            close()
        case .transfer:
            answer(.transferResponse(TransferResponse(success: false, leaderID: nil, error: "fuzz")))
        case .keyring:
            answer(.keyringResponse(KeyringResponse(success: false, error: "fuzz")))
        case .voteResponse, .nodeList, .statusResponse, .error, .transferResponse, .keyringResponse:
            jsonErrors += 1
            answer(.error("unexpected message from a client"))
        }
    }

    /// `NodeRuntime.violation`: the reason goes to the peer (an `error` line or a GOODBYE), then
    /// the link closes.
    func violation(_ error: WireError) {
        violationReason("\(error)")
    }

    func violationReason(_ reason: String) {
        guard !isClosed else { return }
        switch kind {
        case .json: answer(.error(reason))
        case .binary: checkGoodbye(reason)
        case .undecided: break
        }
        close()
    }

    func close() {
        isClosed = true
    }

    // MARK: Checks

    /// The frame's bytes are the next frame of the stream, they encode back to the same bytes (a
    /// reason longer than the encoder sends comes back cut), and its fields keep the limits.
    func checkFrame(_ frame: WireFrame) {
        let start = nextFrameStart
        guard start + 4 <= fed.count else {
            problem("\(frame.type) handed over before its length field arrived")
            return
        }
        let length = fed[start..<(start + 4)].reduce(0) { $0 << 8 | Int($1) }
        guard length >= 1, length <= Wire.maxFrameBytes, start + 4 + length <= fed.count else {
            problem("\(frame.type) handed over from a frame of length \(length) at byte \(start) of \(fed.count)")
            return
        }
        let original = Array(fed[start..<(start + 4 + length)])
        nextFrameStart = start + 4 + length
        if (try? Wire.decodeFrame(original)) != frame {
            problem("handed over \(frame), but the frame's bytes \(original) decode otherwise")
        }

        func checkID(_ id: String, _ field: String) {
            if id.utf8.isEmpty || id.utf8.count > Wire.maxIDBytes { problem("\(field) of \(id.utf8.count) bytes") }
        }
        var reason: String?
        switch frame {
        case .hello(let h):
            if h.version != Wire.version { problem("hello of version \(h.version)") }
            checkID(h.nodeID, "hello node id")
            if h.nodeAddr.utf8.count > Wire.maxAddrBytes { problem("hello address of \(h.nodeAddr.utf8.count) bytes") }
        case .heartbeat:
            if original.count != Wire.heartbeatFrameBytes { problem("heartbeat of \(original.count) bytes") }
        case .voteRequest(let r):
            checkID(r.candidateID, "vote request candidate id")
        case .voteResponse(let r):
            checkID(r.voterID, "vote response voter id")
            reason = r.reason
        case .goodbye(let r):
            reason = r
        case .timeoutNow(let t):
            checkID(t.from, "timeout now sender id")
        }

        var encoded: [UInt8] = []
        do throws(WireError) {
            try Wire.encode(frame, into: &encoded)
        } catch {
            problem("\(frame) does not encode: \(error)")
            return
        }
        guard let reason, reason.utf8.count > Wire.maxReasonBytes else {
            if encoded != original { problem("\(frame) encodes to \(encoded), not to its own bytes \(original)") }
            return
        }
        // The encoder cuts the reason: the same frame comes back, its reason a prefix.
        guard let again = try? Wire.decodeFrame(encoded) else {
            problem("\(frame) encodes to \(encoded), which does not decode")
            return
        }
        let cut: String
        switch again {
        case .voteResponse(let r): cut = r.reason
        case .goodbye(let r): cut = r
        default: cut = ""
        }
        checkCut(cut, of: reason)
        var expected = frame
        switch frame {
        case .voteResponse(var r):
            r.reason = cut
            expected = .voteResponse(r)
        case .goodbye:
            expected = .goodbye(cut)
        default:
            break
        }
        if again != expected { problem("\(frame) comes back as \(again)") }
    }

    /// A reason cut by the encoder is a prefix of at most `maxReasonBytes`, cut inside no character.
    func checkCut(_ cut: String, of reason: String) {
        let c = Array(cut.utf8)
        let r = Array(reason.utf8)
        let limit = min(r.count, Wire.maxReasonBytes)
        if c.count > limit || c.count < limit - 3 || Array(r.prefix(c.count)) != c {
            problem("reason of \(r.count) bytes cut to \(c.count) bytes that are not its prefix")
        }
    }

    /// The GOODBYE the runtime sends with `reason` decodes back to the (cut) reason.
    func checkGoodbye(_ reason: String) {
        var out: [UInt8] = []
        Wire.encodeGoodbye(reason, into: &out)
        guard case .goodbye(let sent)? = try? Wire.decodeFrame(out) else {
            problem("the GOODBYE for \"\(reason)\" does not decode")
            return
        }
        checkCut(sent, of: reason)
    }

    /// A line handed over is not empty, holds no newline and fits the limit.
    func checkLine(_ line: [UInt8]) {
        if line.isEmpty { problem("an empty line handed over") }
        if line.contains(0x0A) { problem("a line with a newline in it handed over") }
        if line.count > Wire.maxLineBytes { problem("a line of \(line.count) bytes handed over") }
    }

    /// The message's line is one JSON object on one line that decodes to the same message, and
    /// its ids keep the limits.
    func checkMessage(_ message: JSONMessage) {
        switch message {
        case .hello(let h):
            if h.nodeID.utf8.isEmpty || h.nodeID.utf8.count > Wire.maxIDBytes { problem("JSON hello node id of \(h.nodeID.utf8.count) bytes") }
            if h.nodeAddr.utf8.count > Wire.maxAddrBytes { problem("JSON hello address of \(h.nodeAddr.utf8.count) bytes") }
        case .heartbeat(let hb):
            if hb.from.utf8.isEmpty || hb.from.utf8.count > Wire.maxIDBytes { problem("JSON heartbeat node id of \(hb.from.utf8.count) bytes") }
        default:
            break
        }
        roundTrip(message)
    }

    /// An answer the runtime would queue: encoded, it reads back as the same message.
    func answer(_ message: JSONMessage) {
        roundTrip(message)
    }

    func roundTrip(_ message: JSONMessage) {
        let line = message.encodeLine()
        guard line.first == 0x7B, line.last == 0x0A, line.firstIndex(of: 0x0A) == line.count - 1 else {
            problem("\(message.messageType) encodes to a line that is not one JSON object: \(String(decoding: line, as: UTF8.self))")
            return
        }
        do throws(WireError) {
            let again = try JSONMessage.decode(line: Array(line.dropLast()))
            if again != message { problem("\(message) encodes to \(String(decoding: line, as: UTF8.self)), which decodes to \(again)") }
        } catch {
            problem("\(message) encodes to \(String(decoding: line, as: UTF8.self)), which does not decode: \(error)")
        }
    }

    /// After an error, the decoder throws it again on every feed.
    func checkStaysFailed(_ error: WireError) {
        var later: WireError?
        switch kind {
        case .binary:
            do throws(WireError) {
                try decoder.feed([0, 0, 0, 1, 5]) { _ in problem("a frame handed over after \(error)") }
            } catch {
                later = error
            }
        case .json:
            do throws(WireError) {
                try lines.feed([0x7B, 0x7D, 0x0A]) { _ in problem("a line handed over after \(error)") }
            } catch {
                later = error
            }
        case .undecided:
            return
        }
        if later != error { problem("after \(error) a feed throws \(later.map { "\($0)" } ?? "nothing")") }
    }

    /// What the chunked reads handed over is what the whole stream, decoded at once, hands over:
    /// up to where the link closed, or all of it (and the same error, the same bytes held) when the
    /// decoder saw every read or failed.
    func checkAgainstWholeStream(_ stream: [UInt8]) {
        var whole: [Output] = []
        var wholeError: WireError?
        var held = 0
        switch kind {
        case .undecided:
            if !outputs.isEmpty { problem("outputs on a connection of no kind") }
            return
        case .binary:
            var d = FrameDecoder()
            do throws(WireError) {
                try d.feed(stream) { frame in whole.append(.frame(frame)) }
            } catch {
                wholeError = error
            }
            held = d.bufferedByteCount
            if decoderError == nil && !isClosed && held != decoder.bufferedByteCount {
                problem("chunked the decoder holds \(decoder.bufferedByteCount) bytes, whole \(held)")
            }
        case .json:
            let model = modelLines(stream, maxLineBytes: Wire.maxLineBytes)
            whole = model.lines.map { .line($0) }
            wholeError = model.tooLong ? .lineTooLong : nil
            if decoderError == nil && !isClosed && model.held != lines.bufferedByteCount {
                problem("chunked the splitter holds \(lines.bufferedByteCount) bytes, the stream's last line has \(model.held)")
            }
        }
        let n = outputs.count
        guard whole.count >= n, Array(whole[0..<n]) == outputs else {
            problem("chunked reads handed over \(outputs), the whole stream \(whole)")
            return
        }
        if decoderError != nil || !isClosed {
            if whole.count != n || wholeError != decoderError {
                problem("chunked reads handed over \(n) and \(decoderError.map { "\($0)" } ?? "no error"); the whole stream \(whole.count) and \(wholeError.map { "\($0)" } ?? "no error")")
            }
        }
    }
}

/// The lines of a stream by the protocol's rule, for comparing with `LineSplitter`: split at
/// `\n`, drop one `\r` before it, skip empty lines; a line longer than `maxLineBytes` ends the
/// stream with an error, and so does an unfinished last line that is already too long (one byte
/// more is allowed if it is a `\r`). `held` is the unfinished last line's length.
func modelLines(_ s: [UInt8], maxLineBytes: Int) -> (lines: [[UInt8]], tooLong: Bool, held: Int) {
    var out: [[UInt8]] = []
    var start = 0
    for i in s.indices where s[i] == 0x0A {
        var end = i
        if end > start && s[end - 1] == 0x0D { end -= 1 }
        if end - start > maxLineBytes { return (out, true, 0) }
        if end > start { out.append(Array(s[start..<end])) }
        start = i + 1
    }
    let held = s.count - start
    if held > maxLineBytes + 1 || (held == maxLineBytes + 1 && s.last != 0x0D) { return (out, true, 0) }
    return (out, false, held)
}

/// A splitter with a short line limit (1...64 bytes, from the stream's length), fed the same reads,
/// hands over what `modelLines` says: the limit is then reached by short inputs.
func checkLineSplitter(reads: [[UInt8]], stream: [UInt8], into problems: inout [String]) {
    let limit = 1 + stream.count % 64
    var splitter = LineSplitter(maxLineBytes: limit)
    var got: [[UInt8]] = []
    var failure: WireError?
    for read in reads where !read.isEmpty {
        do throws(WireError) {
            try splitter.feed(read) { line in got.append(Wire.copyBytes(line)) }
        } catch {
            failure = error
            break
        }
    }
    let model = modelLines(stream, maxLineBytes: limit)
    if got != model.lines || (failure != nil) != model.tooLong || (failure == nil && splitter.bufferedByteCount != model.held) {
        problems.append(
            "a splitter of limit \(limit) handed over \(got) and \(failure.map { "\($0)" } ?? "no error") holding \(splitter.bufferedByteCount); "
                + "the rule says \(model.lines) and \(model.tooLong ? "too long" : "no error") holding \(model.held)")
    }
}
