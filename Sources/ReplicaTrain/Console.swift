import Foundation
import ReplicaCore

/// How rank 0 shows progress (`--progress`).
public enum ProgressMode: String, CaseIterable, Sendable {
    /// A bar when rank 0's output reaches a terminal, plain lines otherwise (see `ProgressBar.reachesTerminal`).
    case auto
    /// The bar redrawn in place, wherever the output goes.
    case bar
    /// A plain line at step 1, every `ProgressBar.lineInterval` steps and at the last step; no escape codes.
    case lines
    /// No progress output at all (`--quiet`); the summary and errors still appear.
    case none
}

/// Rank 0's progress: a bar (step, loss, rate, ETA on one line, redrawn in place) or plain lines.
public final class ProgressBar {
    /// Steps between two plain lines.
    public static let lineInterval = 50

    let total: Int
    let enabled: Bool
    let isRoot: Bool
    let interactive: Bool
    let toStandardError: Bool
    let logEvery: Int
    let started = Date()
    var lastDraw = Date.distantPast

    /// `toStandardError` keeps stdout for the `--json` summary.
    public init(total: Int, isRoot: Bool, mode: ProgressMode, toStandardError: Bool, logEvery: Int = ProgressBar.lineInterval) {
        self.total = total
        self.toStandardError = toStandardError
        self.isRoot = isRoot
        enabled = isRoot && mode != .none
        switch mode {
        case .bar: interactive = true
        case .lines, .none: interactive = false
        case .auto: interactive = isRoot && ProgressBar.reachesTerminal(fileDescriptor: toStandardError ? 2 : 1)
        }
        self.logEvery = logEvery
    }

    /// Whether what this process writes to `fileDescriptor` ends up on a terminal.
    ///
    /// Alone (or under srun, which hands a rank a terminal only with `--pty`), that is `isatty`.
    /// Under Open MPI the answer is mpirun's: mpirun gives each rank on its own node a
    /// pseudo-terminal as stdout (a pipe as stderr) whatever mpirun's own output is, and copies
    /// what the rank writes to its own stdout and stderr. So the rank looks up its ancestors for
    /// mpirun and asks whether mpirun's descriptor of the same number is a terminal; a rank
    /// started by orted on another node cannot see mpirun's and writes lines.
    public static func reachesTerminal(fileDescriptor: Int32) -> Bool {
        let environment = ProcessInfo.processInfo.environment
        guard environment["OMPI_COMM_WORLD_SIZE"] != nil else { return isatty(fileDescriptor) != 0 }
        var pid = getppid()
        for _ in 0..<16 where pid > 1 {
            guard let (name, parent) = processNameAndParent(pid) else { return false }
            switch name {
            case "mpirun", "mpiexec", "orterun", "prterun", "prun":
                return isTerminalDevice(path: "/proc/\(pid)/fd/\(fileDescriptor)")
            case "orted", "prted", "slurmstepd", "sshd":
                return false
            default:
                pid = parent
            }
        }
        return false
    }

    /// A process's command name and parent id from /proc/PID/stat, or nil when it cannot be read.
    static func processNameAndParent(_ pid: pid_t) -> (String, pid_t)? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")") else { return nil }
        let name = String(stat[stat.index(after: open)..<close])
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 1, let parent = pid_t(fields[1]) else { return nil }
        return (name, parent)
    }

    /// Whether the file a /proc fd link names is a terminal device.
    static func isTerminalDevice(path: String) -> Bool {
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: path) else { return false }
        return target.hasPrefix("/dev/pts/") || target.hasPrefix("/dev/tty") || target == "/dev/console"
    }

    /// Shows step `step` (1-based) with `fields` such as "loss 1.234".
    public func update(step: Int, fields: String, unitsPerSecond: Double, unit: String) {
        guard enabled else { return }
        let elapsed = Date().timeIntervalSince(started)
        let eta = step > 0 ? elapsed / Double(step) * Double(total - step) : 0
        let rate = unitsPerSecond >= 1000 ? String(format: "%.1fk", unitsPerSecond / 1000) : String(format: "%.0f", unitsPerSecond)
        if interactive {
            guard Date().timeIntervalSince(lastDraw) > 0.1 || step == total else { return }
            lastDraw = Date()
            let width = 24
            let filled = total > 0 ? min(width, step * width / total) : width
            let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
            write("\r\u{1B}[2K\(bar) step \(step)/\(total) | \(fields) | \(rate) \(unit)/s | ETA \(ProgressBar.clock(eta))")
        } else if step % logEvery == 0 || step == total || step == 1 {
            write("step \(step)/\(total) | \(fields) | \(rate) \(unit)/s | ETA \(ProgressBar.clock(eta))\n")
        }
    }

    /// Prints a line (an evaluation result, a warning) without breaking the bar.
    public func message(_ line: String) {
        guard enabled else { return }
        write((interactive ? "\r\u{1B}[2K" : "") + line + "\n")
    }

    /// A line about what the run decided (resumed, resumed on another split, a new schedule,
    /// checkpoints deleted): rank 0 prints it in every progress mode, `--quiet` included.
    public func notice(_ line: String) {
        guard isRoot else { return }
        write((enabled && interactive ? "\r\u{1B}[2K" : "") + line + "\n")
    }

    public func finish() {
        if enabled && interactive { write("\n") }
    }

    private func write(_ text: String) {
        let handle = toStandardError ? FileHandle.standardError : FileHandle.standardOutput
        handle.write(Data(text.utf8))
    }

    static func clock(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }
}

