import Foundation
import ReplicaCore

/// A run's hold on its `--checkpoint-dir`: rank 0 keeps an exclusive lock on it for the life of
/// the run, a fresh run does not silently replace checkpoints already there, and `--keep-checkpoints`
/// prunes the old ones (docs/interface.md).
///
/// The lock is `flock` on `DIR/.lock`, which the kernel releases however the process ends, so a
/// job requeued after a crash is never locked out; the file names the holder (host, pid, start).
public final class CheckpointFolder {
    public let directory: URL
    private let descriptor: Int32

    /// Takes the lock, or fails with a UserError naming the run that holds it.
    public init(_ directory: URL) throws {
        self.directory = directory
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent(".lock").path
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw UserError("\(path): cannot open the checkpoint folder's lock file (\(String(cString: strerror(errno))))")
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let holder = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            close(descriptor)
            throw UserError("\(directory.path): the checkpoint folder is in use by another run (\(holder.map { $0.isEmpty ? "unknown" : $0 } ?? "unknown")); wait for it to end or choose another --checkpoint-dir")
        }
        self.descriptor = descriptor
        let started = ISO8601DateFormatter().string(from: Date())
        let holder = "host \(ProcessInfo.processInfo.hostName), pid \(getpid()), started \(started)\n"
        ftruncate(descriptor, 0)
        _ = holder.withCString { write(descriptor, $0, strlen($0)) }
    }

    deinit {
        flock(descriptor, LOCK_UN)
        close(descriptor)
    }

    /// The folder's checkpoint folders (complete or not), oldest first.
    public static func stepFolders(in directory: URL) -> [URL] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { $0.hasPrefix("step-") && $0.count == 13 && Int($0.dropFirst(5)) != nil }.sorted()
            .map { directory.appendingPathComponent($0) }
    }

    /// Why a fresh run (not resuming, no `--overwrite`) may not start on `directory`: the error
    /// naming its newest checkpoint; nil when it holds none.
    public static func freshRunError(in directory: URL) -> UserError? {
        guard let newest = stepFolders(in: directory).last else { return nil }
        return UserError("\(directory.path) already holds checkpoints (the newest \(newest.lastPathComponent)); go on with --resume or --auto-resume, or start afresh with --overwrite (which deletes them)")
    }

    /// `--overwrite`: deletes every checkpoint folder and `latest` before the run writes its own.
    /// Returns how many were deleted.
    public func deleteCheckpoints() throws -> Int {
        let existing = Self.stepFolders(in: directory)
        for folder in existing { try FileManager.default.removeItem(at: folder) }
        try? FileManager.default.removeItem(at: directory.appendingPathComponent("latest"))
        return existing.count
    }

    /// Deletes all but the newest `keep` complete checkpoints (and any incomplete one older than
    /// them); called after a checkpoint is complete, so the newest is never deleted.
    public func prune(keeping keep: Int) throws {
        let folders = Self.stepFolders(in: directory)
        let complete = folders.filter(Checkpoint.isComplete)
        guard complete.count > keep, let oldestKept = complete.dropFirst(complete.count - keep).first else { return }
        for folder in folders where folder.lastPathComponent < oldestKept.lastPathComponent {
            try FileManager.default.removeItem(at: folder)
        }
    }
}
