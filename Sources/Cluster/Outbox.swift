import ClusterCore
import UV

/// Everything a node writes, and the one place where write limits live. Loop thread only.
///
/// Bytes for a link are appended to its buffer during a pass of the loop and written in one
/// `write` per link by ``flush()``. Each connection's backlog (the buffer plus what libuv has
/// queued and the kernel has not taken) is capped:
/// - over the soft limit (`NodeOptions.maxQueuedBytes`) heartbeats to it are skipped and reading
///   from it is paused (a client that sends requests and never reads stops being served) until
///   its queue drains; for a JSON client the limit is `NodeOptions.maxClientReplyBytes`;
/// - over the hard limit (`NodeOptions.maxQueuedBytesHard`) the connection is closed.
final class Outbox {
    let softLimit: Int
    let hardLimit: Int
    /// The soft limit of a JSON client (at most `softLimit`).
    let clientLimit: Int
    /// Links with bytes appended during this pass.
    @exclusivity(unchecked) private var dirty: [Link] = []
    /// The other buffer of `dirty`: a flush swaps them, so that a pass allocates nothing.
    @exclusivity(unchecked) private var spare: [Link] = []
    /// The node's heartbeat datagrams, sent with every flush (set when the node starts; the
    /// runtime owns both).
    unowned(unsafe) var datagrams: DatagramChannel?
    /// Called for a link over the hard limit; the link table closes it.
    var onOverflow: (Link) -> Void = { _ in }
    /// Called when a link paused for its backlog has drained: resumes it (a JSON client first
    /// handles the input it holds).
    var onDrained: (Link) -> Void = { $0.conn.resumeReading() }
    /// The open link with this id (the link table's), for callbacks that must not hold a link;
    /// nil once the runtime is gone.
    var findLink: (Int) -> Link? = { _ in nil }
    /// Counters, read into `NodeStats`.
    @exclusivity(unchecked) private(set) var readsPaused: UInt64 = 0
    private(set) var overflowsClosed: UInt64 = 0

    init(softLimit: Int, hardLimit: Int, clientLimit: Int? = nil) {
        self.softLimit = max(1, softLimit)
        self.hardLimit = max(self.softLimit, hardLimit)
        self.clientLimit = max(1, min(self.softLimit, clientLimit ?? self.softLimit))
    }

    /// The bytes waiting to go out on `link`: its buffer and the libuv write queue.
    @inline(__always)
    func backlog(_ link: Link) -> Int { link.out.count &+ link.conn.writeQueueSize }

    /// True when the link is over the soft limit: heartbeats to it are skipped.
    @inline(__always)
    func isCongested(_ link: Link) -> Bool { backlog(link) > softLimit }

    /// Lets `encode` append to the link's buffer (no copy), and schedules the write. Returns
    /// false (appending nothing) when the link is closed or over the hard limit, which closes it.
    @discardableResult
    @inline(__always)
    func append(to link: Link, _ encode: (inout [UInt8]) -> Void) -> Bool {
        guard !link.isClosed else { return false }
        if backlog(link) > hardLimit {
            overflow(link)
            return false
        }
        encode(&link.out)
        if !link.isDirty {
            link.isDirty = true
            dirty.append(link)
        }
        return true
    }

    /// Appends ready-made bytes.
    @discardableResult
    func append(_ bytes: [UInt8], to link: Link) -> Bool {
        append(to: link) { $0.append(contentsOf: bytes) }
    }

    /// Writes what each link queued during this pass, one write per link, then applies the
    /// limits: pause reading over the soft limit, close over the hard one.
    func flush() {
        if let datagrams { datagrams.flush() }
        guard !dirty.isEmpty else { return }
        // `overflow` may close links and so re-enter: work on the list swapped out of `dirty`
        // (into the spare buffer, so that neither list is copied or allocated).
        var batch = spare
        spare = []
        swap(&batch, &dirty)
        defer {
            batch.removeAll(keepingCapacity: true)
            spare = batch
        }
        for link in batch {
            link.isDirty = false
            guard !link.isClosed, !link.out.isEmpty, !link.blackholed else {
                link.out.removeAll(keepingCapacity: true)
                continue
            }
            // A failed write closes the connection (UVTCPConnection), and the link table hears of
            // it from the close callback; nothing else to do here.
            try? link.conn.write(link.out)
            link.out.removeAll(keepingCapacity: true)
            let queued = link.conn.writeQueueSize
            if queued > hardLimit {
                overflow(link)
            } else if queued > (link.kind == .json ? clientLimit : softLimit), !link.readingPaused {
                pauseReading(link)
            }
        }
    }

    /// Writes one link's buffer now (before closing it, say).
    func flush(_ link: Link) {
        guard !link.isClosed, !link.out.isEmpty, !link.blackholed else { return }
        try? link.conn.write(link.out)
        link.out.removeAll(keepingCapacity: true)
    }

    /// Pauses reading from `link` until its write queue drains to half its limit; then
    /// `onDrained` resumes it. The queue must hold bytes libuv queued (a write that has to
    /// complete), or nothing would say that it drained.
    func pauseReading(_ link: Link) {
        link.readingPaused = true
        readsPaused &+= 1
        link.conn.pauseReading()
        link.conn.writeLowWaterMark = (link.kind == .json ? clientLimit : softLimit) / 2
        let linkID = link.id
        let findLink = self.findLink  // not `self`: no weak reference to the outbox is ever made
        let onDrained = self.onDrained
        link.conn.onWriteDrained = {
            guard let link = findLink(linkID), !link.isClosed, link.readingPaused else { return }
            link.readingPaused = false
            link.conn.onWriteDrained = nil
            onDrained(link)
        }
    }

    private func overflow(_ link: Link) {
        guard !link.isClosed else { return }
        overflowsClosed &+= 1
        link.out.removeAll()
        onOverflow(link)
    }
}
