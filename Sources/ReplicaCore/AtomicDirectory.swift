import Foundation

/// Writes a directory or a small file so that readers see either the old or the complete new one.
///
/// Temporary sibling, fsync of every file and directory, rename, fsync of the parent: a crash
/// leaves at most a hidden `.tmp-<name>-<pid>` behind, never a half-written checkpoint.
public enum AtomicDirectory {
    /// Lets `fill` write into a temporary sibling of `final`, then renames it to `final`.
    ///
    /// An existing `final` is renamed aside first and removed once the new one is in place.
    /// On error the temporary directory is removed and the error rethrown; `final` is untouched.
    public static func write(to final: URL, _ fill: (URL) throws -> Void) throws {
        let manager = FileManager.default
        let parent = final.deletingLastPathComponent()
        let name = final.lastPathComponent
        let temporary = parent.appendingPathComponent(".tmp-\(name)-\(getpid())")
        let aside = parent.appendingPathComponent(".old-\(name)-\(getpid())")
        try? manager.removeItem(at: temporary)     // left by an earlier crash of a process with our pid
        do {
            try manager.createDirectory(at: temporary, withIntermediateDirectories: true)
        } catch {
            throw UserError("cannot create \(temporary.path): \(error.localizedDescription); "
                + "check that \(parent.path) is writable.")
        }
        do {
            try fill(temporary)
            try synchronizeTree(temporary)
            let replacing = manager.fileExists(atPath: final.path)
            if replacing {
                try? manager.removeItem(at: aside)
                try renameItem(final, to: aside)
            }
            do {
                try renameItem(temporary, to: final)
            } catch {
                if replacing { try? renameItem(aside, to: final) }
                throw error
            }
            try synchronize(parent, directory: true)
            if replacing { try? manager.removeItem(at: aside) }
        } catch {
            try? manager.removeItem(at: temporary)
            throw error
        }
    }

    /// Removes the `.tmp-*-<pid>` and `.old-*-<pid>` entries of `directory` left by processes that
    /// died while writing (their pid is no longer running); returns what it removed. Entries of a
    /// live process, and everything else, are left alone. With `named`, only those of that name
    /// (`.tmp-<named>-<pid>`): a folder shared with other programs keeps their entries.
    @discardableResult
    public static func removeLeftovers(in directory: URL, named: String? = nil) -> [String] {
        let manager = FileManager.default
        guard let names = try? manager.contentsOfDirectory(atPath: directory.path) else { return [] }
        let prefixes = named.map { [".tmp-\($0)-", ".old-\($0)-"] } ?? [".tmp-", ".old-"]
        var removed: [String] = []
        for name in names {
            guard let prefix = prefixes.first(where: { name.hasPrefix($0) }) else { continue }
            let last = named == nil ? name.split(separator: "-").last.map(String.init) : String(name.dropFirst(prefix.count))
            guard let last, let pid = pid_t(last), pid > 0 else { continue }
            let alive = kill(pid, 0) == 0 || errno == EPERM
            if alive { continue }
            if (try? manager.removeItem(at: directory.appendingPathComponent(name))) != nil { removed.append(name) }
        }
        return removed.sorted()
    }

    /// Writes `data` to a temporary sibling of `url`, fsyncs it, and renames it to `url`.
    public static func writeFileAtomically(_ data: Data, to url: URL) throws {
        let parent = url.deletingLastPathComponent()
        let temporary = parent.appendingPathComponent(".tmp-\(url.lastPathComponent)-\(getpid())")
        do {
            let descriptor = try openForWriting(temporary)
            do {
                try data.withUnsafeBytes { try writeAll($0, to: descriptor, path: temporary) }
                guard fsync(descriptor) == 0 else { throw posixError("cannot fsync", temporary) }
            } catch {
                close(descriptor)
                throw error
            }
            guard close(descriptor) == 0 else { throw posixError("cannot close", temporary) }
            try renameItem(temporary, to: url)
            try synchronize(parent, directory: true)
        } catch {
            unlink(temporary.path)
            throw error
        }
    }
}

// MARK: - POSIX helpers (also used by SafeTensors and ReplicaData's gzip writer)

/// A `UserError` naming `url`, the action and the system's reason (errno).
public func posixError(_ action: String, _ url: URL) -> UserError {
    UserError("\(action) \(url.path): \(String(cString: strerror(errno)))")
}

/// Creates or truncates `url` for writing; returns the file descriptor.
public func openForWriting(_ url: URL) throws -> Int32 {
    let descriptor = open(url.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard descriptor >= 0 else { throw posixError("cannot create", url) }
    return descriptor
}

/// Writes every byte of `bytes`, retrying short writes and interruptions.
public func writeAll(_ bytes: UnsafeRawBufferPointer, to descriptor: Int32, path url: URL) throws {
    guard var next = bytes.baseAddress else { return }
    var remaining = bytes.count
    while remaining > 0 {
        let written = write(descriptor, next, min(remaining, 1 << 30))
        if written < 0 {
            if errno == EINTR { continue }
            throw posixError("cannot write", url)
        }
        next += written
        remaining -= written
    }
}

/// Renames `source` to `destination` (atomic within one file system).
private func renameItem(_ source: URL, to destination: URL) throws {
    guard rename(source.path, destination.path) == 0 else {
        throw UserError("cannot rename \(source.path) to \(destination.path): \(String(cString: strerror(errno)))")
    }
}

/// fsyncs a file or (with `directory`) a directory's entries.
private func synchronize(_ url: URL, directory: Bool) throws {
    let descriptor = open(url.path, O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0))
    guard descriptor >= 0 else { throw posixError("cannot open for fsync", url) }
    defer { close(descriptor) }
    guard fsync(descriptor) == 0 else { throw posixError("cannot fsync", url) }
}

/// fsyncs every file and directory below `root`, then `root` itself.
private func synchronizeTree(_ root: URL) throws {
    let keys: [URLResourceKey] = [.isDirectoryKey, .isRegularFileKey]
    guard let entries = FileManager.default.enumerator(at: root, includingPropertiesForKeys: keys) else {
        throw UserError("cannot list \(root.path)")
    }
    for case let entry as URL in entries {
        let values = try entry.resourceValues(forKeys: Set(keys))
        if values.isDirectory == true {
            try synchronize(entry, directory: true)
        } else if values.isRegularFile == true {
            try synchronize(entry, directory: false)
        }
    }
    try synchronize(root, directory: true)
}
