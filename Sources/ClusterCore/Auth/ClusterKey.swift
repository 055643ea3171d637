import Crypto
import FoundationEssentials

/// A cluster key: 32 random bytes that every member holds. Nodes that hold it authenticate each
/// other at link start and every frame after (see `LinkAuth`); nodes that do not are refused.
/// Its `description` names only its id, never the key.
public struct ClusterKey: Sendable, Hashable, CustomStringConvertible {
    /// The size of a key.
    public static let byteCount = 32
    /// The key's bytes. Keep them secret.
    public let bytes: [UInt8]
    /// The key's id: the first 8 bytes of HMAC-SHA256(key, "cluster-key-id v1"). It names the
    /// key on the wire (hello, announcements) and in the keyring, and reveals nothing of it.
    public let id: UInt64

    /// A key from its 32 bytes.
    public init(bytes: [UInt8]) throws(ClusterError) {
        guard bytes.count == Self.byteCount else {
            throw .invalidState("a cluster key is \(Self.byteCount) bytes, not \(bytes.count)")
        }
        self.bytes = bytes
        let mac = HMAC<SHA256>.authenticationCode(for: Array("cluster-key-id v1".utf8), using: SymmetricKey(data: bytes))
        id = mac.withUnsafeBytes { raw in raw.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) } }
    }

    /// A key from its text form: base64 of the 32 bytes (what `cluster keygen` prints), or 64
    /// hex digits. Surrounding white space is ignored.
    public init(text: String) throws(ClusterError) {
        var rest = Substring(text)
        while rest.first?.isWhitespace == true { rest.removeFirst() }
        while rest.last?.isWhitespace == true { rest.removeLast() }
        let trimmed = String(rest)
        if trimmed.utf8.count == 64, let bytes = Self.hexBytes(trimmed) {
            try self.init(bytes: bytes)
        } else if let data = Data(base64Encoded: trimmed) {
            try self.init(bytes: [UInt8](data))
        } else {
            throw .invalidState("a cluster key is base64 of 32 bytes (as `cluster keygen` prints) or 64 hex digits")
        }
    }

    /// A new key of 32 random bytes from the system's generator.
    public static func generate() -> ClusterKey {
        let key = SymmetricKey(size: .bits256)
        let bytes = key.withUnsafeBytes { Array($0) }
        // 32 bytes: cannot fail.
        return try! ClusterKey(bytes: bytes)
    }

    /// The key's text form: base64 of its bytes. Keep it secret.
    public var base64: String { Data(bytes).base64EncodedString() }

    /// The id as 16 hex digits.
    public var idString: String { Self.idString(id) }

    public var description: String { "cluster key \(idString)" }

    /// `id` as 16 hex digits.
    public static func idString(_ id: UInt64) -> String {
        let hex = String(id, radix: 16)
        return String(repeating: "0", count: max(0, 16 - hex.count)) + hex
    }

    /// A key id from 16 hex digits.
    public static func parseID(_ text: String) -> UInt64? {
        guard text.utf8.count == 16 else { return nil }
        return UInt64(text, radix: 16)
    }

    var symmetricKey: SymmetricKey { SymmetricKey(data: bytes) }

    private static func hexBytes(_ s: String) -> [UInt8]? {
        var out: [UInt8] = []
        var high: UInt8?
        for c in s.utf8 {
            let v: UInt8
            switch c {
            case 0x30...0x39: v = c - 0x30
            case 0x61...0x66: v = c - 0x61 + 10
            case 0x41...0x46: v = c - 0x41 + 10
            default: return nil
            }
            if let h = high { out.append(h << 4 | v); high = nil } else { high = v }
        }
        return high == nil ? out : nil
    }
}

/// A node's cluster keys: it accepts any of them and sends with the primary one. Rotation
/// without downtime (Serf's `keyring`): install the new key on every node, make it primary on
/// every node (`use`), then remove the old one everywhere. Thread-safe; a node's runtime and
/// its discovery may share one.
public final class ClusterKeyring: @unchecked Sendable, CustomStringConvertible {
    private let lock = CoreLock()
    /// The primary key first.
    private var entries: [ClusterKey]
    private var changes: UInt64 = 0

    /// A keyring whose primary key is `primary`; `others` are accepted too.
    public init(primary: ClusterKey, others: [ClusterKey] = []) {
        var entries = [primary]
        for key in others where !entries.contains(where: { $0.id == key.id }) { entries.append(key) }
        self.entries = entries
    }

    private func locked<R>(_ body: () throws(ClusterError) -> R) throws(ClusterError) -> R {
        try lock.withLock(body)
    }

    /// The key this node sends with.
    public var primary: ClusterKey { try! locked { entries[0] } }

    /// Every key, the primary first.
    public var keys: [ClusterKey] { try! locked { entries } }

    /// Counts the changes made (install, use, remove): a runtime notices them by it.
    public var version: UInt64 { try! locked { changes } }

    /// The key whose id is `id`, if the keyring holds it.
    public func key(id: UInt64) -> ClusterKey? {
        try! locked { entries.first { $0.id == id } }
    }

    /// Adds `key` (accepted from now on; the primary stays). Installing a key held already
    /// changes nothing.
    public func install(_ key: ClusterKey) {
        try! locked {
            guard !entries.contains(where: { $0.id == key.id }) else { return }
            entries.append(key)
            changes &+= 1
        }
    }

    /// Makes the key with this id primary: the node sends with it from now on (its links switch
    /// to it at once). Throws if the keyring does not hold it.
    public func use(id: UInt64) throws(ClusterError) {
        try locked { () throws(ClusterError) in
            guard let index = entries.firstIndex(where: { $0.id == id }) else {
                throw .invalidState("no key \(ClusterKey.idString(id)) in the keyring")
            }
            guard index != 0 else { return }
            let key = entries.remove(at: index)
            entries.insert(key, at: 0)
            changes &+= 1
        }
    }

    /// Removes the key with this id: frames and announcements made with it are refused from now
    /// on (links still using it are closed). The primary key cannot be removed.
    public func remove(id: UInt64) throws(ClusterError) {
        try locked { () throws(ClusterError) in
            guard let index = entries.firstIndex(where: { $0.id == id }) else {
                throw .invalidState("no key \(ClusterKey.idString(id)) in the keyring")
            }
            guard index != 0 else {
                throw .invalidState("key \(ClusterKey.idString(id)) is the primary key: make another key primary first")
            }
            entries.remove(at: index)
            changes &+= 1
        }
    }

    public var description: String {
        "keyring [" + keys.enumerated().map { $0.offset == 0 ? "\($0.element.idString) (primary)" : $0.element.idString }
            .joined(separator: ", ") + "]"
    }
}

/// A JSON `keyring` request (PROTOCOL.md): `op` is `list`, `install` (with `key`, the key's
/// text), `use` or `remove` (with `key_id`). A node accepts it from its own host only.
public struct KeyringRequest: Sendable, Equatable, Codable {
    public var op: String
    public var key: String?
    public var keyID: String?

    public init(op: String, key: String? = nil, keyID: String? = nil) {
        self.op = op
        self.key = key
        self.keyID = keyID
    }

    enum CodingKeys: String, CodingKey { case op, key, keyID = "key_id" }
}

/// The answer to a `keyring` request: the keyring's key ids after it (the primary first), or
/// why it failed.
public struct KeyringResponse: Sendable, Equatable, Codable {
    public var success: Bool
    public var primary: String?
    public var keys: [String]
    public var error: String?

    public init(success: Bool, primary: String? = nil, keys: [String] = [], error: String? = nil) {
        self.success = success
        self.primary = primary
        self.keys = keys
        self.error = error
    }
}
