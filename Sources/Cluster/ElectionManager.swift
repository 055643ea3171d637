import ClusterCore
import Logging
import UV

/// Leader election for one node: Raft-style terms and votes, aware of LSNs and priority, on its
/// own libuv loop. The seed's `ElectionManager`, made real.
///
/// `start()` listens on `config.nodeAddr` (port 0 picks a free port: see `listenAddress`), keeps
/// one persistent link to every member of `membership`, heartbeats them every
/// `heartbeatInterval`, and (with `enableAutoFailover`) elects a new primary when the primary is
/// lost. The rules (PreVote, CheckQuorum, a real majority, durable votes, the LSN and epoch
/// restrictions) are in `ElectionCore` and the README.
///
/// Every method may be called from any thread. Calls that change the election run on the loop and
/// return once it has done so. Callbacks run on a serial queue of their own: off the caller's
/// thread and off the loop's, in order, once per transition.
public final class ElectionManager: Sendable {
    let runtime: NodeRuntime
    /// The configuration this manager was made with.
    public let config: ClusterConfig
    /// The membership it reads members from and writes heartbeats into.
    public let membership: ClusterMembership

    /// Creates a manager: a follower at term 0 (or at the durable state found in
    /// `options.dataDirectory`). Nothing is sent until `start()`.
    public init(config: ClusterConfig, membership: ClusterMembership, options: NodeOptions = NodeOptions()) {
        self.config = config
        self.membership = membership
        membership.setLocalPriority(config.priority)
        runtime = NodeRuntime(config: config, membership: membership, options: options)
    }

    deinit {
        runtime.shutdown()
    }

    /// The current election term.
    public var currentTerm: UInt64 { runtime.publisher.snapshot.withLock { $0.term } }

    /// The current leader's id, if one is known (the seed returns "" where this is nil): the
    /// election's, or where it has learned none, the membership's live primary (as the seed's
    /// `GetLeaderID` reads the membership).
    public var leaderID: String? {
        runtime.publisher.snapshot.withLock { $0.leaderID } ?? membership.healthyPrimary(timeout: config.electionTimeout)?.id
    }

    /// This node's election state.
    public var state: ElectionState { runtime.publisher.snapshot.withLock { $0.state } }

    /// True when this node is the leader (the primary).
    public var isLeader: Bool { state == .leader }

    /// The epoch of the newest primary this node knows (its own, or the one in the primary's
    /// heartbeats): a fencing token that every new primary increments. Also `membership.epoch`.
    public var epoch: UInt64 { runtime.publisher.snapshot.withLock { $0.epoch } }

    /// The address the node listens on, once started (with the port the kernel picked for 0).
    public var listenAddress: HostPort? { runtime.publisher.snapshot.withLock { $0.listenAddress } }

    /// The node's counters.
    public var stats: NodeStats { runtime.sync { $0.currentStats() } ?? NodeStats() }

    /// Answers a vote request (the seed's `HandleVoteRequest`): refuses a stale term, adopts a
    /// higher one (becoming follower), refuses a second candidate in one term and a candidate
    /// whose LSN (or epoch) is behind. With a data directory a grant is durable before this
    /// returns: the call waits for the write, which runs off the event loop. Called on the event
    /// loop's own thread (a shared loop), it cannot wait: a grant that needs a write is then
    /// answered as a refusal (the vote may still be recorded; refusing is always safe).
    public func handleVoteRequest(_ request: VoteRequest) -> VoteResponse {
        let runtime = self.runtime
        let shutDown = VoteResponse(voterID: config.nodeID, term: currentTerm, voteGranted: false, reason: "node is shut down")
        if runtime.loop.inEventLoop {
            let answer = UVLocked<VoteResponse?>(nil)
            runtime.answerVoteRequest(request, vouched: true) { response in answer.withLock { $0 = response } }
            return answer.withLock { $0 } ?? VoteResponse(
                voterID: config.nodeID, term: runtime.core.term, voteGranted: false,
                reason: "the vote waits for a durable write; call handleVoteRequest off the event loop's thread")
        }
        let answer = UVLocked<VoteResponse?>(nil)
        let answered = UVSemaphore()
        guard runtime.loop.execute({
            runtime.answerVoteRequest(request, vouched: true) { response in
                answer.withLock { $0 = response }
                answered.signal()
            }
        }) else { return shutDown }
        answered.wait()  // the runtime answers every request exactly once (a write always reports)
        return answer.withLock { $0 } ?? shutDown
    }

    /// Restarts the election timeout, as a heartbeat from the leader does.
    public func resetElectionTimer() {
        _ = runtime.sync { rt in
            if let leader = rt.core.leaderID, leader != rt.config.nodeID {
                rt.step(.receive(from: leader, .heartbeat(HeartbeatMessage(
                    from: leader, seq: 0, epoch: rt.core.epoch, term: rt.core.term, lsn: 0, role: .primary))))
            } else {
                rt.step(.tick)
            }
        }
    }

    /// Registers callbacks for transitions to leader, follower and candidate.
    public func setCallbacks(
        onLeader: @escaping @Sendable () -> Void,
        onFollower: @escaping @Sendable () -> Void,
        onCandidate: @escaping @Sendable () -> Void
    ) {
        runtime.publisher.callbacks.withLock {
            $0 = TransitionCallbacks(onLeader: onLeader, onFollower: onFollower, onCandidate: onCandidate)
        }
    }

    /// Adds an observer, told (on the callback queue, in order) the new status after every change
    /// of state, term, known leader or epoch.
    public func addObserver(_ observer: @escaping @Sendable (ElectionStatus) -> Void) {
        runtime.publisher.addObserver(observer)
    }

    /// The status now, then after every change of state, term, known leader or epoch, as an
    /// `AsyncSequence` (what `addObserver` is told). The stream keeps the newest
    /// `bufferingNewest` statuses a slow reader has not taken; it ends when the reading task is
    /// cancelled or the stream is dropped.
    public func statusUpdates(bufferingNewest: Int = 64) -> AsyncStream<ElectionStatus> {
        let (stream, continuation) = AsyncStream<ElectionStatus>.makeStream(bufferingPolicy: .bufferingNewest(max(1, bufferingNewest)))
        let publisher = runtime.publisher
        // Registered and read under the publisher's order: the first element is the status now,
        // and every change after it follows on the callback queue.
        let id = publisher.addObserver { continuation.yield($0) }
        continuation.yield(status)
        continuation.onTermination = { _ in publisher.removeObserver(id) }
        return stream
    }

    /// The current status (state, term, leader, epoch) in one consistent read.
    public var status: ElectionStatus {
        runtime.publisher.snapshot.withLock { ElectionStatus(state: $0.state, term: $0.term, leaderID: $0.leaderID, epoch: $0.epoch) }
    }

    /// Starts the node: listens, links to the members, heartbeats; with auto-failover, elects.
    public func start() throws(ClusterError) {
        try config.validate()
        try runtime.start()
    }

    /// Forces an election now (the seed's `StartElection`): the term goes up by one at once, the
    /// node votes for itself and asks the members for votes in the background. Returns with the
    /// state `.candidate` (or `.leader` when its vote alone is a quorum).
    public func startElection() throws(ClusterError) {
        if let error = runtime.storageError { throw error }
        let ok = runtime.sync { rt -> Bool in
            rt.step(.startElection)
            return true
        }
        if ok == nil { throw .invalidState("the node's event loop has stopped") }
    }

    /// Steps down from leader (the seed's `StepDown`: "forces this node to step down from
    /// leader (if it is one)"). A `term` newer than the current one is adopted whatever the state
    /// (a candidate becomes a follower of that term). Throws `.notLeader` only when this node is
    /// not the leader and `term` is not newer: then there is nothing to step down from.
    public func stepDown(term: UInt64) throws(ClusterError) {
        let refused = runtime.sync { rt -> Bool in
            let leader = rt.core.state == .leader
            let newer = term > rt.core.term
            if leader || newer { rt.step(.stepDown(term: term)) }
            return !leader && !newer
        }
        guard let refused else { throw .invalidState("the node's event loop has stopped") }
        if refused { throw .notLeader }
    }

    /// Hands leadership over (a planned switchover, Patroni's `switchover`, MongoDB's
    /// `rs.stepDown()`): this node, the primary, picks `target` (or the most up-to-date voter:
    /// highest LSN from its heartbeats, then priority), waits until the target's LSN has caught
    /// up with its own (the application replicates meanwhile), tells it to stand at once, and
    /// steps down when it wins. Returns the new primary's id once this node has heard it lead;
    /// throws `.transferFailed` with the reason when the node is not the primary, the target is
    /// not a voter, a transfer is already under way, or it did not complete within an election
    /// timeout (the old primary then goes on leading). While it runs, `transferTarget` names the
    /// target: an application should hold new writes, as etcd does.
    public func transferLeadership(to target: String? = nil) async throws(ClusterError) -> String {
        let runtime = self.runtime
        let result: Result<String, ClusterError> = await withCheckedContinuation { continuation in
            let started = runtime.loop.execute {
                runtime.transferLeadership(to: target) { continuation.resume(returning: $0) }
            }
            if !started { continuation.resume(returning: .failure(.invalidState("the node's event loop has stopped"))) }
        }
        return try result.get()
    }

    /// The voter configuration this node holds (``VoterConfiguration/none`` before it has one)
    /// and whether it knows it committed.
    public var voterConfiguration: (configuration: VoterConfiguration, committed: Bool) {
        runtime.sync { ($0.core.configuration, $0.core.configurationCommitted) } ?? (.none, false)
    }

    /// Changes the voter set by one voter, through this node as primary and with the consent of
    /// the current voters (Raft's single-server change): returns the new configuration once a
    /// majority of its voters stored it. Throws `.voterChangeFailed` with the reason when this
    /// node is not the primary, a change (or the primary's own configuration, made at its
    /// election) is not committed yet, a transfer is under way, the node to add is not a linked
    /// member, the node to remove is the primary or would leave fewer voters than the quorum
    /// floor, or the primary stopped leading before the change committed (it may then still take
    /// effect: the next primary may hold it).
    public func changeVoters(_ change: VoterChange) async throws(ClusterError) -> VoterConfiguration {
        let runtime = self.runtime
        let result: Result<VoterConfiguration, ClusterError> = await withCheckedContinuation { continuation in
            let started = runtime.loop.execute {
                runtime.changeVoters(change) { continuation.resume(returning: $0) }
            }
            if !started { continuation.resume(returning: .failure(.invalidState("the node's event loop has stopped"))) }
        }
        return try result.get()
    }

    /// Makes a member a voter (see ``changeVoters(_:)``).
    @discardableResult
    public func addVoter(_ nodeID: String) async throws(ClusterError) -> VoterConfiguration {
        try await changeVoters(.add(nodeID))
    }

    /// Makes a voter a member that does not vote (see ``changeVoters(_:)``).
    @discardableResult
    public func removeVoter(_ nodeID: String) async throws(ClusterError) -> VoterConfiguration {
        try await changeVoters(.remove(nodeID))
    }

    /// The target of the leadership transfer under way, if any.
    public var transferTarget: String? { runtime.publisher.snapshot.withLock { $0.transferTarget } }

    /// Leaves the cluster on purpose: a primary hands over first (see `transferLeadership`), so
    /// that the others need not wait out an election timeout; then the node stops (every link
    /// gets a goodbye). Returns the new primary when there was a handover.
    @discardableResult
    public func leave() async -> String? {
        var successor: String?
        if isLeader {
            successor = try? await transferLeadership()
        }
        // With the gossip layer, the others hear that this member left (not that it failed).
        let runtime = self.runtime
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            if runtime.loop.execute({ runtime.leaveGossip { done.resume() } }) == false { done.resume() }
        }
        runtime.stop()
        return successor
    }

    /// Stops the node: a leader steps down first (a stopped node cannot hear a quorum), then the
    /// listener and every link are closed. The term and vote are kept; `start()` may be called again.
    public func stop() throws(ClusterError) {
        runtime.stop()
    }

    /// Sets this node's log position (also readable through the membership).
    public func setLocalLSN(_ lsn: UInt64) {
        membership.setLocalLSN(lsn)
        _ = runtime.sync { $0.setLocalLSN(lsn) }
    }

    /// `cluster bench mesh`: starts this node's probes in flight (see `BenchHooks`).
    package func startMeshProbes() {
        _ = runtime.sync { rt in
            rt.peerProtocol.startMesh()
            rt.outbox.flush()
        }
    }

    /// `cluster bench failover --mode crash`: stops as a killed process does (no goodbye).
    package func crash() { runtime.crash() }

    /// The UDP port the node takes heartbeat datagrams on (nil: datagrams are off, or the node
    /// is stopped).
    package var datagramPort: Int? { runtime.sync { $0.datagrams.port.map(Int.init) } ?? nil }

    /// Fault injection for tests: drop peer traffic (see `NetworkFaults`).
    package func injectFaults(_ faults: NetworkFaults) {
        _ = runtime.sync { rt in
            rt.faults = faults
            for id in faults.blackholedLinks { rt.links.peers[id]?.link?.blackholed = true }
        }
    }

    /// The node's status report, as the JSON `status` query returns it.
    public func statusReport() -> StatusResponse? {
        runtime.sync { $0.status() }
    }

    // MARK: - Cluster keys

    /// The node's cluster keys (`NodeOptions.keyring`); nil: the node has no key.
    public var keyring: ClusterKeyring? { runtime.options.keyring }

    /// Adds a key to the keyring: accepted from now on (rotation, step 1, on every node).
    public func installKey(_ key: ClusterKey) throws(ClusterError) {
        try changeKeyring { $0.install(key) }
    }

    /// Makes the key with this id primary: every link switches to it at once, without closing
    /// (rotation, step 2, once every node holds it).
    public func useKey(id: UInt64) throws(ClusterError) {
        try changeKeyring { keyring throws(ClusterError) in try keyring.use(id: id) }
    }

    /// Removes the key with this id (never the primary): links still under it are closed
    /// (rotation, step 3, once every node uses the new key).
    public func removeKey(id: UInt64) throws(ClusterError) {
        try changeKeyring { keyring throws(ClusterError) in try keyring.remove(id: id) }
    }

    private func changeKeyring(_ change: (ClusterKeyring) throws(ClusterError) -> Void) throws(ClusterError) {
        guard let keyring = runtime.options.keyring else { throw .invalidState("this node has no cluster key") }
        try change(keyring)
        _ = runtime.sync { $0.checkKeyring() }
    }
}
