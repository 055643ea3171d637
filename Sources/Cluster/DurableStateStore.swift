import ClusterCore
import FoundationEssentials
import Glibc
import UV

/// Keeps a node's election state (term, vote, epoch, voter configuration) on disk, so that a
/// restarted node never votes twice in one term.
///
/// The state lives in `<directory>/election-state`: two slots written alternately in place
/// (`StateSlots`), one `pwrite` and one `fdatasync` per write, no rename; a write cut short spoils
/// at most the slot it was writing, and the other holds the state before it. A node of an earlier
/// version kept it in `election-state.json` (replaced whole at each write): that file is read when
/// the new one does not exist yet, and left in place.
struct DurableStateStore: Sendable {
    let directory: String
    var path: String { directory + "/election-state" }
    var legacyPath: String { directory + "/election-state.json" }

    init(directory: String) throws(ClusterError) {
        self.directory = directory
        do {
            try UVFile.makeDirectories(path: directory)
        } catch {
            throw .storage("cannot create the data directory \(directory): \(error.name) (\(error.message))")
        }
        var info = stat()
        if stat(directory, &info) == 0, info.st_mode & S_IFMT != S_IFDIR {
            throw .storage("the data directory \(directory) is not a directory")
        }
    }

    /// The saved state and the sequence of its copy (0: none yet), or the initial state when
    /// nothing was saved.
    func load() throws(ClusterError) -> (state: DurableElectionState, sequence: UInt64) {
        let bytes: [UInt8]?
        do {
            bytes = try UVFile.read(path: path, maxBytes: StateSlots.fileSize)
        } catch {
            throw .storage("cannot read \(path): \(error.name) (\(error.message))")
        }
        if let bytes {
            switch StateSlots.read(file: bytes) {
            case .state(let sequence, let payload, _):
                return (try decode(payload, from: path), sequence)
            case .corrupt(let reason):
                throw .storage(
                    "\(path): neither copy of the election state is valid (\(reason)); refusing to start, since this node may have voted in a term it would then vote in again. Restore the file, or start the node with an empty data directory as a new member")
            case .empty:
                break  // created, never written: as if absent
            }
        }
        let legacy: [UInt8]?
        do {
            legacy = try UVFile.read(path: legacyPath)
        } catch {
            throw .storage("cannot read \(legacyPath): \(error.name) (\(error.message))")
        }
        guard let legacy else { return (DurableElectionState(), 0) }
        return (try decode(legacy, from: legacyPath), 0)
    }

    private func decode(_ bytes: [UInt8], from file: String) throws(ClusterError) -> DurableElectionState {
        do {
            return try JSONDecoder().decode(DurableElectionState.self, from: Data(bytes))
        } catch {
            throw .storage("\(file) is not valid election state (\(Self.describe(error))); refusing to start, since this node may have voted in a term it would then vote in again. Restore the file, or start the node with an empty data directory as a new member")
        }
    }

    /// A decoding error in a sentence: what is wrong and where (the key path), not the
    /// DecodingError's dump.
    static func describe(_ error: any Error) -> String {
        func path(_ keys: [any CodingKey]) -> String {
            keys.isEmpty ? "" : " at " + keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        guard let error = error as? DecodingError else { return "\(error)" }
        switch error {
        case .dataCorrupted(let context):
            return "\(context.debugDescription)\(path(context.codingPath))"
        case .keyNotFound(let key, let context):
            return "no \"\(key.stringValue)\"\(path(context.codingPath))"
        case .typeMismatch(let type, let context), .valueNotFound(let type, let context):
            return "expected \(type)\(path(context.codingPath))"
        @unknown default:
            return "\(error)"
        }
    }

    /// The state's bytes as a copy stored in a slot (sorted keys: the same state gives the same
    /// bytes).
    func payload(_ state: DurableElectionState) throws(ClusterError) -> [UInt8] {
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            return Array(try encoder.encode(state))
        } catch {
            throw .storage("cannot encode election state: \(error)")
        }
    }
}
