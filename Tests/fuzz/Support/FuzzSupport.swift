import Foundation
import ReplicaCore

// Shared by every fuzz target: the loaders read files, so each input is written to a scratch
// folder in memory (/dev/shm) and read back through the real code path.

/// This process's scratch folder, removed at exit.
let scratch: URL = {
    let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
    var template = Array("\(base)/replica-fuzz-XXXXXX".utf8CString)
    guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
        fatalError("fuzz: cannot make a scratch folder under \(base)")
    }
    let path = String(cString: made)
    atexit { if let path = scratchPath { _ = try? FileManager.default.removeItem(atPath: path) } }
    scratchPath = path
    return URL(fileURLWithPath: path, isDirectory: true)
}()

nonisolated(unsafe) private var scratchPath: String?

/// The input as Data (a copy: libFuzzer's buffer is only valid during the call).
func inputData(_ start: UnsafeRawPointer, _ count: Int) -> Data {
    count == 0 ? Data() : Data(bytes: start, count: count)
}

/// Writes `data` to `name` under the scratch folder (folders made as needed); returns its URL.
@discardableResult
func writeScratch(_ data: Data, _ name: String) -> URL {
    let url = scratch.appendingPathComponent(name)
    // open/write/close rather than Data.write, which fsyncs: a fuzz target writes files thousands of times a second.
    var file = open(url.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    if file < 0 && errno == ENOENT {
        try! FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        file = open(url.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    }
    precondition(file >= 0, "fuzz: cannot write \(url.path): \(String(cString: strerror(errno)))")
    data.withUnsafeBytes { bytes in
        var written = 0
        while written < bytes.count {
            let count = write(file, bytes.baseAddress! + written, bytes.count - written)
            precondition(count > 0 || errno == EINTR, "fuzz: cannot write \(url.path): \(String(cString: strerror(errno)))")
            written += max(count, 0)
        }
    }
    close(file)
    return url
}

/// Removes `name` under the scratch folder if it is there.
func removeScratch(_ name: String) {
    unlink(scratch.appendingPathComponent(name).path)
}

/// The line that separates the files of a multi-file input (see Tests/fuzz/README.md).
let fileSeparator = Data("\n#FILE\n".utf8)

/// Cuts a multi-file input at each separator: at most `count` parts, the last one keeps the rest.
func fileParts(_ data: Data, count: Int) -> [Data] {
    var parts: [Data] = []
    var rest = data[...]
    while parts.count < count - 1, let found = rest.range(of: fileSeparator) {
        parts.append(Data(rest[rest.startIndex..<found.lowerBound]))
        rest = rest[found.upperBound...]
    }
    parts.append(Data(rest))
    return parts
}

/// Writes the parts of a multi-file input to `names` (in order); names without a part are removed.
func writeParts(_ data: Data, names: [String]) {
    let parts = fileParts(data, count: names.count)
    for (index, name) in names.enumerated() {
        if index < parts.count { writeScratch(parts[index], name) } else { removeScratch(name) }
    }
}

/// Runs a loader: a UserError is an expected outcome for bad input; any other error is a bug.
func expectingUserErrors<T>(_ body: () throws -> T) -> T? {
    do {
        return try body()
    } catch let error as UserError {
        precondition(!error.description.isEmpty, "fuzz: a UserError without a message")
        return nil
    } catch {
        fatalError("fuzz: the loader threw \(type(of: error)), not UserError: \(error)")
    }
}

/// A failed invariant: the message says which, and libFuzzer keeps the input that caused it.
func check(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
           file: StaticString = #fileID, line: UInt = #line) {
    if !condition() { fatalError("fuzz invariant: \(message())", file: file, line: line) }
}
