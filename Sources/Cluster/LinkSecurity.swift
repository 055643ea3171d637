import ClusterCore

/// A keyed link's state (PROTOCOL.md, "Keyed links"): the hellos, the keys each end uses, and,
/// once the handshake got that far, the sealer of what this node sends (after its AUTH) and
/// the opener of what the peer sends (after the peer's AUTH checked). Loop thread only.
final class LinkSecurity {
    /// This node's hello on the link, as sent, and the key it proves with and sends under.
    private(set) var ownHello: [UInt8]
    var ownKey: ClusterKey
    /// The peer's hello, as received, and the key it named.
    var peerHello: HelloMessage?
    var peerHelloBytes: [UInt8] = []
    var peerKey: ClusterKey?
    var transcript: [UInt8] = []
    var sealer: FrameSealer?
    var opener: FrameOpener?
    // The keys of the link's heartbeat datagrams are the link's own (`Link.datagramSealer`):
    // every keyed datagram reads them, one pointer fewer away.
    /// When the key the peer sends under left this node's keyring (nil: it has not): the link
    /// closes if the peer has not switched (REKEY) within an election timeout.
    var peerKeyRetiredAtNs: UInt64?

    init(ownHello: [UInt8], ownKey: ClusterKey) {
        self.ownHello = ownHello
        self.ownKey = ownKey
    }

    /// Both proofs have checked (the opener is set): the hellos' bytes and the transcript were
    /// for the proofs and the frame keys, which hold what they need of them. Dropped, they no
    /// longer cost every keyed link a few hundred bytes for as long as it lives.
    func handshakeDone() {
        ownHello = []
        peerHelloBytes = []
        transcript = []
    }
}

@available(*, unavailable)
extension LinkSecurity: Sendable {}
