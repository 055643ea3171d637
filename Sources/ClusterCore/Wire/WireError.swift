/// Everything the wire codec can reject. Each case reads as a sentence in a log line; a node
/// sends `description` to the peer (in a GOODBYE frame or an `error` line) before closing.
public enum WireError: Error, Equatable, Hashable, Sendable, CustomStringConvertible {
    /// A binary frame's length field is above `Wire.maxFrameBytes` (seen from the 4-byte header alone).
    case frameTooLarge(UInt32)
    /// A binary frame's length field is 0: a frame holds at least its type byte.
    case frameTooShort
    /// A binary frame of a type this version does not know.
    case unknownType(UInt8)
    /// A hello of a protocol version this node does not speak.
    case badVersion(Int)
    /// A frame body ends before the named field is complete.
    case truncated(String)
    /// A frame body has bytes after its last field.
    case trailingBytes(type: UInt8, count: Int)
    /// The named string field is not valid UTF-8.
    case badUTF8(String)
    /// A field holds a value the protocol does not allow (a role of 7, a set reserved bit, an empty id…).
    case malformed(String)
    /// A JSON line is longer than `Wire.maxLineBytes`.
    case lineTooLong
    /// A JSON line is not valid JSON, or not a valid object of its `message_type`.
    case badJSON(String)
    /// A JSON line's `message_type` is not one this version knows.
    case unknownMessageType(String)
    /// A keyed link's frame or proof did not check (see `LinkAuth`): replayed, reordered,
    /// altered, reflected, or made without the cluster key.
    case unauthenticated(String)

    public var description: String {
        switch self {
        case .frameTooLarge(let len): return "frame length \(len) exceeds the limit of \(Wire.maxFrameBytes) bytes"
        case .frameTooShort: return "frame length 0: a frame holds at least its type byte"
        case .unknownType(let t): return "unknown frame type \(t)"
        case .badVersion(let v): return "unsupported protocol version \(v) (this node speaks version \(Wire.version))"
        case .truncated(let field): return "frame ends inside \(field)"
        case .trailingBytes(let t, let n): return "\(n) unexpected trailing byte\(n == 1 ? "" : "s") in a frame of type \(t)"
        case .badUTF8(let field): return "\(field) is not valid UTF-8"
        case .malformed(let why): return "malformed message: \(why)"
        case .lineTooLong: return "line longer than \(Wire.maxLineBytes) bytes"
        case .badJSON(let why): return "bad JSON: \(why)"
        case .unknownMessageType(let t): return "unknown message_type \"\(t)\""
        case .unauthenticated(let why): return "authentication failed: \(why)"
        }
    }
}
