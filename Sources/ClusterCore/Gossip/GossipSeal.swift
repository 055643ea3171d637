import Crypto

/// The gossip layer's seal on a keyed cluster: every gossip datagram and every full-state frame
/// carries the id of the cluster key it is sealed under and a tag (HMAC-SHA256, truncated to 16
/// bytes) over all its bytes before the tag, under a gossip key derived from that cluster key and
/// the cluster's name. The sender seals under the keyring's primary key; a receiver takes any key
/// of its keyring (so that a key can be rotated: install everywhere, use, remove), and drops what
/// is not sealed, sealed under a key it lacks, or whose tag does not check.
///
/// The trailer, after the datagram's or the frame's last byte (PROTOCOL.md, "Gossip membership"):
///
/// ```
/// u64  the id of the cluster key (ClusterKey.id)
/// 16   tag: HMAC-SHA256(gossip key, the bytes before the tag), its first 16 bytes
/// gossip key = HKDF-SHA256(cluster key, salt "cluster-gossip v1", info: the cluster's name)
/// ```
///
/// Authenticated, not encrypted: as on keyed links, ids and addresses travel in the clear. There
/// is no replay window (as in memberlist): what gossip says is ordered by incarnations, terms and
/// epochs, so an old datagram sent again says nothing its receiver takes (an ack's sequence
/// number is one probe's). Not thread-safe: one node's loop.
package final class GossipSeal {
    /// The bytes a seal adds: the key id and the tag.
    package static let trailerBytes = 8 + LinkAuth.tagBytes

    /// Why sealed bytes were refused.
    package enum Refusal: Error, Equatable, Sendable, CustomStringConvertible {
        /// Shorter than a trailer.
        case truncated
        /// Sealed under a key this node does not hold.
        case unknownKey(UInt64)
        /// The tag does not check: altered, or sealed under another cluster's key or name.
        case badTag

        package var description: String {
            switch self {
            case .truncated: "too short to carry a seal"
            case .unknownKey(let id): "sealed under key \(ClusterKey.idString(id)), which is not in this node's keyring"
            case .badTag: "its tag does not check (altered, or another cluster's)"
            }
        }
    }

    private let clusterName: String
    /// One MAC per key of the keyring, by key id.
    private var macs: [UInt64: FrameMAC] = [:]
    private var primaryID: UInt64

    /// A seal for the keys of `keys` (the first is the one sealing), in cluster `clusterName`.
    package init(keys: [ClusterKey], clusterName: String) {
        precondition(!keys.isEmpty, "GossipSeal: no key")
        self.clusterName = clusterName
        primaryID = keys[0].id
        use(keys)
    }

    /// Takes the keyring's keys after a change (the first seals from now on).
    package func use(_ keys: [ClusterKey]) {
        guard let first = keys.first else { return }
        var next: [UInt64: FrameMAC] = [:]
        for key in keys { next[key.id] = macs[key.id] ?? FrameMAC(key: Self.gossipKey(key, clusterName: clusterName)) }
        macs = next
        primaryID = first.id
    }

    /// The gossip key of `key` in cluster `clusterName`.
    static func gossipKey(_ key: ClusterKey, clusterName: String) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(
            inputKeyMaterial: key.symmetricKey, salt: Array("cluster-gossip v1".utf8), info: Array(clusterName.utf8),
            outputByteCount: 32)
    }

    /// Seals the bytes of `out` from `start` to its end: appends the primary key's id and the tag.
    package func seal(_ out: inout [UInt8], from start: Int = 0) {
        guard let mac = macs[primaryID] else { return }
        out.appendBE(primaryID)
        var tag: (UInt64, UInt64) = (0, 0)
        withUnsafeMutableBytes(of: &tag) { tagBytes in
            out.withUnsafeBytes { raw in mac.tag(counter: 0, UnsafeRawBufferPointer(rebasing: raw[start...]), into: tagBytes) }
        }
        withUnsafeBytes(of: &tag) { out.append(contentsOf: $0) }
    }

    /// Checks the seal of `bytes` (sealed whole); the sealed content is all but the last
    /// `trailerBytes`.
    package func open(_ bytes: [UInt8]) throws(Refusal) {
        guard bytes.count >= Self.trailerBytes else { throw .truncated }
        let tagStart = bytes.count - LinkAuth.tagBytes
        var keyID: UInt64 = 0
        for i in (tagStart - 8)..<tagStart { keyID = keyID << 8 | UInt64(bytes[i]) }
        guard let mac = macs[keyID] else { throw .unknownKey(keyID) }
        let valid = bytes.withUnsafeBytes { raw in
            mac.verify(counter: 0, UnsafeRawBufferPointer(rebasing: raw[..<tagStart]), tag: UnsafeRawBufferPointer(rebasing: raw[tagStart...]))
        }
        guard valid else { throw .badTag }
    }
}
