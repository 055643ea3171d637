/// Splits a binary byte stream into frames, whatever the sizes of the chunks TCP delivers.
///
/// Frames that lie wholly inside a chunk are decoded straight from it; only the bytes of a frame
/// that the chunk ends inside are copied, into a buffer that keeps its capacity. A length field
/// above `Wire.maxFrameBytes` is rejected as soon as its 4 bytes are seen, so the buffer never
/// holds more than one frame of at most 4 + 64 KiB. Decoding a heartbeat does not allocate.
///
/// After an error the stream cannot be trusted: every later `feed` throws the same error
/// (send a GOODBYE with its description and close the connection), until `reset()`.
package struct FrameDecoder: Sendable {
    /// The bytes of the frame the last chunk ended inside.
    private var partial: [UInt8] = []
    /// The first error seen, thrown again by every later feed.
    package private(set) var failure: WireError?

    /// Nothing is allocated until a chunk ends inside a frame (rare: a read usually holds whole
    /// frames), so that an idle link costs no buffer.
    package init() {}

    /// The bytes held of an incomplete frame.
    package var bufferedByteCount: Int { partial.count }

    /// Forgets the incomplete frame and any error (keeps the buffer's capacity).
    package mutating func reset() {
        partial.removeAll(keepingCapacity: true)
        failure = nil
    }

    /// Feeds the next chunk of the stream; calls `onFrame` with each frame it completes, in order.
    /// An error from `onFrame` stops the feed and is thrown, like a decoding error.
    package mutating func feed(_ chunk: RawSpan, _ onFrame: (WireFrame) throws(WireError) -> Void) throws(WireError) {
        try feedRaw(chunk) { (frame) throws(WireError) in try onFrame(Wire.decodeFrame(frame)) }
    }

    /// Feeds the next chunk of the stream; calls `onFrame` with the bytes of each whole frame it
    /// completes (length field included; valid during the call only), in order, undecoded: a
    /// keyed link checks a frame's tag before decoding it (`FrameOpener`). Only the length
    /// field is checked here.
    package mutating func feedRaw(_ chunk: RawSpan, _ onFrame: (RawSpan) throws(WireError) -> Void) throws(WireError) {
        if let failure { throw failure }
        do {
            try split(chunk, onFrame)
        } catch {
            failure = error
            throw error
        }
    }

    /// Feeds the next chunk of the stream, held in an array.
    package mutating func feed(_ chunk: [UInt8], _ onFrame: (WireFrame) throws(WireError) -> Void) throws(WireError) {
        try feed(chunk.span.bytes, onFrame)
    }

    private mutating func split(_ chunk: RawSpan, _ onFrame: (RawSpan) throws(WireError) -> Void) throws(WireError) {
        let count = chunk.byteCount
        var offset = 0
        if !partial.isEmpty {
            // Complete the length field, then the frame, from the head of the chunk.
            while partial.count < 4 && offset < count {
                partial.append(WireRead.u8(chunk, offset))
                offset += 1
            }
            if partial.count < 4 { return }
            let size = try Wire.frameSize(length: WireRead.u32(partial.span.bytes, 0))
            let take = min(size - partial.count, count - offset)
            append(chunk, from: offset, count: take)
            offset += take
            if partial.count < size { return }
            // The frame is handed over from the buffer, which is emptied after (also on an error:
            // the decoder is failed then anyway).
            defer { partial.removeAll(keepingCapacity: true) }
            try onFrame(partial.span.bytes)
        }
        // Whole frames straight from the chunk.
        while count - offset >= 4 {
            let size = try Wire.frameSize(length: WireRead.u32(chunk, offset))
            if count - offset < size { break }
            let frame = chunk.extracting(offset..<(offset + size))
            offset += size
            try onFrame(frame)
        }
        // Keep the start of the frame the chunk ends inside (its length, if seen, is checked).
        append(chunk, from: offset, count: count - offset)
    }

    private mutating func append(_ chunk: RawSpan, from offset: Int, count: Int) {
        for i in offset..<(offset + count) { partial.append(WireRead.u8(chunk, i)) }
    }
}
