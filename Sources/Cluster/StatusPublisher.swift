import ClusterCore
import Dispatch
import UV

/// The view of the election that any thread may read, refreshed by the loop after each change.
struct ElectionSnapshot: Sendable, Equatable {
    var state: ElectionState = .follower
    var term: UInt64 = 0
    var leaderID: String?
    var epoch: UInt64 = 0
    var listenAddress: HostPort?
    var transferTarget: String?
}

/// What an observer of `ElectionManager.addObserver` is told after each change.
public struct ElectionStatus: Sendable, Equatable, CustomStringConvertible {
    public var state: ElectionState
    public var term: UInt64
    public var leaderID: String?
    /// The fencing epoch: the newest primary's epoch this node knows. Never decreases.
    public var epoch: UInt64

    public init(state: ElectionState, term: UInt64, leaderID: String?, epoch: UInt64) {
        self.state = state
        self.term = term
        self.leaderID = leaderID
        self.epoch = epoch
    }

    public var description: String { "\(state) term \(term) leader \(leaderID ?? "-") epoch \(epoch)" }
}

/// The callbacks of `ElectionManager.setCallbacks`.
struct TransitionCallbacks: Sendable {
    var onLeader: (@Sendable () -> Void)?
    var onFollower: (@Sendable () -> Void)?
    var onCandidate: (@Sendable () -> Void)?
}

/// Publishes a node's election status to other threads: a locked snapshot that any thread
/// reads, observers and transition callbacks run in order on a serial queue of their own (off
/// the loop and off the caller's thread). `publish` and `transition` are called on the loop.
final class StatusPublisher: Sendable {
    let snapshot = UVLocked(ElectionSnapshot())
    let callbacks = UVLocked(TransitionCallbacks())
    /// Observers by registration number, told in that order.
    let observers = UVLocked([(id: Int, observe: @Sendable (ElectionStatus) -> Void)]())
    private let nextObserver = UVLocked(0)
    private let last = UVLocked(ElectionStatus(state: .follower, term: 0, leaderID: nil, epoch: 0))
    private let queue: DispatchQueue

    init(label: String) {
        queue = DispatchQueue(label: label)
    }

    /// Stores the snapshot, and tells observers when the status changed.
    func publish(_ snap: ElectionSnapshot) {
        snapshot.withLock { $0 = snap }
        let status = ElectionStatus(state: snap.state, term: snap.term, leaderID: snap.leaderID, epoch: snap.epoch)
        let changed = last.withLock { last -> Bool in
            guard last != status else { return false }
            last = status
            return true
        }
        guard changed else { return }
        let observers = observers.withLock { $0 }
        if !observers.isEmpty {
            queue.async { for observer in observers { observer.observe(status) } }
        }
    }

    /// Adds an observer; returns its number, for `removeObserver`.
    @discardableResult
    func addObserver(_ observe: @escaping @Sendable (ElectionStatus) -> Void) -> Int {
        let id = nextObserver.withLock { n -> Int in
            n += 1
            return n
        }
        observers.withLock { $0.append((id, observe)) }
        return id
    }

    func removeObserver(_ id: Int) {
        observers.withLock { $0.removeAll { $0.id == id } }
    }

    /// Runs the callback registered for a transition to `state`.
    func transition(to state: ElectionState) {
        let callbacks = callbacks.withLock { $0 }
        let callback: (@Sendable () -> Void)?
        switch state {
        case .leader: callback = callbacks.onLeader
        case .follower: callback = callbacks.onFollower
        case .candidate: callback = callbacks.onCandidate
        }
        if let callback { queue.async(execute: callback) }
    }
}
