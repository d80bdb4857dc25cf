import Foundation
import Testing
import ReplicaData

@Suite struct GzipFileWriterTests {
    @Test func numbersReadBackAsWritten() throws {
        try withTemporaryDirectory { directory in
            let url = directory.appendingPathComponent("numbers.csv.gz")
            let writer = try GzipFileWriter(url: url, bufferSize: 64)   // many deflate calls
            let integers = [0, 7, -7, 1_234_567_890_123, Int.max, Int.min]
            let decimals: [Float] = [0, 1.2345, -1.2345, -0.0004, -0.0005, 0.0005, 12.5, -99.9996, 3]
            for _ in 0..<50 {
                for (k, value) in integers.enumerated() {
                    if k > 0 { try writer.append(byte: UInt8(ascii: ",")) }
                    try writer.append(integer: value)
                }
                try writer.append(byte: UInt8(ascii: "\n"))
                for (k, value) in decimals.enumerated() {
                    if k > 0 { try writer.append(byte: UInt8(ascii: ",")) }
                    try writer.append(decimal: value, fractionDigits: 3)
                }
                try writer.append(byte: UInt8(ascii: "\n"))
            }
            try writer.close()
            var lines: [String] = []
            try GzipLineReader(url: url).forEachLine { _, line in lines.append(String(decoding: line, as: UTF8.self)) }
            #expect(lines.count == 100)
            #expect(lines[0] == "0,7,-7,1234567890123,9223372036854775807,-9223372036854775808")
            #expect(lines[1] == "0.000,1.235,-1.235,0.000,-0.001,0.001,12.500,-100.000,3.000")
            #expect(Set(lines).count == 2)
            let size = try FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int
            #expect(size == writer.compressedBytes && writer.textBytes == 50 * (lines[0].utf8.count + lines[1].utf8.count + 2))
        }
    }
}
