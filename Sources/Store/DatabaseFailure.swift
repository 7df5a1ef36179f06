import NIOCore
import PostgresKit

/// A database statement failed, said in words. The driver's own errors print as their type name
/// and code only (postgres-nio keeps details out of descriptions so no data reaches a log), which
/// tells an operator nothing; this says what happened and whether waiting helps.
public struct DatabaseFailure: Error, CustomStringConvertible {
    /// The database could not be reached or went away mid-statement: worth retrying shortly.
    public var isUnavailable: Bool
    public var reason: String

    public var description: String {
        isUnavailable ? "the database is unavailable: \(reason)" : "the database refused a statement: \(reason)"
    }

    /// nil for errors that are not the driver's (cancellation, the store's own): those pass as they are.
    init?(_ error: any Error) {
        guard let error = error as? PSQLError else {
            guard error is IOError || error is ChannelError else { return nil }
            self.init(isUnavailable: true, reason: PostgresOpenFailure.reason(error))
            return
        }
        if error.code == .queryCancelled { return nil }
        let state = error.serverInfo?[.sqlState] ?? ""
        // Class 08: connection exceptions; 57P0x: the server shutting down or starting up.
        let serverGoing = state.hasPrefix("08") || state.hasPrefix("57P")
        let connectionGone: Bool =
            switch error.code {
            case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed:
                true
            default: false
            }
        self.init(isUnavailable: serverGoing || connectionGone, reason: PostgresOpenFailure.reason(error))
    }

    init(isUnavailable: Bool, reason: String) {
        self.isUnavailable = isUnavailable
        self.reason = reason
    }
}
