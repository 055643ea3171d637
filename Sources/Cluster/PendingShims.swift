// TEMPORARY: stand-ins for APIs that land with the UV and membership branches.
import ClusterCore
import UV

extension UVTCPConnection {
    func pauseReading() {}
    func resumeReading() {}
    var onWriteDrained: (() -> Void)? { get { nil } set {} }
    func closeAfterFlush(timeoutMs: UInt64) { close() }
}

struct MembershipObserverToken {}

extension ClusterMembership {
    func addObserver(_ observer: @escaping @Sendable (Int) -> Void) -> MembershipObserverToken { MembershipObserverToken() }
    func removeObserver(_ token: MembershipObserverToken) {}
}

extension Discovery {
    static func answer(_ announcement: AnnouncementMessage, membership: ClusterMembership) -> DiscoveryResponse {
        do {
            return try Discovery.handleAnnouncement(announcement, membership: membership)
        } catch {
            return DiscoveryResponse(success: false, error: error.description)
        }
    }
}
