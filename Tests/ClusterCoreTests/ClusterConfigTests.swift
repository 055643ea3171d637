import Testing
@testable import ClusterCore

@Suite struct ClusterConfigTests {
    /// A config that passes every check.
    static let valid = ClusterConfig(nodeID: "n1", nodeAddr: "127.0.0.1:7001", seedNodes: ["127.0.0.1:7002"])

    @Test(arguments: [ClusterConfig(), ClusterConfig.default])
    func defaultsAreTheSeeds(_ c: ClusterConfig) {
        #expect(c.nodeID == "")
        #expect(c.nodeAddr == "")
        #expect(c.seedNodes == [])
        #expect(c.electionTimeout == .seconds(5))
        #expect(c.heartbeatInterval == .seconds(1))
        #expect(c.minQuorumSize == 2)
        #expect(c.priority == 1)
        #expect(c.enableAutoFailover == false)
        #expect(c.enableQuorumWrites == false)
        #expect(c.voteRequestTimeout == .seconds(2))
        #expect(c.maxElectionRetries == 3)
    }

    @Test func defaultEqualsInit() {
        #expect(ClusterConfig.default == ClusterConfig())
    }

    @Test func validConfigPasses() throws {
        try Self.valid.validate()
        var c = Self.valid
        c.enableAutoFailover = true
        try c.validate()
        c.electionTimeout = c.heartbeatInterval  // equal is allowed: the seed refuses only "<"
        try c.validate()
    }

    @Test func emptyNodeID() {
        var c = Self.valid
        c.nodeID = ""
        #expect(throws: ClusterError.invalidNodeID) { try c.validate() }
    }

    @Test func nodeIDLongerThanTheHelloAllows() throws {
        var c = ClusterConfig(nodeID: String(repeating: "x", count: 256), nodeAddr: "127.0.0.1:7000")
        #expect(throws: ClusterError.invalidState("node ID longer than 255 bytes")) { try c.validate() }
        c.nodeID = String(repeating: "x", count: 255)
        try c.validate()
    }

    @Test func emptyNodeAddr() {
        var c = Self.valid
        c.nodeAddr = ""
        #expect(throws: ClusterError.invalidNodeAddr) { try c.validate() }
    }

    @Test func electionTimeoutBelowHeartbeat() {
        var c = Self.valid
        c.electionTimeout = .milliseconds(999)
        #expect(throws: ClusterError.electionTimeoutTooSmall) { try c.validate() }
    }

    @Test(arguments: [0, -1, Int.min])
    func quorumBelowOne(_ q: Int) {
        var c = Self.valid
        c.minQuorumSize = q
        #expect(throws: ClusterError.invalidQuorumSize) { try c.validate() }
    }

    @Test func autoFailoverWithoutSeeds() throws {
        var c = Self.valid
        c.seedNodes = []
        try c.validate()  // fine while auto-failover is off
        c.enableAutoFailover = true
        #expect(throws: ClusterError.noSeedNodes) { try c.validate() }
    }

    @Test func faultsAreReportedInTheSeedsOrder() {
        // Every seed fault at once; fix them one by one in the seed's order.
        var c = ClusterConfig(
            nodeID: "", nodeAddr: "", seedNodes: [], electionTimeout: .seconds(1), heartbeatInterval: .seconds(2),
            minQuorumSize: 0, enableAutoFailover: true)
        #expect(throws: ClusterError.invalidNodeID) { try c.validate() }
        c.nodeID = "n1"
        #expect(throws: ClusterError.invalidNodeAddr) { try c.validate() }
        c.nodeAddr = "bad address"  // the address check comes after all of the seed's
        #expect(throws: ClusterError.electionTimeoutTooSmall) { try c.validate() }
        c.electionTimeout = .seconds(5)
        #expect(throws: ClusterError.invalidQuorumSize) { try c.validate() }
        c.minQuorumSize = 1
        #expect(throws: ClusterError.noSeedNodes) { try c.validate() }
        c.seedNodes = ["nope"]
        #expect(throws: ClusterError.invalidAddress("bad address")) { try c.validate() }
        c.nodeAddr = "127.0.0.1:7001"
        #expect(throws: ClusterError.invalidAddress("nope")) { try c.validate() }
        c.seedNodes = ["127.0.0.1:7002"]
        #expect(throws: Never.self) { try c.validate() }
    }

    @Test(arguments: ["127.0.0.1", "127.0.0.1:", ":7000", "host:port", "1.2.3.4:70000", "::1:7000"])
    func unparsableNodeAddr(_ addr: String) {
        var c = Self.valid
        c.nodeAddr = addr
        #expect(throws: ClusterError.invalidAddress(addr)) { try c.validate() }
    }

    @Test func seedThatIsNotHostPort() {
        var c = Self.valid
        c.seedNodes = ["127.0.0.1:7002", "seed-without-port"]
        #expect(throws: ClusterError.invalidAddress("seed-without-port")) { try c.validate() }
    }

    @Test func nonPositiveHeartbeat() {
        var c = Self.valid
        c.heartbeatInterval = .zero
        #expect(throws: ClusterError.invalidState("heartbeat interval must be positive")) { try c.validate() }
    }

    @Test func nonPositiveVoteTimeout() {
        var c = Self.valid
        c.voteRequestTimeout = .zero
        #expect(throws: ClusterError.invalidState("vote request timeout must be positive")) { try c.validate() }
    }

    @Test func negativeRetries() {
        var c = Self.valid
        c.maxElectionRetries = -1
        #expect(throws: ClusterError.invalidState("max election retries cannot be negative")) { try c.validate() }
    }
}

@Suite struct HostPortTests {
    @Test(arguments: [
        ("127.0.0.1:7001", "127.0.0.1", 7001),
        ("10.0.0.2:0", "10.0.0.2", 0),
        ("example.com:65535", "example.com", 65535),
        ("[::1]:7000", "::1", 7000),
        ("[fe80::1]:1", "fe80::1", 1),
        ("localhost:7003", "127.0.0.1", 7003),
    ])
    func parses(_ text: String, _ host: String, _ port: Int) throws {
        let hp = try HostPort(parsing: text)
        #expect(hp.host == host)
        #expect(hp.port == port)
    }

    @Test func descriptionBracketsIPv6() throws {
        #expect(try HostPort(parsing: "[::1]:7000").description == "[::1]:7000")
        #expect(try HostPort(parsing: "127.0.0.1:7001").description == "127.0.0.1:7001")
        #expect(try HostPort(parsing: "localhost:7").description == "127.0.0.1:7")
    }

    @Test(arguments: [
        "h:65536", "h:-1", "h:+80", "h:abc", "h:8O", "h:123456", "h:", "h: 80", "h:٣",  // bad ports
        "host", "[::1]", "[::1]7000", "[::1", "::1", "::1:7000",  // missing port / bad IPv6
        ":7000", "[]:7000", "",  // missing host
    ])
    func rejects(_ text: String) {
        #expect(throws: ClusterError.invalidAddress(text)) { try HostPort(parsing: text) }
    }
}
