import ClusterCore

/// Something scheduled to happen in the simulation at a given time.
enum SimulationEvent: Sendable {
    /// A message arrives at `to` (it is dropped if `to` is down or cut off from `from` by then).
    case deliver(from: Int, to: Int, ElectionMessage)
    /// The driver's timer for the core's `nextDeadline` (stale if `incarnation` is old).
    case tick(node: Int, incarnation: Int)
    /// The driver's periodic heartbeat to every voter.
    case heartbeat(node: Int, incarnation: Int)
    /// The node's write in flight completes (stale if `incarnation` is old: the node crashed).
    case writeDone(node: Int, incarnation: Int, fails: Bool)
    /// The next fault: a partition, a crash, a restart, a forced election, …
    case chaos
    /// The network heals for good: no partition, no loss, every node up.
    case heal
    /// The run ends; liveness is checked.
    case end
    /// The next LSN change (``SimulationConfig/lsnChanges``).
    case lsnChange
    /// The next membership change or one-way partition.
    case adversity
    /// One node's view of the voters changes: `voter` leaves or joins it.
    case voterChange(node: Int, voter: Int, add: Bool)
    /// The next message from a stranger or hostile peer (``SimulationConfig/hostilePeers``).
    case hostile
    /// A hostile message arrives at `to`, sent as `from` (whatever the partitions).
    case inject(from: String, to: Int, ElectionMessage)
    /// The next leadership transfer request (``SimulationConfig/transfers``).
    case transfer
    /// The node's link sweep (the runtime's `LinkTable.sweep`): it closes the link to any peer
    /// silent for an election timeout.
    case sweep(node: Int, incarnation: Int)
    /// `node` sees its link to `peer` end (the peer's kernel closed it, or the peer's sweep did):
    /// the runtime steps the core with `.peerUnreachable(peer)`.
    case linkEnded(node: Int, peer: Int, incarnation: Int)
    /// The next spurious link drop between two live nodes (``SimulationConfig/linkDrops``).
    case linkDrop
    /// The failover probe's fault on the primary (``SimulationConfig/failoverFault``).
    case failoverFault
}

/// A min-heap of events by (time, insertion order): equal times pop first in, first out, so a
/// run depends on nothing but its seed. The election simulator's and the gossip simulator's.
struct EventQueue<Event> {
    private struct Entry {
        var timeNanoseconds: UInt64
        var order: UInt64
        var event: Event

        func precedes(_ other: Entry) -> Bool {
            timeNanoseconds != other.timeNanoseconds
                ? timeNanoseconds < other.timeNanoseconds : order < other.order
        }
    }

    private var heap: [Entry] = []
    private var nextOrder: UInt64 = 0

    var isEmpty: Bool { heap.isEmpty }
    var count: Int { heap.count }

    mutating func push(_ event: Event, atNanoseconds time: UInt64) {
        heap.append(Entry(timeNanoseconds: time, order: nextOrder, event: event))
        nextOrder += 1
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].precedes(heap[parent]) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> (timeNanoseconds: UInt64, event: Event)? {
        guard !heap.isEmpty else { return nil }
        heap.swapAt(0, heap.count - 1)
        let top = heap.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            guard left < heap.count else { break }
            var smallest = left
            let right = left + 1
            if right < heap.count, heap[right].precedes(heap[left]) { smallest = right }
            guard heap[smallest].precedes(heap[parent]) else { break }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
        return (top.timeNanoseconds, top.event)
    }
}

extension SplitMix64 {
    /// A uniform draw in 0..<bound (0 when bound is 0).
    mutating func uniform(_ bound: UInt64) -> UInt64 {
        bound == 0 ? 0 : next(upperBound: bound)
    }

    /// A uniform index in 0..<count.
    mutating func index(_ count: Int) -> Int {
        Int(uniform(UInt64(max(0, count))))
    }
}
