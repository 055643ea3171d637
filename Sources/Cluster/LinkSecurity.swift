import ClusterCore

/// A keyed link's state (PROTOCOL.md, "Keyed links"): the hellos, the keys each end uses, and,
/// once the handshake got that far, the sealer of what this node sends (after its AUTH) and
/// the opener of what the peer sends (after the peer's AUTH checked). Loop thread only.
final class LinkSecurity {
    /// This node's hello on the link, as sent, and the key it proves with and sends under.
    let ownHello: [UInt8]
    var ownKey: ClusterKey
    /// The peer's hello, as received, and the key it named.
    var peerHello: HelloMessage?
    var peerHelloBytes: [UInt8] = []
    var peerKey: ClusterKey?
    var transcript: [UInt8] = []
    var sealer: FrameSealer?
    var opener: FrameOpener?
    /// When the key the peer sends under left this node's keyring (nil: it has not): the link
    /// closes if the peer has not switched (REKEY) within an election timeout.
    var peerKeyRetiredAtNs: UInt64?

    init(ownHello: [UInt8], ownKey: ClusterKey) {
        self.ownHello = ownHello
        self.ownKey = ownKey
    }
}

@available(*, unavailable)
extension LinkSecurity: Sendable {}
