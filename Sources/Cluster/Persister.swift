import ClusterCore
import UV

/// Writes the election core's durable state. Loop thread only.
final class Persister {
    let store: DurableStateStore

    init(store: DurableStateStore) {
        self.store = store
    }

    func save(_ state: DurableElectionState) throws(ClusterError) {
        try store.save(state)
    }
}
