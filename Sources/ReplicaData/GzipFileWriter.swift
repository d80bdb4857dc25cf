import CZlib
import Foundation
import ReplicaCore

/// Writes a gzip-compressed text file through one buffer, in bounded memory: numbers are formatted
/// straight into the buffer (no String per value) and deflated a buffer at a time.
///
/// The gzip header is zlib's default (no name, modification time 0), so the same text gives the
/// same bytes. The counterpart of `GzipLineReader`.
///
/// ```swift
/// let writer = try GzipFileWriter(url: url)
/// try writer.append(integer: 3); try writer.append(byte: UInt8(ascii: ",")); try writer.append(decimal: -0.25, fractionDigits: 3)
/// try writer.close()   // writer.compressedBytes: the file's size
/// ```
public final class GzipFileWriter {
    public let url: URL
    /// Bytes of text a deflate call takes at most (the buffer; zlib counts in 32 bits).
    public let bufferSize: Int
    /// Bytes written to the file so far (all of them once `close` returns).
    public private(set) var compressedBytes = 0
    /// Bytes of text appended so far.
    public private(set) var textBytes = 0

    let descriptor: Int32
    var stream = z_stream()
    let text: UnsafeMutablePointer<UInt8>         // [bufferSize] appended, not yet deflated
    var held = 0
    let compressed: UnsafeMutablePointer<UInt8>   // [bufferSize] deflate's output
    var isOpen = true

    /// Creates (or truncates) `url`. `level` is zlib's 1 (fastest) ... 9 (smallest); 1 suits numbers,
    /// which compress about as well at every level.
    public init(url: URL, level: Int32 = 1, bufferSize: Int = 1 << 20) throws {
        precondition(bufferSize >= 64 && bufferSize <= 1 << 30, "GzipFileWriter: bufferSize \(bufferSize) outside 64...2³⁰")
        self.url = url
        self.bufferSize = bufferSize
        descriptor = try openForWriting(url)
        text = .allocate(capacity: bufferSize)
        compressed = .allocate(capacity: bufferSize)
        // deflateInit2 is a macro; windowBits 15 + 16: the largest window, with a gzip header and trailer.
        let status = deflateInit2_(&stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY, zlibVersion(),
                                   Int32(MemoryLayout<z_stream>.size))
        guard status == Z_OK else {   // deinit closes the file
            throw UserError("\(url.path): zlib could not start compressing (error \(status))")
        }
    }

    deinit {
        if isOpen {
            deflateEnd(&stream)
            closeDescriptor(descriptor)
        }
        text.deallocate()
        compressed.deallocate()
    }

    /// Room for `bytes` more bytes of text (at most 64 a call), deflating what is held if need be.
    @inline(__always)
    func makeRoom(_ bytes: Int) throws {
        if held + bytes > bufferSize { try deflateHeld(finish: false) }
    }

    public func append(byte: UInt8) throws {
        try makeRoom(1)
        text[held] = byte
        held += 1
    }

    /// The decimal digits of `integer`, with "-" if negative.
    public func append(integer: Int) throws {
        try makeRoom(20)
        var magnitude = integer.magnitude
        if integer < 0 { text[held] = UInt8(ascii: "-"); held += 1 }
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)   // 24 bytes of scratch, filled from the end
        let count = withUnsafeMutableBytes(of: &digits) { scratch -> Int in
            var end = scratch.count
            repeat {
                end -= 1
                scratch[end] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            (text + held).update(from: scratch.baseAddress!.assumingMemoryBound(to: UInt8.self) + end, count: scratch.count - end)
            return scratch.count - end
        }
        held += count
    }

    /// `value` rounded to `fractionDigits` decimals (0...9), as "-12.345"; never "-0.000".
    /// |value| × 10^fractionDigits must be below 10^15.
    public func append(decimal value: Float, fractionDigits: Int) throws {
        precondition((0...9).contains(fractionDigits), "GzipFileWriter: fractionDigits \(fractionDigits) outside 0...9")
        let scale = GzipFileWriter.powersOfTen[fractionDigits]
        let scaled = (Double(value) * Double(scale)).rounded()
        precondition(scaled.magnitude < 1e15, "GzipFileWriter: \(value) is not finite or too large for \(fractionDigits) decimals")
        let units = Int(scaled)
        try makeRoom(18 + fractionDigits)
        if units < 0 { text[held] = UInt8(ascii: "-"); held += 1 }
        let magnitude = units.magnitude
        try append(integer: Int(magnitude / UInt(scale)))
        guard fractionDigits > 0 else { return }
        text[held] = UInt8(ascii: ".")
        var fraction = magnitude % UInt(scale)
        var position = held + fractionDigits
        while position > held {
            text[position] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: fraction % 10)
            fraction /= 10
            position -= 1
        }
        held += 1 + fractionDigits
    }

    static let powersOfTen: [Int] = [1, 10, 100, 1000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000, 1_000_000_000]

    /// Deflates what is held, writes the gzip trailer and closes the file.
    public func close() throws {
        precondition(isOpen, "GzipFileWriter: \(url.path) is already closed")
        try deflateHeld(finish: true)
        isOpen = false
        deflateEnd(&stream)
        guard closeDescriptor(descriptor) == 0 else { throw posixError("cannot close", url) }
    }

    /// Gives the held text to deflate and writes whatever it produces; `finish` ends the stream.
    func deflateHeld(finish: Bool) throws {
        textBytes += held
        stream.next_in = text
        stream.avail_in = UInt32(held)   // held ≤ bufferSize ≤ 2³⁰
        while true {
            stream.next_out = compressed
            stream.avail_out = UInt32(bufferSize)
            let status = deflate(&stream, finish ? Z_FINISH : Z_NO_FLUSH)
            guard status == Z_OK || status == Z_STREAM_END || status == Z_BUF_ERROR else {
                throw UserError("\(url.path): zlib failed while compressing (error \(status))")
            }
            let produced = bufferSize - Int(stream.avail_out)
            if produced > 0 {
                try writeAll(UnsafeRawBufferPointer(start: compressed, count: produced), to: descriptor, path: url)
                compressedBytes += produced
            }
            // Without finish, deflate is done with the input once it leaves output space unused;
            // with finish, once it reports the end of the stream.
            if finish ? status == Z_STREAM_END : stream.avail_out > 0 { break }
        }
        held = 0
    }
}

/// close(2), by a name the writer's own `close()` does not hide.
@discardableResult
private func closeDescriptor(_ descriptor: Int32) -> Int32 { close(descriptor) }
