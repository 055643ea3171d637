extension ElectionCore {
    /// Rules of the core that a test may switch off, to show that the simulator's invariant
    /// checker catches a core without them. Each switch restores the behaviour the rule replaced.
    package struct DisabledRules: OptionSet, Sendable, Hashable {
        package var rawValue: UInt8
        package init(rawValue: UInt8) { self.rawValue = rawValue }

        /// Grant votes and adopt their terms while a live primary is heard (thesis §4.2.3).
        package static let lease = DisabledRules(rawValue: 1 << 0)
        /// Vote for any candidate from the network, and take heartbeats and responses from anyone.
        package static let knownVoters = DisabledRules(rawValue: 1 << 1)
        /// Accept any term and epoch below `maxAcceptedTerm` (no `maxTermJump`, no epoch + 1).
        package static let reach = DisabledRules(rawValue: 1 << 2)
        /// Read the sender from the message body instead of the transport's `from`.
        package static let senderBinding = DisabledRules(rawValue: 1 << 3)
        /// Vote for a candidate whatever its epoch, and promise no epoch by a grant (the seed's rules).
        package static let epochRule = DisabledRules(rawValue: 1 << 4)
        /// Take the end of any peer's link as crash evidence against the leader, not only the
        /// leader's own link (issue 9): the lease then ends on a link that says nothing of the leader.
        package static let evidenceFromLeaderLinkOnly = DisabledRules(rawValue: 1 << 5)
        /// A follower whose election timer was brought forward by crash evidence (its link to its
        /// leader ended) stands at once, without a PreVote round (issue 16, hole 6): it raises the
        /// term even while the rest of the cluster holds a lease on a live primary.
        package static let preVoteOnCrashEvidence = DisabledRules(rawValue: 1 << 6)
        /// Vote for a candidate whose voter configuration is behind the voter's (issue 15): a
        /// committed configuration can then be lost.
        package static let configurationRule = DisabledRules(rawValue: 1 << 7)
    }
}
