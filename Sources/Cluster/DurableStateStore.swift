import FoundationEssentials
import UV

/// Keeps a node's election state (term, vote, epoch) on disk, so that a restarted node never
/// votes twice in one term.
///
/// A write replaces `<directory>/election-state.json` atomically and durably (temporary file,
/// fsync, rename, fsync of the directory); the node answers a vote only once its write is done.
struct DurableStateStore: Sendable {
    let directory: String
    var path: String { directory + "/election-state.json" }

    init(directory: String) throws(ClusterError) {
        self.directory = directory
        do {
            try UVFile.makeDirectories(path: directory)
        } catch {
            throw .storage("cannot create data directory: \(error)")
        }
    }

    /// The saved state, or the initial one when nothing was saved yet.
    func load() throws(ClusterError) -> DurableElectionState {
        let bytes: [UInt8]?
        do {
            bytes = try UVFile.read(path: path)
        } catch {
            throw .storage("cannot read \(path): \(error)")
        }
        guard let bytes else { return DurableElectionState() }
        do {
            return try JSONDecoder().decode(DurableElectionState.self, from: Data(bytes))
        } catch {
            throw .storage("\(path) is not valid election state: \(error)")
        }
    }

    /// The file's content for `state` (sorted keys: the same state gives the same bytes).
    func encode(_ state: DurableElectionState) throws(ClusterError) -> [UInt8] {
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            return Array(try encoder.encode(state))
        } catch {
            throw .storage("cannot encode election state: \(error)")
        }
    }
}
