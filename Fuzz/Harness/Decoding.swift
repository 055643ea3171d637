import ClusterCore

// The pure half of the harness: the input's reads fed to fresh decoders (a `FrameDecoder` or a
// `LineSplitter`, by the first byte, as the runtime picks), checked against the whole stream
// decoded at once and against the encoders. What it decodes also says which ids the input names
// (`claims`), which the runtime half needs to tell allowed changes of cluster state from others.

/// What a decoder handed over, in order.
enum Output: Equatable {
    case frame(WireFrame)
    case line([UInt8])
}

/// One connection's reads through the decoders, and the problems found on the way.
struct DecodedConnection {
    /// The connection's kind by its first byte (nil: no byte at all).
    var kind: WireKind?
    /// Everything the chunked decoder handed over, until it threw.
    var outputs: [Output] = []
    /// The error the chunked decoder threw, if any.
    var decoderError: WireError?
    /// The ids the input names as its sender: binary and JSON hellos, JSON vote request
    /// candidates, JSON heartbeat senders.
    var claims: Set<String> = []
    /// Announced nodes (valid or not) and the addresses announced for them.
    var announced: [String: Set<String>] = [:]
    var problems: [String] = []
    var decodesMessages = true
    var roundTrips = true

    mutating func problem(_ text: String) {
        if problems.count < 8 { problems.append(text) }
    }
}

/// Feeds the reads to a decoder of the connection's kind, one read per feed, and checks what it
/// hands over (see the README's fuzzing section). JSON lines are decoded into messages (their
/// claims noted, their ids checked) only with `messages`, and their messages round-tripped
/// through the encoder only with `roundTrips`: JSON decoding is most of a run's cost.
func decodeConnection(reads: [[UInt8]], messages: Bool = true, roundTrips: Bool = true) -> DecodedConnection {
    var d = DecodedConnection()
    d.decodesMessages = messages || roundTrips
    d.roundTrips = roundTrips
    let stream = reads.flatMap { $0 }
    guard let first = stream.first else { return d }
    d.kind = Wire.classify(firstByte: first)
    switch d.kind {
    case .binary: d.decodeFrames(reads: reads, stream: stream)
    case .json: d.decodeLines(reads: reads, stream: stream)
    default: break
    }
    checkLineSplitter(reads: reads, stream: stream, into: &d)
    return d
}

extension DecodedConnection {
    // MARK: Frames

    mutating func decodeFrames(reads: [[UInt8]], stream: [UInt8]) {
        var decoder = FrameDecoder()
        var fed: [UInt8] = []
        var nextFrameStart = 0
        var got: [WireFrame] = []
        for read in reads where !read.isEmpty {
            fed += read
            do throws(WireError) {
                try decoder.feed(read) { frame in got.append(frame) }
            } catch {
                decoderError = error
            }
            for frame in got {
                outputs.append(.frame(frame))
                checkFrame(frame, fed: fed, nextFrameStart: &nextFrameStart)
            }
            got.removeAll()
            if decoder.bufferedByteCount > 4 + Wire.maxFrameBytes {
                problem("the frame decoder holds \(decoder.bufferedByteCount) bytes, more than one frame")
            }
            if let error = decoderError {
                do throws(WireError) {
                    try decoder.feed([0, 0, 0, 1, 5]) { _ in problem("a frame handed over after \(error)") }
                    problem("after \(error) a feed throws nothing")
                } catch {
                    if error != decoderError { problem("after \(decoderError!) a feed throws \(error)") }
                }
                break
            }
        }
        var whole: [Output] = []
        var wholeError: WireError?
        var wholeDecoder = FrameDecoder()
        do throws(WireError) {
            try wholeDecoder.feed(stream) { frame in whole.append(.frame(frame)) }
        } catch {
            wholeError = error
        }
        compare(whole: whole, wholeError: wholeError)
        if decoderError == nil && wholeDecoder.bufferedByteCount != decoder.bufferedByteCount {
            problem("chunked the decoder holds \(decoder.bufferedByteCount) bytes, whole \(wholeDecoder.bufferedByteCount)")
        }
        for case .frame(.hello(let hello)) in outputs { claims.insert(hello.nodeID) }
    }

    /// The frame's bytes are the next frame of the stream, they encode back to the same bytes (a
    /// reason longer than the encoder sends comes back cut), and its fields keep the limits.
    mutating func checkFrame(_ frame: WireFrame, fed: [UInt8], nextFrameStart: inout Int) {
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
            checkID(t.from, "timeout-now sender id")
        case .member(let m):
            checkID(m.nodeID, "member node id")
            if m.nodeAddr.utf8.count > Wire.maxAddrBytes { problem("member address of \(m.nodeAddr.utf8.count) bytes") }
        case .configuration(let c):
            checkID(c.from, "configuration sender id")
            if c.configuration.voters.isEmpty || c.configuration.voters.count > Wire.maxVoters {
                problem("configuration of \(c.configuration.voters.count) voters")
            }
            c.configuration.voters.forEach { checkID($0, "configuration voter") }
        case .configurationAck(let a):
            checkID(a.from, "configuration ack sender id")
        case .bootstrap(let b):
            if b.nodes.count > Wire.maxVoters { problem("bootstrap of \(b.nodes.count) nodes") }
            b.nodes.forEach { checkID($0, "bootstrap node") }
        case .leave(let id):
            checkID(id, "leave node id")
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
        var expected = frame
        switch again {
        case .voteResponse(let r):
            cut = r.reason
            if case .voteResponse(var mine) = frame {
                mine.reason = cut
                expected = .voteResponse(mine)
            }
        case .goodbye(let r):
            cut = r
            expected = .goodbye(cut)
        default:
            cut = ""
        }
        checkCut(cut, of: reason)
        if again != expected { problem("\(frame) comes back as \(again)") }
    }

    mutating func checkID(_ id: String, _ field: String) {
        if id.utf8.isEmpty || id.utf8.count > Wire.maxIDBytes { problem("\(field) of \(id.utf8.count) bytes") }
    }

    /// A reason cut by the encoder is a prefix of at most `maxReasonBytes`, cut inside no character.
    mutating func checkCut(_ cut: String, of reason: String) {
        let c = Array(cut.utf8)
        let r = Array(reason.utf8)
        let limit = min(r.count, Wire.maxReasonBytes)
        if c.count > limit || c.count < limit - 3 || Array(r.prefix(c.count)) != c {
            problem("reason of \(r.count) bytes cut to \(c.count) bytes that are not its prefix")
        }
    }

    // MARK: Lines

    mutating func decodeLines(reads: [[UInt8]], stream: [UInt8]) {
        var splitter = LineSplitter()  // the runtime's: `Wire.maxLineBytes`
        for read in reads where !read.isEmpty {
            var got: [[UInt8]] = []
            do throws(WireError) {
                try splitter.feed(read) { line in got.append(Wire.copyBytes(line)) }
            } catch {
                decoderError = error
            }
            for line in got {
                outputs.append(.line(line))
                checkLine(line)
            }
            if splitter.bufferedByteCount > Wire.maxLineBytes + 1 {
                problem("the line splitter holds \(splitter.bufferedByteCount) bytes, more than one line")
            }
            if let error = decoderError {
                do throws(WireError) {
                    try splitter.feed([0x7B, 0x7D, 0x0A]) { _ in problem("a line handed over after \(error)") }
                    problem("after \(error) a feed throws nothing")
                } catch {
                    if error != decoderError { problem("after \(decoderError!) a feed throws \(error)") }
                }
                break
            }
        }
        let model = modelLines(stream, maxLineBytes: Wire.maxLineBytes)
        compare(whole: model.lines.map { .line($0) }, wholeError: model.tooLong ? .lineTooLong : nil)
        if decoderError == nil && model.held != splitter.bufferedByteCount {
            problem("chunked the splitter holds \(splitter.bufferedByteCount) bytes, the stream's last line has \(model.held)")
        }
    }

    /// A line handed over is not empty, holds no newline and fits the limit; if it decodes, what
    /// it claims is noted, and the message keeps the id limits and round-trips.
    mutating func checkLine(_ line: [UInt8]) {
        if line.isEmpty { problem("an empty line handed over") }
        if line.contains(0x0A) { problem("a line with a newline in it handed over") }
        if line.count > Wire.maxLineBytes { problem("a line of \(line.count) bytes handed over") }
        guard decodesMessages, let message = try? JSONMessage.decode(line: line) else { return }
        switch message {
        case .hello(let h):
            checkID(h.nodeID, "JSON hello node id")
            if h.nodeAddr.utf8.count > Wire.maxAddrBytes { problem("JSON hello address of \(h.nodeAddr.utf8.count) bytes") }
            claims.insert(h.nodeID)
        case .heartbeat(let hb):
            checkID(hb.from, "JSON heartbeat node id")
            claims.insert(hb.from)
        case .voteRequest(let r):
            claims.insert(r.candidateID)
        case .announcement(let a):
            announced[a.nodeID, default: []].insert(a.nodeAddr)
        default:
            break
        }
        if roundTrips, let trouble = roundTrip(message) { problem(trouble) }
    }

    // MARK: Chunked against whole

    /// The chunked reads handed over what the whole stream, decoded at once, hands over, and
    /// threw the same error.
    mutating func compare(whole: [Output], wholeError: WireError?) {
        if whole != outputs || wholeError != decoderError {
            problem(
                "chunked reads handed over \(outputs) and \(decoderError.map { "\($0)" } ?? "no error"); "
                    + "the whole stream \(whole) and \(wholeError.map { "\($0)" } ?? "no error")")
        }
    }
}

/// The message's line is one JSON object on one line that decodes to the same message; nil when
/// it is, what is wrong otherwise.
func roundTrip(_ message: JSONMessage) -> String? {
    let line = message.encodeLine()
    guard line.first == 0x7B, line.last == 0x0A, line.firstIndex(of: 0x0A) == line.count - 1 else {
        return "\(message.messageType) encodes to a line that is not one JSON object: \(String(decoding: line, as: UTF8.self))"
    }
    do throws(WireError) {
        let again = try JSONMessage.decode(line: Array(line.dropLast()))
        if again != message { return "\(message) encodes to \(String(decoding: line, as: UTF8.self)), which decodes to \(again)" }
    } catch {
        return "\(message) encodes to \(String(decoding: line, as: UTF8.self)), which does not decode: \(error)"
    }
    return nil
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
func checkLineSplitter(reads: [[UInt8]], stream: [UInt8], into d: inout DecodedConnection) {
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
        d.problem(
            "a splitter of limit \(limit) handed over \(got) and \(failure.map { "\($0)" } ?? "no error") holding \(splitter.bufferedByteCount); "
                + "the rule says \(model.lines) and \(model.tooLong ? "too long" : "no error") holding \(model.held)")
    }
}
