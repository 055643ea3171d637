import Cluster
import Dispatch
import Foundation
import Testing
import UV

/// A fake peer on a loop of its own that speaks the binary protocol by hand, to drive a real
/// node into holding two links to it: the one the node dialled, and one the fake dials.
final class FakePeer: @unchecked Sendable {
    let id: String
    let loop: UVLoop
    private(set) var port = 0
    /// Frames received on the connection the node dialled, and on the one the fake dialled.
    let acceptedFrames = UVLocked<[WireFrame]>([])
    let dialledFrames = UVLocked<[WireFrame]>([])
    let acceptedClosed = UVLocked(false)
    let dialledClosed = UVLocked(false)
    private var listener: UVTCPListener?
    private var conns: [UVTCPConnection] = []
    private var nodePort = 0

    init(id: String) throws {
        self.id = id
        loop = try UVLoop(name: "fake-\(id)")
        let ready = DispatchSemaphore(value: 0)
        loop.execute { [self] in
            listener = try! UVTCPListener(loop: loop, host: "127.0.0.1", port: 0) { [self] conn in accepted(conn) }
            port = listener!.port
            ready.signal()
        }
        ready.wait()
    }


    private func hello() -> [UInt8] {
        var out: [UInt8] = []
        try! Wire.encodeHello(HelloMessage(nodeID: id, nodeAddr: "127.0.0.1:\(port)"), into: &out)
        return out
    }

    /// The node dialled us: answer its hello; once its first heartbeat shows the link is up,
    /// dial it ourselves, making a second link between the same pair.
    private func accepted(_ conn: UVTCPConnection) {
        conns.append(conn)
        var decoder = FrameDecoder()
        var dialled = false
        conn.onClose = { [self] in acceptedClosed.withLock { $0 = true } }
        try! conn.startReading(onRead: { [self] bytes in
            try? decoder.feed(bytes) { frame in
                acceptedFrames.withLock { $0.append(frame) }
                if case .hello(let nodeHello) = frame {
                    // The node's hello tells where it listens (its bound address: it listens on port 0).
                    if nodePort == 0, let addr = try? HostPort(parsing: nodeHello.nodeAddr) { nodePort = addr.port }
                    try? conn.write(hello())
                }
                if case .heartbeat = frame, !dialled {
                    dialled = true
                    dialNode()
                }
            }
        }, onEnd: { _ in conn.close() })
    }

    private func dialNode() {
        try! UVTCPConnection.connect(loop: loop, host: "127.0.0.1", port: nodePort, timeoutMs: 2000) { [self] result in
            guard case .success(let conn) = result else { return }
            conns.append(conn)
            var decoder = FrameDecoder()
            conn.onClose = { [self] in dialledClosed.withLock { $0 = true } }
            try! conn.startReading(onRead: { [self] bytes in
                try? decoder.feed(bytes) { frame in dialledFrames.withLock { $0.append(frame) } }
            }, onEnd: { _ in conn.close() })
            try? conn.write(hello())
        }
    }

    func shutdown() { loop.shutdown() }
}

@Suite("One link per pair", .serialized, .timeLimit(.minutes(1)))
struct DuplicateLinkTests {
    /// real id, fake id: the link dialled by the smaller id survives.
    @Test("with two links to one peer, a node keeps the one dialled by the smaller id and says goodbye on the other",
          arguments: [("a", "b"), ("c", "b")])
    func keepsTheSmallerIDsLink(real: String, fake: String) async throws {
        let peer = try FakePeer(id: fake)
        defer { peer.shutdown() }
        // The node listens on port 0; the fake dials the address the node's hello names.
        let membership = ClusterMembership(localNodeID: real, localAddr: "127.0.0.1:0")
        try membership.addNode(NodeInfo(id: fake, addr: "127.0.0.1:\(peer.port)"))
        // Dialling at once (no deferral to the smaller id): both dial, as when a deferral runs out.
        var options = NodeOptions(logger: quietLogger)
        options.dialDeferral = .zero
        let node = ElectionManager(
            config: ClusterConfig(nodeID: real, nodeAddr: "127.0.0.1:0", heartbeatInterval: .milliseconds(20)),
            membership: membership, options: options)
        try node.start()
        defer { try? node.stop() }
        let realDialled = real < fake  // then the node's own link (the one the fake accepted) survives
        let closed = await eventually(timeout: .seconds(5)) {
            realDialled ? peer.dialledClosed.withLock { $0 } : peer.acceptedClosed.withLock { $0 }
        }
        #expect(closed)
        let loserFrames = realDialled ? peer.dialledFrames.withLock { $0 } : peer.acceptedFrames.withLock { $0 }
        #expect(loserFrames.contains(.goodbye("duplicate connection")))
        // The surviving link stays up and carries heartbeats; the node saw no protocol error.
        #expect(!(realDialled ? peer.acceptedClosed.withLock { $0 } : peer.dialledClosed.withLock { $0 }))
        let stats = node.stats
        #expect(stats.duplicateLinksClosed == 1)
        #expect(stats.protocolErrors == 0)
        #expect(stats.peersConnected == 1)
    }
}

@Suite("Links to peers that do not know us yet", .serialized, .timeLimit(.minutes(1)))
struct UnknownToPeerTests {
    @Test("a peer that does not know us says goodbye before hello: no protocol error, and the link forms once it learns us")
    func goodbyeBeforeHello() async throws {
        // Port 0: each node owns its port from the start (a port reserved and released can be
        // taken in between, by any connection's ephemeral port); the addresses are told after.
        let ports = [0, 0]
        func node(_ id: String, _ port: Int) -> (ElectionManager, ClusterMembership) {
            let membership = ClusterMembership(localNodeID: id, localAddr: "127.0.0.1:\(port)")
            let config = ClusterConfig(nodeID: id, nodeAddr: "127.0.0.1:\(port)", heartbeatInterval: .milliseconds(20))
            return (ElectionManager(config: config, membership: membership,
                                    options: NodeOptions(reconnectBackoffBase: .milliseconds(10), reconnectBackoffMax: .milliseconds(40), logger: quietLogger)), membership)
        }
        let (a, aMembers) = node("a", ports[0])
        let (b, bMembers) = node("b", ports[1])
        try b.start()
        try a.start()
        defer { try? a.stop(); try? b.stop() }
        let aPort = try #require(a.listenAddress?.port), bPort = try #require(b.listenAddress?.port)
        try aMembers.addNode(NodeInfo(id: "b", addr: "127.0.0.1:\(bPort)"))  // a knows b; b does not know a
        let refused = await eventually(timeout: .seconds(5)) { b.stats.connectionsRefused >= 2 }
        #expect(refused)
        #expect(a.stats.protocolErrors == 0)
        #expect(a.stats.peersConnected == 0)
        try bMembers.addNode(NodeInfo(id: "a", addr: "127.0.0.1:\(aPort)"))
        let linked = await eventually(timeout: .seconds(5)) { a.stats.peersConnected == 1 && b.stats.peersConnected == 1 }
        #expect(linked)
        #expect(a.stats.protocolErrors == 0 && b.stats.protocolErrors == 0)
    }

    /// Two real nodes, `a` and `b`, each knowing the other at `addresses` (ids to addresses).
    /// Nodes a and b, each listening on port 0, then told of each other at once: b of a at a's
    /// address, a of b at b's (or, `aKnowsB` false, at an address where nothing listens).
    private func pair(aKnowsB: Bool = true, deferral: Duration) throws -> [String: ElectionManager] {
        var nodes: [String: ElectionManager] = [:]
        for id in ["b", "a"] {
            var options = NodeOptions(reconnectBackoffBase: .milliseconds(10), reconnectBackoffMax: .milliseconds(40), logger: quietLogger)
            options.dialDeferral = deferral
            options.bootstrap = .voters(["a", "b"])
            let node = ElectionManager(
                config: ClusterConfig(nodeID: id, nodeAddr: "127.0.0.1:0", heartbeatInterval: .milliseconds(20)),
                membership: ClusterMembership(localNodeID: id, localAddr: "127.0.0.1:0"), options: options)
            try node.start()
            nodes[id] = node
        }
        try nodes["b"]!.membership.addNode(NodeInfo(id: "a", addr: nodes["a"]!.listenAddress!.description))
        try nodes["a"]!.membership.addNode(NodeInfo(id: "b", addr: aKnowsB ? nodes["b"]!.listenAddress!.description : nowhere))
        return nodes
    }

    @Test("two nodes that learn of each other at once make one connection: the larger id waits for the smaller's dial (no duplicate to close)")
    func theLargerIDWaitsForTheSmallersDial() async throws {
        // A deferral far longer than the test: b could only link by a's dial.
        let nodes = try pair(deferral: .seconds(30))
        defer { for node in nodes.values { try? node.stop() } }
        #expect(await eventually(timeout: .seconds(10)) { nodes.values.allSatisfy { $0.stats.peersConnected == 1 } })
        let a = nodes["a"]!.stats, b = nodes["b"]!.stats
        #expect(b.connectionsAccepted == 1 && a.connectionsAccepted == 0, "accepted: a \(a.connectionsAccepted), b \(b.connectionsAccepted)")
        #expect(a.duplicateLinksClosed == 0 && b.duplicateLinksClosed == 0)
    }

    @Test("a larger id whose smaller peer cannot dial it (a wrong address) dials once its deferral is over")
    func theLargerIDDialsAfterItsDeferral() async throws {
        // a knows b at an address where nothing listens: only b's dial can make the link.
        let nodes = try pair(aKnowsB: false, deferral: .milliseconds(100))
        defer { for node in nodes.values { try? node.stop() } }
        #expect(await eventually(timeout: .seconds(10)) { nodes.values.allSatisfy { $0.stats.peersConnected == 1 } })
        #expect(nodes["a"]!.stats.connectionsAccepted == 1)
        #expect(nodes["b"]!.stats.connectionsAccepted == 0)
    }
}
