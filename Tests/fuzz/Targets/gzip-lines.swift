import Foundation
import ReplicaData

// Fuzz target: GzipLineReader, the layer under every data set file (OGB .csv.gz, Multi30k .gz).
// The input is one file, gzip (several members allowed) or plain. Oracles:
// - the outcome (the lines, or an error) does not depend on the buffer size, which moves every
//   buffer and line boundary: 1 MiB (the default), 4 KiB and 7 bytes;
// - a plain file's lines are exactly its bytes cut at "\n" with a "\r" before it dropped.

private struct Outcome: Equatable {
    var lines: [[UInt8]] = []
    var failed = false
}

private func readLines(_ url: URL, bufferSize: Int) -> Outcome {
    var outcome = Outcome()
    let count = expectingUserErrors {
        try GzipLineReader(url: url, bufferSize: bufferSize).forEachLine { lineNumber, line in
            check(lineNumber == outcome.lines.count + 1, "line number \(lineNumber) after \(outcome.lines.count) lines")
            check(!line.contains(0x0A), "line \(lineNumber) contains a newline")
            outcome.lines.append(Array(line))
        }
    }
    if let count { check(count == outcome.lines.count, "returned \(count) for \(outcome.lines.count) lines") } else { outcome.failed = true }
    return outcome
}

/// What a plain (not gzip) file's lines must be.
private func plainLines(_ bytes: [UInt8]) -> [[UInt8]] {
    var lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false).map { Array($0) }
    if bytes.last == 0x0A || bytes.isEmpty { lines.removeLast() }
    return lines.map { $0.last == 0x0D ? Array($0.dropLast()) : $0 }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let data = inputData(start, count)
    let file = writeScratch(data, "lines.gz")
    let reference = readLines(file, bufferSize: 1 << 20)
    for bufferSize in [4096, 7] {
        // Before an error, how many lines come out depends on where inflate stopped: compare outcomes only.
        let other = readLines(file, bufferSize: bufferSize)
        check(other.failed == reference.failed && (other.failed || other.lines == reference.lines),
              "buffer size \(bufferSize) gives \(other.failed ? "an error" : "\(other.lines.count) lines") "
              + "but 1 MiB gives \(reference.failed ? "an error" : "\(reference.lines.count) lines")")
    }
    let bytes = [UInt8](data)
    if !(bytes.count >= 2 && bytes[0] == 0x1F && bytes[1] == 0x8B) {
        check(!reference.failed, "a plain file gives an error")
        check(reference.lines == plainLines(bytes), "a plain file's lines differ from its bytes cut at newlines")
    }
    return 0
}
