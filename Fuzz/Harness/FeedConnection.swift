import ClusterCore

// The fuzz target: the bytes one TCP connection carries, handed to a real node runtime as reads
// of an accepted connection (see `FuzzNode`), and fed to fresh decoders as well (see
// `decodeConnection`).
//
// An input is the connection's byte stream, cut into reads by `chunkCut`: the bytes between two
// cuts arrive as one read, so the fuzzer chooses the read boundaries. The stream is the input
// without the cuts.

/// The three bytes that end one read of the connection and start the next.
let chunkCut: [UInt8] = [0xFF, 0xFE, 0xFD]

/// Cuts an input into the reads of one connection (empty reads included; they are not delivered).
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

/// Runs one fuzz input (the stream cut into reads by `chunkCut`) and returns every broken
/// expectation (none when all is well). `thorough`: see `feedConnection(reads:thorough:)`.
///
/// The harness's only unsafe pointer: `bytes` is libFuzzer's input, borrowed for this call and
/// copied at once.
@discardableResult
func feedConnection(_ bytes: UnsafeRawBufferPointer, thorough: Bool = false) -> [String] {
    feedConnection(reads: chunks(of: [UInt8](bytes)), thorough: thorough).problems
}

/// Hands the reads to the node as one accepted connection (the runtime checks), then feeds them
/// to fresh decoders (the pure checks): what both found, and what the node did. The fuzzer
/// decodes the JSON messages again only when the node's state changed (the state check needs
/// what the input claims), and round-trips them through the encoder for one input in four (by
/// length): JSON decoding is most of a run's cost. `thorough` (replays and tests) does both for
/// every input.
func feedConnection(reads: [[UInt8]], thorough: Bool = true) -> ConnectionReport {
    let node = FuzzNode.shared
    var report = node.run(reads: reads)
    let length = reads.reduce(0) { $0 + $1.count }
    let decoded = decodeConnection(
        reads: reads, messages: thorough || report.stateChange != nil, roundTrips: thorough || length % 4 == 0)
    if let change = report.stateChange {
        report.problems += node.checkState(
            before: change.before, after: change.after, claims: decoded.claims, announced: decoded.announced)
    }
    report.problems = decoded.problems + report.problems
    return report
}
