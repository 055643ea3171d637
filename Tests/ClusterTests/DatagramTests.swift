import Cluster
import Dispatch
import Foundation
import Testing
import UV

/// Heartbeats as UDP datagrams beside the links (PROTOCOL.md, "Datagram heartbeats").
@Suite(.timeLimit(.minutes(1)))
struct DatagramTests {
    /// The counters of every node, summed.
    static func totals(_ cluster: TestCluster) -> (heartbeats: UInt64, datagrams: UInt64, rejected: UInt64) {
        cluster.running.reduce((0, 0, 0)) { acc, id in
            let s = cluster.manager(id)!.stats
            return (acc.0 + s.heartbeatsReceived, acc.1 + s.datagramsReceived, acc.2 + s.datagramsRejected)
        }
    }

    @Test("once a peer reports them arriving, heartbeats go by datagram alone")
    func heartbeatsGoByDatagram() async throws {
        let cluster = try TestCluster(size: 3)
        defer { cluster.shutdown() }
        let leader = try #require(await cluster.waitForAgreedLeader(among: cluster.ids))
        for id in cluster.ids { #expect(cluster.manager(id)!.datagramPort != nil) }
        // Every node has had datagrams from both others (the first heartbeats went both ways).
        #expect(await eventually(timeout: .seconds(5)) {
            cluster.ids.allSatisfy { cluster.manager($0)!.stats.datagramsReceived > 10 }
        })
        let before = Self.totals(cluster)
        // Ten more rounds of every node (30 ms apart).
        #expect(await eventually(timeout: .seconds(5)) { Self.totals(cluster).heartbeats >= before.heartbeats + 60 })
        let after = Self.totals(cluster)
        // Every heartbeat counted came as a datagram: none came on a link alone.
        #expect(after.datagrams - before.datagrams >= after.heartbeats - before.heartbeats)
        #expect(after.rejected == before.rejected)
        #expect(TestCluster.agreedLeader(cluster.watch.latest, among: cluster.ids) == leader)
    }

    @Test("datagrams dropped at a follower: its heartbeats come on the links, and no election starts; then datagrams again")
    func fallBackToTheLinks() async throws {
        let cluster = try TestCluster(size: 3)
        defer { cluster.shutdown() }
        let leader = try #require(await cluster.waitForAgreedLeader(among: cluster.ids))
        let term = cluster.watch.latest[leader]!.term
        let follower = cluster.ids.first { $0 != leader }!
        let node = cluster.manager(follower)!
        #expect(await eventually(timeout: .seconds(5)) { node.stats.datagramsReceived > 10 })
        node.injectFaults(NetworkFaults(dropsDatagrams: true))
        let dropped = node.stats
        // Five election timeouts (300 ms): long enough for any election the loss could cause.
        #expect(await eventually(timeout: .seconds(5)) {
            let s = node.stats
            return s.heartbeatsReceived >= dropped.heartbeatsReceived + 100 && s.datagramsRejected >= dropped.datagramsRejected + 20
        })
        let during = node.stats
        #expect(during.datagramsReceived == dropped.datagramsReceived)
        for id in cluster.ids {
            let status = try #require(cluster.watch.latest[id])
            #expect(status.term == term, "\(id) changed term while datagrams were dropped")
        }
        #expect(TestCluster.agreedLeader(cluster.watch.latest, among: cluster.ids) == leader)
        node.injectFaults(NetworkFaults())
        #expect(await eventually(timeout: .seconds(5)) { node.stats.datagramsReceived >= during.datagramsReceived + 20 })
        #expect(cluster.watch.latest[follower]!.term == term)
        #expect(cluster.watch.doubleLeaderTerms.isEmpty)
    }

    @Test("datagrams from a stranger (garbage, unknown tokens, forged terms, keyed ones to an unkeyed node) are counted and change nothing")
    func strangersChangeNothing() async throws {
        let cluster = try TestCluster(size: 3)
        defer { cluster.shutdown() }
        let leader = try #require(await cluster.waitForAgreedLeader(among: cluster.ids))
        let term = cluster.watch.latest[leader]!.term
        let target = cluster.ids.first { $0 != leader }!
        let node = cluster.manager(target)!
        let port = try #require(node.datagramPort)
        let rejectedBefore = node.stats.datagramsRejected

        // A forged heartbeat: the leader's tag, a huge term, a guessed token; unkeyed and keyed.
        let forged = HeartbeatFrame(
            seq: .max - 1, epoch: 9, term: 1 << 40, lsn: 1 << 40, role: .primary, senderTag: Wire.fnv1a64(leader))
        var datagrams: [[UInt8]] = [[], [0xD1], Array(repeating: 0xFF, count: 80), Array(repeating: 0, count: 2000)]
        for token in [UInt64(0), 1, 0xDEAD_BEEF, .max] {
            var out: [UInt8] = []
            HeartbeatDatagram.encode(forged, token: token, into: &out)
            datagrams.append(out)
            var keyed = out
            keyed[1] = 1
            keyed += Array(repeating: 0xAB, count: LinkAuth.tagBytes)
            datagrams.append(keyed)
        }
        var truncated: [UInt8] = []
        HeartbeatDatagram.encode(forged, token: 1, into: &truncated)
        datagrams.append(Array(truncated.dropLast()))
        // The empty datagram is no heartbeat datagram either, but libuv does not report it as one.
        let counted = datagrams.count - 1

        #expect(try sendDatagrams(datagrams.filter { !$0.isEmpty }, to: port) == counted)
        #expect(await eventually(timeout: .seconds(5)) { node.stats.datagramsRejected >= rejectedBefore + UInt64(counted) })
        #expect(node.stats.datagramsRejected == rejectedBefore + UInt64(counted))
        #expect(node.stats.protocolErrors == 0)
        // Two more election timeouts (20 rounds from each peer): nothing moved.
        let heard = node.stats.heartbeatsReceived
        #expect(await eventually(timeout: .seconds(5)) { node.stats.heartbeatsReceived >= heard + 40 })
        for id in cluster.ids {
            #expect(cluster.watch.latest[id]?.term == term)
            #expect(cluster.watch.latest[id]?.leaderID == leader)
        }
        #expect(((try? node.membership.node(leader))?.term ?? 0) < 1 << 40)
    }

    @Test("with datagrams off, heartbeats stay on the links and no hello offers a port")
    func datagramsOff() async throws {
        let cluster = try TestCluster(size: 2) { _, options in options.datagramHeartbeats = false }
        defer { cluster.shutdown() }
        _ = try #require(await cluster.waitForAgreedLeader(among: cluster.ids))
        #expect(await eventually(timeout: .seconds(5)) { Self.totals(cluster).heartbeats > 20 })
        for id in cluster.ids {
            #expect(cluster.manager(id)!.datagramPort == nil)
            #expect(cluster.manager(id)!.stats.datagramsSent == 0)
            #expect(cluster.manager(id)!.stats.datagramsReceived == 0)
        }
    }
}
