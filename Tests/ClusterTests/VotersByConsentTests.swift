import Cluster
import Foundation
import Testing

/// Issue 15 against real `cluster agent` processes: the voters are a set that only the voters
/// change. On the code before it, linking made a voter, so each attack here worked.
@Suite("Voters by consent (agents)", .serialized, .timeLimit(.minutes(2)))
struct VotersByConsentTests {
    /// What a stranger with a TCP connection to an unkeyed cluster tries, in one go, against every
    /// agent: announcements of made-up members (the seed's JSON form), a binary HELLO for each, a
    /// made-up member heartbeating as primary at term + 1000, and a JSON heartbeat claiming
    /// primary at term 2^62.
    static func attack(_ agent: AgentProcess, term: UInt64, round: Int) async throws {
        let fakes = (1...4).map { "fake\(round)-\($0)" }
        for fake in fakes {
            let announcement = AnnouncementMessage(nodeID: fake, nodeAddr: "127.0.0.1:\(9 + fakes.firstIndex(of: fake)!)")
            _ = try? ClusterClient.request(.announcement(announcement), to: agent.address, timeout: .seconds(2))
        }
        var clients: [WireClient] = []
        for (i, fake) in fakes.enumerated() {
            let client = try await WireClient.connect(port: agent.address.port)
            client.hello(as: fake)
            client.heartbeat(as: fake, seq: 1, term: term + 1000, epoch: 0, role: i == 0 ? .primary : .replica)
            client.sendFrame {
                try Wire.encodeVoteRequest(VoteRequest(candidateID: fake, term: term + 1000, lastLSN: 1 << 40), into: &$0)
            }
            clients.append(client)
        }
        let json = try await WireClient.connect(port: agent.address.port, json: true)
        json.send(line: #"{"message_type":"hello","version":1,"node_id":"\#(fakes[1])","node_addr":"127.0.0.1:1","priority":1}"#)
        json.send(line: #"{"message_type":"heartbeat","node_id":"\#(fakes[1])","seq":2,"epoch":9,"term":4611686018427387904,"lsn":0,"role":2}"#)
        // Every connection has been read by the time the node answers a status on the last one.
        json.send(line: #"{"message_type":"status"}"#)
        _ = await json.wait(timeout: .seconds(5)) { $0.lines.contains { $0.contains("status_response") } }
        for client in clients { client.close() }
        json.close()
    }

    @Test("a stranger's made-up members, hellos, heartbeats at term + 1000 and JSON claims change no voter, term, primary or quorum; a crash is still replaced")
    func madeUpVoters() async throws {
        let cluster = try await AgentCluster.start(size: 3)
        let ids = cluster.ids
        let leader = try #require(await cluster.agreedLeader(among: ids))
        let before = try #require(cluster.agent(leader).status())
        let voters = try #require(before.configuration?.voters)
        #expect(voters == ids)
        for (round, id) in ids.enumerated() { try await Self.attack(cluster.agent(id), term: before.term, round: round) }
        for id in ids {
            let status = try #require(cluster.agent(id).status(timeout: .seconds(2)))
            #expect(status.configuration?.voters == voters, "\(id) counts \(status.configuration?.voters ?? [])")
            #expect(status.term == before.term && status.leaderID == leader, "\(id): term \(status.term), leader \(status.leaderID ?? "-")")
            let primaries = status.members.filter { $0.role == .primary }.map(\.id)
            #expect(primaries == [leader], "\(id)'s membership names \(primaries) primary")
        }
        // The primary crashes; right after, a stranger asks every survivor, on a JSON line, to
        // vote for it (a vote given would hold each survivor's vote in the next term).
        cluster.remove(leader)
        let survivors = ids.filter { $0 != leader }
        for id in survivors {
            let line = #"{"message_type":"vote_request","candidate_id":"\#(leader)","term":\#(before.term + 1),"last_lsn":0,"epoch":\#(before.epoch),"priority":1}"#
            let answer = try? ClusterClient.request(try JSONMessage.decode(line: line), to: cluster.agent(id).address, timeout: .seconds(2))
            if case .voteResponse(let response)? = answer { #expect(!response.voteGranted) }
        }
        let next = try #require(await cluster.agreedLeader(among: survivors, other: leader, timeout: .seconds(5)))
        #expect(survivors.contains(next))
    }

    @Test("a member asked to be a voter right after a handover made a new configuration is added at the first asking: the primary sends the configuration again and waits for its acknowledgement")
    func addRightAfterHandover() async throws {
        let cluster = try await AgentCluster.start(size: 4, voters: 3)
        let ids = cluster.ids
        let leader = try #require(await cluster.agreedLeader(among: ids))
        let target = try #require(ids.prefix(3).first { $0 != leader })
        let moved = try ClusterClient.request(.transfer(to: target), to: cluster.agent(leader).address, timeout: .seconds(10))
        guard case .transferResponse(let response) = moved, response.success else { Issue.record("transfer: \(moved)"); return }
        let answer = try ClusterClient.request(
            .voters(VotersRequest(op: "add", nodeID: ids[3])), to: cluster.agent(target).address, timeout: .seconds(10))
        guard case .votersResponse(let added) = answer else { Issue.record("answered \(answer.messageType)"); return }
        #expect(added.success && added.committed && added.voters.contains(ids[3]), "\(added)")
    }

    @Test("grow 3 → 5 voters and back while the primary is killed in the middle of a change; the restarted primary takes the configuration the others committed")
    func growAndShrink() async throws {
        let cluster = try await AgentCluster.start(size: 5, voters: 3)
        let ids = cluster.ids
        let leader = try #require(await cluster.agreedLeader(among: ids))
        #expect(cluster.agent(leader).status()?.configuration?.voters == Array(ids.prefix(3)))
        func change(_ op: String, _ node: String, at target: String) throws -> VotersResponse {
            let answer = try ClusterClient.request(
                .voters(VotersRequest(op: op, nodeID: node)), to: cluster.agent(target).address, timeout: .seconds(10))
            guard case .votersResponse(let response) = answer else { throw ClusterError.io("answered \(answer.messageType)") }
            return response
        }
        // A member can be added once it has acknowledged the primary's configuration (it does on
        // linking; on a loaded machine the primary may not have its ack yet, and says so).
        var added = try change("add", ids[3], at: leader)
        _ = await eventually(timeout: .seconds(10)) {
            guard !added.success, added.error?.contains("has not acknowledged") == true else { return true }
            added = (try? change("add", ids[3], at: leader)) ?? added
            return added.success
        }
        #expect(added.success && added.committed && added.voters == ids.prefix(3) + [ids[3]], "\(added)")
        // The next change is asked for, and the primary killed at once: it may or may not commit.
        let leaderAddress = cluster.agent(leader).address
        let pending = Task.detached {
            try? ClusterClient.request(.voters(VotersRequest(op: "add", nodeID: ids[4])), to: leaderAddress, timeout: .seconds(2))
        }
        cluster.remove(leader)
        _ = await pending.value
        let live = ids.filter { $0 != leader }
        let next = try #require(await cluster.agreedLeader(among: live, other: leader, timeout: .seconds(10)))
        // Every live node ends up with the new primary's committed configuration.
        var agreed: VoterConfiguration?
        _ = await eventually(timeout: .seconds(10)) {
            let configurations = live.compactMap { cluster.agent($0).status()?.configuration }
            guard configurations.count == live.count, Set(configurations.map(\.id)).count == 1 else { return false }
            agreed = configurations.first
            return cluster.agent(next).status()?.configurationCommitted == true
        }
        var configuration = try #require(agreed)
        #expect(configuration.contains(ids[3]) && configuration.contains(leader), "\(configuration)")
        // Shrink back to three voters: the dead primary first, then the others but the primary.
        for node in [leader] + ids.reversed() where configuration.voters.count > 3 && node != next {
            guard configuration.contains(node) else { continue }
            let removed = try change("remove", node, at: next)
            #expect(removed.success && removed.committed, "\(removed)")
            configuration = VoterConfiguration(voters: removed.voters, version: removed.configVersion, term: removed.configTerm)
        }
        let final = try #require(cluster.agent(next).status()?.configuration)
        #expect(final.voters.count == 3 && !final.contains(leader), "\(final)")
        // The old primary comes back with its stored configuration and learns the committed one.
        try await cluster.startAgent(leader)
        #expect(await eventually(timeout: .seconds(10)) { cluster.agent(leader).status()?.configuration?.id == final.id })
        let saved = try cluster.savedState(leader)
        #expect(saved["configuration"] != nil, "the configuration is stored beside term and vote: \(saved)")
        #expect(await cluster.agreedLeader(among: ids, timeout: .seconds(10)) != nil)
    }

    @Test("made-up members: at most --max-unlinked-members take places (beyond, the announcement is refused with the reason), each is forgotten on every agent once it has not linked within --unlinked-member-expiry, the seeds' reports do not bring it back, and the places are free again")
    func madeUpMembersCappedAndExpired() async throws {
        let cluster = try await AgentCluster.start(
            size: 3, extra: ["--max-unlinked-members", "5", "--unlinked-member-expiry", "2s"])
        let ids = cluster.ids
        #expect(await cluster.agreedLeader(among: ids) != nil)
        let target = cluster.agent(ids[0])
        func announce(_ id: String) -> DiscoveryResponse? {
            // At an address where nobody answers (the discard port): it never links.
            let announcement = AnnouncementMessage(nodeID: id, nodeAddr: "127.0.0.1:9")
            guard case .nodeList(let answer)? = try? ClusterClient.request(.announcement(announcement), to: target.address, timeout: .seconds(5))
            else { return nil }
            return answer
        }
        let answers = (1...12).map { announce("made-up-\($0)") }
        let taken = answers.filter { $0?.success == true }.count
        let refusals = answers.compactMap { $0?.success == false ? $0?.error : nil }
        #expect(taken == 5, "\(answers.map { $0.map { "\($0.success) \($0.error)" } ?? "no answer" })")
        #expect(refusals.count == 7 && refusals.allSatisfy { $0.contains("have not linked yet") }, "\(refusals)")
        func madeUp(_ id: String) -> [String] {
            (cluster.agent(id).status()?.members ?? []).map(\.id).filter { $0.hasPrefix("made-up-") }
        }
        // The others heard of them from the agent that took them (MEMBER frames); all forget them.
        #expect(await eventually(timeout: .seconds(10)) { ids.dropFirst().allSatisfy { !madeUp($0).isEmpty } || ids.allSatisfy { madeUp($0).isEmpty } })
        let forgotten = await eventually(timeout: .seconds(15)) { ids.allSatisfy { madeUp($0).isEmpty } }
        #expect(forgotten, "\(ids.map { madeUp($0) })")
        #expect(target.child.output.contains("member(s) never linked within"))
        // Each agent announces to its seeds several times a second: for three seconds no seed's answer
        // brings a forgotten member back.
        let back = await eventually(timeout: .seconds(3)) { ids.contains { !madeUp($0).isEmpty } }
        #expect(!back, "\(ids.map { madeUp($0) })")
        // The places are free again (a member's own announcement always counts).
        #expect(announce("made-up-13")?.success == true)
        #expect(announce("made-up-1")?.success == true)
    }

    @Test("cluster force-leave: a live member is refused; a SIGKILLed member and a SIGKILLed voter (its vote first) leave every agent's membership, and seeds' reports do not bring them back")
    func forceLeave() async throws {
        let cluster = try await AgentCluster.start(size: 5, voters: 3)
        let ids = cluster.ids
        let leader = try #require(await cluster.agreedLeader(among: ids))
        let member = ids[4]
        let voter = try #require(ids.prefix(3).first { $0 != leader })
        let asked = leader
        let addr = cluster.agent(asked).address.description
        let alive = try runChild("cluster", ["force-leave", "--addr", addr, member], timeoutSeconds: 60)
        #expect(alive.exitCode == 1 && alive.output.contains("linked and alive"), "\(alive)")
        cluster.remove(member)
        cluster.remove(voter)
        let live = ids.filter { $0 != member && $0 != voter }
        func members(_ id: String) -> Set<String> { Set((cluster.agent(id).status()?.members ?? []).map(\.id)) }
        var left = ChildResult(exitCode: nil, signal: nil, output: "")
        for gone in [member, voter] {
            // Refused while the node still counts the killed agent's link as live (it closes at once
            // on a SIGKILL, as the kernel resets it); asked again until it is not.
            _ = await eventually(timeout: .seconds(10)) {
                left = (try? runChild("cluster", ["force-leave", "--addr", addr, gone], timeoutSeconds: 60)) ?? left
                return left.exitCode == 0
            }
            #expect(left.exitCode == 0 && left.output.contains("\(gone) left the cluster"), "\(left)")
        }
        #expect(left.output.contains("removed \(voter)'s vote"), "\(left)")
        let gone = await eventually(timeout: .seconds(10)) {
            live.allSatisfy { members($0).isDisjoint(with: [member, voter]) }
        }
        #expect(gone, "\(live.map { "\($0): \(members($0).sorted())" })")
        #expect(live.allSatisfy { cluster.agent($0).status()?.configuration?.voters.contains(voter) == false })
        // Each agent announces to its seeds several times a second: for three seconds no seed's
        // answer brings either back.
        let back = await eventually(timeout: .seconds(3)) { live.contains { !members($0).isDisjoint(with: [member, voter]) } }
        #expect(!back, "\(live.map { "\($0): \(members($0).sorted())" })")
        #expect(await cluster.agreedLeader(among: live) != nil)
    }

    @Test("autopilot: a SIGKILLed voter is replaced by a member linked long enough, one change at a time, and the voter count comes back to the target")
    func autopilotReplacesDeadVoter() async throws {
        let cluster = try await AgentCluster.start(
            size: 4, voters: 3,
            extra: ["--voters-target", "3", "--autopilot-stabilization", "200ms", "--autopilot-dead-after", "1s"])
        let ids = cluster.ids
        let leader = try #require(await cluster.agreedLeader(among: ids))
        let victim = try #require(ids.prefix(3).first { $0 != leader })
        cluster.remove(victim)
        let live = ids.filter { $0 != victim }
        var final: VoterConfiguration?
        _ = await eventually(timeout: .seconds(15)) {
            guard let status = cluster.agent(leader).status(), let configuration = status.configuration,
                  status.configurationCommitted, configuration.voters == live
            else { return false }
            final = configuration
            return true
        }
        let configuration = try #require(
            final,
            "the voters became \(cluster.agent(leader).status()?.configuration?.voters ?? []); the primary's log: \(cluster.agent(leader).child.output.suffix(3000))")
        // Two changes: the member promoted, then the dead voter removed (its own term's first).
        #expect(configuration.version >= 4)
        #expect(cluster.agent(leader).child.output.contains("autopilot: add voter a4"))
        #expect(cluster.agent(leader).child.output.contains("autopilot: remove voter \(victim)"))
    }
}

@Suite("Members announced where nobody answers (issue 15)", .timeLimit(.minutes(1)))
struct UnlinkedMemberRedialTests {
    @Test("the dial reflection: members that never linked are redialled ever more slowly (to unlinkedMemberBackoffMax), not at the linked members' pace")
    func neverLinkedMembersBackOff() async throws {
        var options = NodeOptions(logger: quietLogger)
        options.reconnectBackoffBase = .milliseconds(10)
        options.reconnectBackoffMax = .milliseconds(100)  // a linked member's pace
        options.unlinkedMemberBackoffMax = .seconds(2)
        // 30 members a stranger announced, at an address where nobody answers (a third party's).
        let members = Dictionary(uniqueKeysWithValues: (1...30).map { ("made-up-\($0)", nowhere) })
        let (node, _) = try soloNode(members: members, options: options)
        defer { try? node.stop() }
        // Warm-up: every member failed often enough to reach the long cap (10 ms doubling to 2 s).
        #expect(await eventually(timeout: .seconds(20)) { node.stats.dialFailures >= 30 * 9 })
        let before = node.stats.dialFailures
        let window = ContinuousClock().now
        try await Task.sleep(for: .seconds(2))  // a measurement window (a rate), not a wait for an event
        let elapsed = ContinuousClock().now - window
        let dials = node.stats.dialFailures - before
        print("never-linked members: \(dials) dials in \(elapsed) for 30 members")
        // At the linked pace (100 ms) this would be about 30 × 2 s / 75 ms = 800; at the long cap
        // (each every 1-2 s) at most about 60.
        #expect(dials <= 90, "\(dials) dials of 30 unlinked members in \(elapsed)")
    }
}
