import CZlib
import Foundation
import ReplicaCore

/// Reads a gzip-compressed text file (or a plain one) line by line in bounded memory.
///
/// A file that starts with the gzip magic bytes 1f 8b is inflated with zlib (several concatenated
/// members, as `cat a.gz b.gz` makes, are read as one text); any other file is read as is. Lines
/// end at "\n"; a "\r" before it is dropped, and a last line without "\n" is still a line. Memory is
/// one input buffer, one output buffer and the longest line, whatever the file's size.
///
/// ```swift
/// try GzipLineReader(url: url).forEachLine { lineNumber, line in ... }   // line: [bytes], no "\n"
/// ```
public struct GzipLineReader {
    public let url: URL
    /// Bytes read or inflated at a time; the output buffer grows beyond it only for a longer line.
    public let bufferSize: Int

    /// The most bytes handed to one zlib call: its `avail_in` and `avail_out` are 32-bit, so a
    /// longer buffer (a line over 4 GiB) goes through in pieces.
    let zlibChunk: Int

    public init(url: URL, bufferSize: Int = 1 << 20) {
        self.init(url: url, bufferSize: bufferSize, zlibChunk: Int(UInt32.max))
    }

    /// `zlibChunk` below 4 GiB lets tests take the path of a line over 4 GiB with a short one.
    init(url: URL, bufferSize: Int, zlibChunk: Int) {
        precondition(bufferSize > 0, "GzipLineReader: bufferSize must be positive, got \(bufferSize)")
        precondition(zlibChunk > 0 && zlibChunk <= Int(UInt32.max), "GzipLineReader: zlibChunk must be in 1...UInt32.max, got \(zlibChunk)")
        self.url = url
        self.bufferSize = bufferSize
        self.zlibChunk = zlibChunk
    }

    /// Calls `body` with each line's 1-based number and bytes (valid only during the call); returns the line count.
    ///
    /// A file that cannot be read, or gzip data that is truncated or corrupt, is a UserError naming the file.
    @discardableResult
    public func forEachLine(_ body: (_ lineNumber: Int, _ line: UnsafeBufferPointer<UInt8>) throws -> Void) throws -> Int {
        let path = url.path
        let file = open(path, O_RDONLY | O_CLOEXEC)
        guard file >= 0 else { throw UserError("\(path): cannot open (\(String(cString: strerror(errno))))") }
        defer { close(file) }

        var splitter = LineSplitter(capacity: bufferSize)
        defer { splitter.deallocate() }
        if try startsWithGzipMagic(file, path: path) {
            try inflateLines(file, path: path, into: &splitter, body)
        } else {
            while true {
                let space = splitter.writableSpace()
                let count = try readRetrying(file, space.baseAddress!, space.count, path: path)
                if count == 0 { break }
                try splitter.commit(count, body)
            }
        }
        try splitter.finish(body)
        return splitter.lineNumber
    }

    /// Whether the first two bytes are 1f 8b (read with pread, so the file offset stays at 0).
    private func startsWithGzipMagic(_ file: Int32, path: String) throws -> Bool {
        var magic: (UInt8, UInt8) = (0, 0)
        var have = 0
        while have < 2 {
            let count = withUnsafeMutableBytes(of: &magic) { bytes in
                pread(file, bytes.baseAddress! + have, 2 - have, off_t(have))
            }
            if count < 0 {
                if errno == EINTR { continue }
                throw UserError("\(path): cannot read (\(String(cString: strerror(errno))))")
            }
            if count == 0 { return false }
            have += count
        }
        return magic == (0x1F, 0x8B)
    }

    private func inflateLines(
        _ file: Int32, path: String, into splitter: inout LineSplitter,
        _ body: (Int, UnsafeBufferPointer<UInt8>) throws -> Void
    ) throws {
        let input = UnsafeMutablePointer<UInt8>.allocate(capacity: bufferSize)
        defer { input.deallocate() }
        var stream = z_stream()
        // inflateInit2 is a macro; 15 + 32: the largest window, and detect the gzip (or zlib) header.
        let initStatus = inflateInit2_(&stream, 15 + 32, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        guard initStatus == Z_OK else { throw UserError("\(path): zlib could not start (error \(initStatus))") }
        defer { inflateEnd(&stream) }

        var insideMember = false   // bytes of a member were given to zlib and its end has not been seen
        var endOfFile = false
        var unread = 0             // bytes read into `input` and not yet given to zlib, after stream.next_in's
        while true {
            if stream.avail_in == 0 && unread == 0 && !endOfFile {
                let count = try readRetrying(file, input, bufferSize, path: path)
                if count == 0 {
                    endOfFile = true
                } else {
                    stream.next_in = input
                    unread = count
                }
            }
            if stream.avail_in == 0 && unread > 0 {
                // The next piece of at most zlibChunk bytes (next_in already points at it).
                let piece = min(unread, zlibChunk)
                stream.avail_in = UInt32(piece)
                unread -= piece
            }
            if stream.avail_in > 0 { insideMember = true }
            if endOfFile && !insideMember { return }
            let space = splitter.writableSpace()
            let offered = min(space.count, zlibChunk)
            stream.next_out = space.baseAddress
            stream.avail_out = UInt32(offered)
            let status = inflate(&stream, Z_NO_FLUSH)
            let produced = offered - Int(stream.avail_out)
            switch status {
            case Z_OK:
                break
            case Z_STREAM_END:
                // A member ended; whatever follows starts another (concatenated gzip members).
                insideMember = false
                inflateReset(&stream)
            case Z_BUF_ERROR where produced == 0 && endOfFile:
                // zlib wants input that is not there: the member stops short of its end.
                throw UserError("\(path): truncated gzip data (the stream ends after line \(splitter.lineNumber)); the file is incomplete, copy or download it again")
            case Z_BUF_ERROR where produced > 0 || stream.avail_in == 0:
                break   // no progress without more input: read more
            default:
                let reason = stream.msg.map { String(cString: $0) } ?? "zlib error \(status)"
                throw UserError("\(path): corrupt gzip data after line \(splitter.lineNumber) (\(reason)); the file is damaged, copy or download it again")
            }
            if produced > 0 { try splitter.commit(produced, body) }
        }
    }

    private func readRetrying(_ file: Int32, _ buffer: UnsafeMutablePointer<UInt8>, _ count: Int, path: String) throws -> Int {
        while true {
            let result = read(file, buffer, count)
            if result >= 0 { return result }
            if errno != EINTR { throw UserError("\(path): cannot read (\(String(cString: strerror(errno))))") }
        }
    }
}

/// Splits a byte stream into lines: bytes are written at the end of one buffer, complete lines
/// are handed out in place, and the unfinished last line moves to the front. [capacity]
private struct LineSplitter {
    var buffer: UnsafeMutablePointer<UInt8>
    var capacity: Int
    var count = 0          // bytes held: the unfinished line, then newly written bytes
    var searched = 0       // bytes of the unfinished line already known to hold no "\n"
    var lineNumber = 0

    init(capacity: Int) {
        self.capacity = capacity
        buffer = .allocate(capacity: capacity)
    }

    func deallocate() { buffer.deallocate() }

    /// Room after the held bytes; never empty (the buffer doubles when a line fills it).
    mutating func writableSpace() -> UnsafeMutableBufferPointer<UInt8> {
        if count == capacity {
            let larger = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity * 2)
            memcpy(larger, buffer, count)
            buffer.deallocate()
            buffer = larger
            capacity *= 2
        }
        return UnsafeMutableBufferPointer(start: buffer + count, count: capacity - count)
    }

    /// Takes `written` new bytes and hands out every line they complete.
    mutating func commit(_ written: Int, _ body: (Int, UnsafeBufferPointer<UInt8>) throws -> Void) throws {
        count += written
        var start = 0
        var searchFrom = searched
        while searchFrom < count, let found = memchr(buffer + searchFrom, 0x0A, count - searchFrom) {
            let end = buffer.distance(to: found.assumingMemoryBound(to: UInt8.self))
            try emit(from: start, to: end, body)
            start = end + 1
            searchFrom = start
        }
        if start > 0 {
            count -= start
            if count > 0 { memmove(buffer, buffer + start, count) }
        }
        searched = count
    }

    /// Hands out the last line if the data did not end with "\n".
    mutating func finish(_ body: (Int, UnsafeBufferPointer<UInt8>) throws -> Void) throws {
        if count > 0 { try emit(from: 0, to: count, body) }
        count = 0
        searched = 0
    }

    private mutating func emit(from start: Int, to end: Int, _ body: (Int, UnsafeBufferPointer<UInt8>) throws -> Void) throws {
        var last = end
        if last > start && buffer[last - 1] == 0x0D { last -= 1 }
        lineNumber += 1
        try body(lineNumber, UnsafeBufferPointer(start: buffer + start, count: last - start))
    }
}
