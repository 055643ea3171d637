
// The voter configuration: changes by consent, one voter at a time (Raft thesis §4.1). Part of `ElectionCore` (one door: `step`), split by concern.
extension ElectionCore {
    // MARK: Voter configuration

    /// Makes `new` the configuration this node holds: its voters become ``voters``. A voter the
    /// change removed is forgotten (its priority stays); a transfer to it ends; a candidate that
    /// lost its vote stands down; after a removal a running campaign is recounted.
    mutating func applyConfiguration(
        _ new: VoterConfiguration, now: CoreInstant, _ directives: inout [ElectionDirective]
    ) {
        let removed = voters.subtracting(new.voters)
        let wasVoter = isVoter
        durable.configuration = new
        voters = Set(new.voters)
        voterList = new.voters
        isVoter = voters.contains(id)
        for voter in new.voters where voter != id { peers[voter, default: PeerView()].isVoter = true }
        for voter in removed where voter != id {
            peers[voter]?.isVoter = false
            peers[voter]?.heardAt = nil
            peers[voter]?.reportedTerm = nil
        }
        if let target = transfer?.target, !voters.contains(target) {  // as etcd aborts a transfer to a removed voter
            endTransfer(succeeded: false, reason: Self.transferTargetRemovedReason, &directives)
        }
        if !isVoter {
            if state == .candidate { becomeFollower(now: now, leader: leaderID, &directives) }
            campaign = nil
        } else if !wasVoter, followsBehind {
            setLeader(nil, &directives)  // a voter follows a leader of its own term only
        }
        // A removal may lower the quorum: recount. An addition only raises it (and a grant a
        // campaign holds from before a voter left does not count again when it is back).
        if !removed.isEmpty { tallyCampaign(now: now, &directives) }
    }

    /// A driver's own change of the voter set (``ElectionEvent/addVoter(_:)``): the configuration
    /// is edited in place, outside the voters' consent, and written with the next write.
    mutating func addVoter(_ voter: String) {
        guard !voters.contains(voter) else { return }
        var edited = VoterConfiguration(
            voters: voterList + [voter], version: Swift.max(1, configuration.version), term: configuration.term)
        if configuration.isNone { edited.version = 1 }
        var ignored: [ElectionDirective] = []
        applyConfiguration(edited, now: .zero, &ignored)
    }

    /// A driver's own removal of a voter (never this node): see `addVoter`. The quorum may
    /// shrink, so a running campaign is recounted.
    mutating func removeVoter(_ voter: String, now: CoreInstant, _ directives: inout [ElectionDirective]) {
        guard voter != id, voters.contains(voter) else { return }
        let edited = VoterConfiguration(
            voters: voterList.filter { $0 != voter }, version: configuration.version, term: configuration.term)
        applyConfiguration(edited, now: now, &directives)
    }

    /// ``ElectionEvent/changeVoters(_:)`` on this node: refused at once, or the next
    /// configuration made, written, and then sent to the old and new voters (`releaseWithheld`);
    /// it commits once a majority of its voters acknowledged storing it (`tallyConfiguration`).
    /// One voter at a time, one uncommitted change at a time, and only once this primary's own
    /// configuration (made at its election) is committed.
    mutating func startVoterChange(
        _ change: VoterChange, now: CoreInstant, _ directives: inout [ElectionDirective]
    ) {
        var newVoters = voters
        var refusal: String?
        if !settings.replicatesConfiguration {
            refusal = "this node's voters are set by its driver"
        } else if state != .leader {
            refusal = Self.changeNotLeaderReason
        } else if !configurationCommitted || voterChange != nil {
            refusal = Self.changeUncommittedReason
        } else if transfer != nil {
            refusal = Self.changeDuringTransferReason
        } else {
            switch change {
            case .add(let node):
                if node.isEmpty || node.utf8.count > 255 {
                    refusal = "not a valid node id: \"\(node)\""
                } else if voters.count >= VoterConfiguration.maxVoters {
                    refusal = "a configuration holds at most \(VoterConfiguration.maxVoters) voters"
                } else if voters.contains(node) {
                    refusal = "\(node) is already a voter"
                } else if peers[node]?.configAck != configuration.id {
                    // It must hold this configuration: a node that holds another (a stale one, or
                    // one a stranger made up) would count votes by it once it votes.
                    refusal = "\(node) has not acknowledged the primary's configuration \(configuration.id) (is it linked? it may hold another: restart it with an empty data directory)"
                }
                newVoters.insert(node)
            case .remove(let node):
                if !voters.contains(node) {
                    refusal = "\(node) is not a voter"
                } else if node == id {
                    refusal = "the primary cannot remove itself: hand leadership over first (cluster transfer)"
                } else if voters.count - 1 < settings.minQuorumSize {
                    refusal = "removing \(node) would leave \(voters.count - 1) voters, fewer than the quorum floor of \(settings.minQuorumSize) (--min-quorum)"
                }
                newVoters.remove(node)
            }
        }
        if let refusal {
            directives.append(.voterChangeEnded(change, succeeded: false, reason: refusal))
            return
        }
        let old = configuration
        applyConfiguration(old.next(voters: newVoters, term: term), now: now, &directives)
        configurationCommitted = false
        durableDirty = true
        voterChange = change
        configRecipients = Set(old.voters).union(newVoters).subtracting([id]).sorted()
        for node in configRecipients { peers[node, default: PeerView()].configAck = nil }
        configResendAt = nil  // it goes out once durable (`releaseWithheld`)
        directives.append(.configurationChanged(configuration, committed: false))
    }

    /// As primary: sends the configuration to every node it goes to that has not acknowledged
    /// it, and again every heartbeat interval until each has (a node that missed a change, was
    /// down, or restarted catches up within an interval of being back).
    mutating func resendConfiguration(now: CoreInstant, _ directives: inout [ElectionDirective]) {
        guard state == .leader, persisted.configuration == configuration else {
            configResendAt = nil
            return
        }
        tallyConfiguration(now: now, &directives)
        let message = ConfigurationMessage(from: id, term: term, configuration: configuration, committed: configurationCommitted)
        var waiting = false
        for node in configRecipients where peers[node]?.configAck != configuration.id {
            waiting = true
            send(to: node, .configuration(message), &directives)
        }
        configResendAt = waiting ? now + Swift.max(1, settings.heartbeatInterval) : nil
    }

    /// As primary: the configuration is committed once this node and enough of its voters to make
    /// ``quorumSize`` have stored it; every recipient then hears that it is.
    mutating func tallyConfiguration(now: CoreInstant, _ directives: inout [ElectionDirective]) {
        guard state == .leader, !configurationCommitted, persisted.configuration == configuration else { return }
        var stored = isVoter ? 1 : 0
        for voter in voterList where voter != id && peers[voter]?.configAck == configuration.id { stored += 1 }
        guard stored >= quorumSize else { return }
        configurationCommitted = true
        directives.append(.configurationChanged(configuration, committed: true))
        if let change = voterChange {
            voterChange = nil
            directives.append(.voterChangeEnded(change, succeeded: true, reason: nil))
        }
        let message = ConfigurationMessage(from: id, term: term, configuration: configuration, committed: true)
        for node in configRecipients { send(to: node, .configuration(message), &directives) }
    }

    /// A primary's configuration (frame CONFIG): a newer one than this node holds is stored
    /// (Raft's followers take the leader's entries, an uncommitted one of an older term replaced),
    /// and acknowledged once durable; a stale primary's is ignored. Only a voter here sends one
    /// that is taken (a node that holds none takes one from a voter of it: see `admitsSender`).
    mutating func stepConfiguration(
        _ message: ConfigurationMessage, now: CoreInstant, _ directives: inout [ElectionDirective]
    ) {
        // From the primary, or relayed by any voter of this node's configuration (a node that was
        // away catches up from whichever voter it links to first: see `admitsSender`).
        // A configuration is taken whenever it is newer than this node's, whatever the sender's
        // term: configurations are ordered by the term of the primary that made each, and one
        // newer than a committed one was made from it (a stale relay is older, and not taken).
        guard settings.replicatesConfiguration, message.from != id else { return }
        // Taken from a voter of this node's configuration (a node that holds none takes its first
        // from a voter of the configuration sent). A newer one from another sender (a primary
        // this node does not know as a voter: it missed changes) is not taken: this node asks its
        // own voters for theirs instead, at most once a heartbeat interval, and each voter that
        // holds a newer one relays it (`stepConfigurationAck`), one step closer each time.
        let trusted = voters.contains(message.from)
            || (configuration.isNone && message.configuration.contains(message.from))
        guard trusted else {
            if message.configuration.id > configuration.id, now >= nextConfigurationPull {
                nextConfigurationPull = now + Swift.max(1, settings.heartbeatInterval)
                let pull = ConfigurationAck(from: id, term: term, configuration: configuration.id)
                for voter in voterList where voter != id { send(to: voter, .configurationAck(pull), &directives) }
            }
            return
        }
        let newTerm = Swift.max(message.term, message.configuration.term)
        if newTerm > term, isWithinReach(term: newTerm, epoch: epoch) { adoptTerm(newTerm, now: now, &directives) }
        guard state != .leader || message.configuration.term > term else { return }  // a leader's own term's are its own
        if message.configuration.id > configuration.id, message.configuration.term <= term {
            applyConfiguration(message.configuration, now: now, &directives)
            configurationCommitted = message.committed
            durableDirty = true
            directives.append(.configurationChanged(configuration, committed: message.committed))
        } else if message.configuration.id == configuration.id, message.committed, !configurationCommitted {
            configurationCommitted = true
            directives.append(.configurationChanged(configuration, committed: true))
        }
        if message.term == term { configAckTo = message.from }  // the primary of this term, or a relay
        releaseWithheld(now: now, &directives)
    }

    /// A node acknowledges the configuration it stored: counted toward commit when it is this
    /// primary's current one and the node is one of its voters; a member's tells whether it may
    /// be added.
    mutating func stepConfigurationAck(
        _ ack: ConfigurationAck, now: CoreInstant, _ directives: inout [ElectionDirective]
    ) {
        if ack.term > term, voters.contains(ack.from) { adoptTerm(ack.term, now: now, &directives) }
        if ack.configuration < configuration.id, !configuration.isNone {
            // The sender holds an older configuration: tell it this one (it takes it if this node
            // is one of its voters; a primary resends to its voters anyway).
            send(to: ack.from, .configuration(ConfigurationMessage(
                from: id, term: term, configuration: configuration, committed: configurationCommitted)), &directives)
        }
        guard state == .leader, ack.term == term else { return }
        if ack.configuration != configuration.id {
            peers[ack.from]?.configAck = nil
            return
        }
        peers[ack.from, default: PeerView()].configAck = ack.configuration
        tallyConfiguration(now: now, &directives)
        if configurationCommitted, configRecipients.allSatisfy({ peers[$0]?.configAck == configuration.id }) {
            configResendAt = nil
        }
    }
}
