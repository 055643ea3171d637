import Cluster
import Logging
import ServiceLifecycle

// The cluster: three nodes on this host. Start the program once for each id.
let addresses = ["n1": "127.0.0.1:7001", "n2": "127.0.0.1:7002", "n3": "127.0.0.1:7003"]
let id = CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "n1"
guard let addr = addresses[id] else { fatalError("usage: myapp n1|n2|n3") }
let others = addresses.filter { $0.key != id }.sorted { $0.key < $1.key }

// Who is in the cluster: this node, and the others it knows from the start.
let membership = ClusterMembership(localNodeID: id, localAddr: addr)
for (otherID, otherAddr) in others {
    try membership.addNode(NodeInfo(id: otherID, addr: otherAddr))
}

let config = ClusterConfig(
    nodeID: id, nodeAddr: addr,
    seedNodes: others.map { $0.value },   // the seed nodes: where this node announces itself
    electionTimeout: .seconds(1), heartbeatInterval: .milliseconds(100),
    minQuorumSize: 2,                     // a majority of the full intended cluster
    enableAutoFailover: true)

let logger = Logger(label: "myapp")
let node = ClusterNode(config: config, membership: membership,
                       options: NodeOptions(dataDirectory: "/tmp/myapp/\(id)", logger: logger))
membership.setLocalLSN(0)                 // your application's log position: votes respect it

let group = ServiceGroup(services: [node],
                         gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
Task {
    for await status in node.manager.statusUpdates() {
        print("\(id): \(status)")         // e.g. the state, term, leader and epoch
        if status.state == .leader {
            print("\(id) is the primary; fence writes with epoch \(status.epoch)")
        }
    }
}
try await group.run()
