import Foundation
import ReplicaCore

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
