import Foundation
import ReplicaCore

/// Rank 0's progress bar: step, loss, tokens/s, ETA on one line, redrawn in place.
/// Off under `--quiet` and when stdout is not a terminal; then a plain line every `logEvery` steps.
public final class ProgressBar {
    let total: Int
    let enabled: Bool
    let interactive: Bool
    let toStandardError: Bool
    let logEvery: Int
    let started = Date()
    var lastDraw = Date.distantPast

    /// `toStandardError` keeps stdout for the `--json` summary.
    public init(total: Int, isRoot: Bool, quiet: Bool, toStandardError: Bool, logEvery: Int = 50) {
        self.total = total
        self.toStandardError = toStandardError
        interactive = isatty(toStandardError ? 2 : 1) != 0
        enabled = isRoot && !quiet
        self.logEvery = logEvery
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

/// `--metrics FILE`: one JSON object a line, appended as training goes (rank 0 only).
public final class MetricsLog {
    let handle: FileHandle?

    public init(path: String?, isRoot: Bool, append: Bool) throws {
        guard let path, isRoot else { handle = nil; return }
        let url = URL(fileURLWithPath: path)
        if !append || !FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                throw UserError("\(path): cannot write the --metrics file (check that its folder exists and is writable)")
            }
        }
        guard let handle = try? FileHandle(forWritingTo: url) else { throw UserError("\(path): cannot write the --metrics file (check that its folder exists and is writable)") }
        handle.seekToEndOfFile()
        self.handle = handle
    }

    public func write(_ record: [String: Any]) {
        guard let handle else { return }
        if let data = try? JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]) {
            handle.write(data + Data("\n".utf8))
        }
    }
}
