import Foundation
import MPIWrapper

/// SIGTERM, SIGINT, SIGUSR1 and SIGUSR2 as a request to stop a training run after the step in
/// progress, with a checkpoint (recorded by stop_signals.c; the trainer asks after every step and
/// every rank learns of any rank's request through the step's agreement all-reduce).
public enum StopRequest {
    /// Record the four signals from now on instead of dying (train commands; every other command
    /// keeps the default, so Ctrl-C ends it at once).
    public static func catchSignals() { mpiw_catch_stop_signals() }

    /// The signals that ask a training run to stop.
    public static let signals: [Int32] = [SIGTERM, SIGINT, SIGUSR1, SIGUSR2]

    /// The first signal received, 0 for none.
    public static var signal: Int32 { mpiw_stop_signal() }

    /// "SIGTERM", "SIGUSR1", ...
    public static func name(of signal: Int32) -> String {
        switch signal {
        case SIGTERM: return "SIGTERM"
        case SIGINT: return "SIGINT"
        case SIGUSR1: return "SIGUSR1"
        case SIGUSR2: return "SIGUSR2"
        default: return "signal \(signal)"
        }
    }
}
