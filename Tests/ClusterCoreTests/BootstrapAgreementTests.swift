import ClusterCore
import Testing

/// The first voters agreed among nodes started with `--bootstrap-expect N`: a node locks at most
/// one set, and a set is decided only when every member locked it.
@Suite("Bootstrap agreement")
struct BootstrapAgreementTests {
    static let settle: UInt64 = 100_000_000
    static func at(_ ms: UInt64) -> CoreInstant { CoreInstant(nanoseconds: ms * 1_000_000) }

    /// Every node hears every other's message until nothing changes; then time passes; repeated.
    static func converge(_ nodes: inout [String: BootstrapAgreement], links: (String, String) -> Bool = { _, _ in true }) {
        var now: UInt64 = 0
        for _ in 0..<10 {
            for _ in 0..<5 {
                for a in nodes.keys.sorted() {
                    for b in nodes.keys.sorted() where a != b && links(a, b) {
                        _ = nodes[b]!.received(nodes[a]!.message, from: a, now: at(now))
                    }
                }
            }
            now += 150
            for id in nodes.keys.sorted() { _ = nodes[id]!.tick(now: at(now)) }
        }
    }

    static func agreements(_ ids: [String], expect: Int) -> [String: BootstrapAgreement] {
        Dictionary(uniqueKeysWithValues: ids.map { ($0, BootstrapAgreement(id: $0, expect: expect, settle: settle, now: .zero)) })
    }

    @Test("three nodes that see each other lock the same three and decide them")
    func threeAgree() {
        var nodes = Self.agreements(["n1", "n2", "n3"], expect: 3)
        #expect(nodes["n1"]!.decision == nil)
        Self.converge(&nodes)
        for id in ["n1", "n2", "n3"] { #expect(nodes[id]!.decision == ["n1", "n2", "n3"]) }
    }

    @Test("five nodes that expect three: the three smallest decide; the other two never do, and join")
    func moreThanExpected() {
        var nodes = Self.agreements(["a", "b", "c", "d", "e"], expect: 3)
        Self.converge(&nodes)
        for id in ["a", "b", "c"] { #expect(nodes[id]!.decision == ["a", "b", "c"]) }
        for id in ["d", "e"] { #expect(nodes[id]!.decision == nil && nodes[id]!.locked == ["a", "b", "c"]) }
    }

    @Test("a node that hears of a configured node before it locks joins that cluster, and never locks")
    func configuredPeerFirst() {
        var node = BootstrapAgreement(id: "x", expect: 1, settle: Self.settle, now: .zero)
        let configured = BootstrapMessage(expect: 0, configured: true, locked: true, nodes: ["a", "b", "c"])
        let changed = node.received(configured, from: "a", now: Self.at(1))
        #expect(changed)
        let locked = node.tick(now: Self.at(10_000))
        #expect(!locked && node.locked == nil && node.decision == nil && node.joinsExistingCluster)
    }

    @Test("a lone node expecting one decides itself once it has waited the settle time without hearing a cluster")
    func loneNode() {
        var node = BootstrapAgreement(id: "x", expect: 1, settle: Self.settle, now: .zero)
        let early = node.tick(now: Self.at(50))
        #expect(!early && node.decision == nil)
        let settled = node.tick(now: Self.at(100))
        #expect(settled && node.decision == ["x"])
    }

    @Test("locks that disagree (views that did not settle) decide nothing, and say why; another N is left out")
    func disagreement() {
        // a saw b and c; b saw a and d: each locks a different set, neither decides.
        var a = BootstrapAgreement(id: "a", expect: 3, settle: Self.settle, now: .zero)
        _ = a.received(BootstrapMessage(expect: 3, configured: false, locked: false, nodes: ["b"]), from: "b", now: .zero)
        _ = a.received(BootstrapMessage(expect: 3, configured: false, locked: false, nodes: ["c"]), from: "c", now: .zero)
        _ = a.tick(now: Self.at(200))
        #expect(a.locked == ["a", "b", "c"])
        _ = a.received(BootstrapMessage(expect: 3, configured: false, locked: true, nodes: ["a", "b", "d"]), from: "b", now: Self.at(201))
        #expect(a.decision == nil)
        #expect(a.disagreement?.contains("locks disagree") == true)
        var other = BootstrapAgreement(id: "z", expect: 3, settle: Self.settle, now: .zero)
        _ = other.received(BootstrapMessage(expect: 5, configured: false, locked: false, nodes: ["y"]), from: "y", now: .zero)
        #expect(other.seen == ["z"] && other.problem?.contains("expects to bootstrap with 5") == true)
    }
}
