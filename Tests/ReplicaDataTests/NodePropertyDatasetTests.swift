import CZlib
import Foundation
import Testing
import ReplicaCore
@testable import ReplicaData
import _ReplicaTestSupport

@Suite struct GzipLineReaderTests {
    /// CRLF, empty lines, a last line without "\n", non-ASCII bytes.
    static let text = "first,line\r\n\nthird 3\r\n  \ncafé,ünïcode\nlast line without newline"
    static let expectedLines = ["first,line", "", "third 3", "  ", "café,ünïcode", "last line without newline"]

    @Test(arguments: [1, 2, 7, 64, 1 << 20])
    func aPlainFileAndAGzipFileGiveTheSameLines(bufferSize: Int) throws {
        try withTemporaryDirectory { directory in
            let plain = directory.appendingPathComponent("lines.txt")
            let compressed = directory.appendingPathComponent("lines.txt.gz")
            try Data(Self.text.utf8).write(to: plain)
            writeGzip(Self.text, to: compressed)
            let fromPlain = try readLines(plain, bufferSize: bufferSize)
            let fromGzip = try readLines(compressed, bufferSize: bufferSize)
            #expect(fromPlain == Self.expectedLines)
            #expect(fromGzip == Self.expectedLines)
        }
    }

    @Test func severalGzipMembersReadAsOneText() throws {
        try withTemporaryDirectory { directory in
            let url = directory.appendingPathComponent("members.csv.gz")
            writeGzip("a\nb\nc", to: url)              // the first member ends mid-line
            writeGzip("d\ne\n", to: url, appending: true)
            writeGzip("", to: url, appending: true)   // an empty member
            writeGzip("f\n", to: url, appending: true)
            let lines = try readLines(url, bufferSize: 1 << 20)
            let linesThroughASmallBuffer = try readLines(url, bufferSize: 3)
            #expect(lines == ["a", "b", "cd", "e", "f"])
            #expect(linesThroughASmallBuffer == ["a", "b", "cd", "e", "f"])
        }
    }

    @Test func aLineLongerThanTheBufferIsReadWhole() throws {
        try withTemporaryDirectory { directory in
            let url = directory.appendingPathComponent("long.gz")
            let long = String(repeating: "0123456789", count: 50_000)
            writeGzip("short\n\(long)\nend\n", to: url)
            let lines = try readLines(url, bufferSize: 4096)
            #expect(lines == ["short", long, "end"])
        }
    }

    @Test func emptyFilesHaveNoLines() throws {
        try withTemporaryDirectory { directory in
            let plain = directory.appendingPathComponent("empty.csv")
            let compressed = directory.appendingPathComponent("empty.csv.gz")
            try Data().write(to: plain)
            writeGzip("", to: compressed)
            #expect(try readLines(plain, bufferSize: 16).isEmpty)
            #expect(try readLines(compressed, bufferSize: 16).isEmpty)
        }
    }

    @Test func truncatedGzipDataIsAUserErrorNamingTheFile() throws {
        try withTemporaryDirectory { directory in
            let url = directory.appendingPathComponent("cut.csv.gz")
            writeGzip((0..<5000).map { "\($0),\($0 * 7 % 13)" }.joined(separator: "\n"), to: url)
            let whole = try Data(contentsOf: url)
            for keep in [whole.count - 4, whole.count / 2, 12] {
                try whole.prefix(keep).write(to: url)
                let error = #expect(throws: UserError.self) { try readLines(url, bufferSize: 256) }
                let message = error?.description ?? ""
                #expect(message.contains("cut.csv.gz") && message.contains("truncated gzip data"), "\(message)")
            }
        }
    }

    @Test func corruptGzipDataIsAUserErrorNamingTheFile() throws {
        try withTemporaryDirectory { directory in
            let url = directory.appendingPathComponent("bad.csv.gz")
            writeGzip((0..<5000).map { "line \($0)" }.joined(separator: "\n"), to: url)
            var bytes = [UInt8](try Data(contentsOf: url))
            for k in 20..<60 { bytes[k] ^= 0x5A }   // inside the deflate data
            try Data(bytes).write(to: url)
            let error = #expect(throws: UserError.self) { try readLines(url, bufferSize: 256) }
            let message = error?.description ?? ""
            #expect(message.contains("bad.csv.gz") && message.contains("corrupt gzip data"), "\(message)")

            // A damaged checksum at the end: every byte inflates, then zlib rejects the trailer.
            writeGzip("a\nb\n", to: url)
            var trailer = [UInt8](try Data(contentsOf: url))
            trailer[trailer.count - 8] ^= 0xFF
            try Data(trailer).write(to: url)
            let checksumError = #expect(throws: UserError.self) { try readLines(url, bufferSize: 256) }
            #expect(checksumError?.description.contains("bad.csv.gz") == true, "\(checksumError?.description ?? "")")
        }
    }

    /// A line over 4 GiB goes through zlib in pieces of at most 2³² − 1 bytes (its counts are
    /// 32-bit); pieces of a few bytes take the same path with short lines.
    @Test(arguments: [1, 5, 4096])
    func linesInflatedInSmallZlibPiecesAreTheSame(zlibChunk: Int) throws {
        try withTemporaryDirectory { directory in
            let url = directory.appendingPathComponent("pieces.csv.gz")
            let long = String(repeating: "0123456789", count: 2000)
            writeGzip(Self.text + "\n" + long + "\nend", to: url)
            var lines: [String] = []
            try GzipLineReader(url: url, bufferSize: 64, zlibChunk: zlibChunk).forEachLine { _, line in
                lines.append(String(decoding: line, as: UTF8.self))
            }
            #expect(lines == Self.expectedLines + [long, "end"])
        }
    }

    @Test func aMissingFileIsAUserErrorNamingIt() {
        let url = URL(fileURLWithPath: "/nonexistent/replica/edge.csv.gz")
        let error = #expect(throws: UserError.self) { try readLines(url, bufferSize: 16) }
        #expect(error?.description.contains("/nonexistent/replica/edge.csv.gz") == true)
    }

    func readLines(_ url: URL, bufferSize: Int) throws -> [String] {
        var lines: [String] = []
        let count = try GzipLineReader(url: url, bufferSize: bufferSize).forEachLine { lineNumber, line in
            #expect(lineNumber == lines.count + 1)
            lines.append(String(decoding: line, as: UTF8.self))
        }
        #expect(count == lines.count)
        return lines
    }
}

@Suite struct NodePropertyDatasetTests {
    // MARK: Cora

    @Test func theEmbeddedCoraHasThePublishedShape() throws {
        let cora = try NodePropertyDataset.cora()
        #expect(cora.name == "cora")
        #expect(cora.nodeCount == 2708)
        #expect(cora.featureCount == 1433)
        #expect(cora.features.rowCount == 2708 && cora.features.columnCount == 1433)
        #expect(cora.classCount == 7)
        #expect(cora.labels.count == 2708)
        #expect(cora.labels.allSatisfy { $0 >= 0 && $0 < 7 }, "every Cora node is labelled")
        #expect(cora.edgeCount == 5278 && cora.edgeTargets.count == 5278)
        #expect(cora.edgeSources.allSatisfy { $0 >= 0 && $0 < 2708 } && cora.edgeTargets.allSatisfy { $0 >= 0 && $0 < 2708 })
        #expect(cora.train.count == 140 && cora.validation.count == 500 && cora.test.count == 1000)
        #expect(Set(cora.train + cora.validation + cora.test).count == 1640, "the splits are disjoint")
        #expect(cora.train == (0..<140).map { Int32($0) }, "Planetoid's public split trains on the first 140 nodes")
    }

    @Test func coraFeaturesAreBinary() throws {
        let features = try NodePropertyDataset.cora().features
        #expect(features.values.count == features.nonzeroCount)
        #expect(features.values.allSatisfy { $0 == 1 })
        // Cora is 98.7% zeros: about 18 words of 1,433 per paper.
        let density = Double(features.nonzeroCount) / Double(2708 * 1433)
        #expect(density > 0.01 && density < 0.02, "density \(density)")
        for row in 0..<features.rowCount {
            let columns = features.columnIndices[features.range(ofRow: row)]
            #expect(zip(columns, columns.dropFirst()).allSatisfy { $0 < $1 }, "row \(row) is sorted")
        }
    }

    // MARK: A small data set

    @Test func aSmallDataSetLoadsExactly() throws {
        try withTemporaryDirectory { directory in
            try TinyDataSet().write(to: directory)
            let dataset = try NodePropertyDataset.load(directory: directory, name: "tiny")
            #expect(dataset.name == "tiny")
            #expect(dataset.nodeCount == 6 && dataset.featureCount == 3)
            #expect(dataset.features.rowOffsets == [0, 1, 3, 6, 6, 8, 9])
            #expect(dataset.features.columnIndices == [1, 0, 2, 0, 1, 2, 0, 2, 1])
            #expect(dataset.features.values == [1, 0.5, -1.5e-3, 1, 1, 1, 2.25, 1e5, 3])
            #expect(dataset.labels == [0, 1, 2, -1, 1, 0])
            #expect(dataset.classCount == 3)
            #expect(dataset.edgeSources == [0, 1, 2, 3, 4])
            #expect(dataset.edgeTargets == [1, 2, 3, 4, 5])
            #expect(dataset.train == [0, 1] && dataset.validation == [2, 3] && dataset.test == [5, 4])
        }
    }

    @Test func plainCSVFilesLoadLikeGzipFiles() throws {
        try withTemporaryDirectory { directory in
            try TinyDataSet().write(to: directory.appendingPathComponent("gzip"))
            try TinyDataSet().write(to: directory.appendingPathComponent("plain"), compressed: false)
            let compressed = try NodePropertyDataset.load(directory: directory.appendingPathComponent("gzip"), name: "tiny")
            let plain = try NodePropertyDataset.load(directory: directory.appendingPathComponent("plain"), name: "tiny")
            #expect(compressed == plain)
        }
    }

    @Test func theSingleSplitFolderIsUsedWhenThereIsNoPublicSplit() throws {
        try withTemporaryDirectory { directory in
            var tiny = TinyDataSet()
            for split in ["train", "valid", "test"] {
                tiny.files["split/time/\(split).csv"] = tiny.files.removeValue(forKey: "split/public/\(split).csv")
            }
            try tiny.write(to: directory)
            let dataset = try NodePropertyDataset.load(directory: directory, name: "tiny")
            #expect(dataset.train == [0, 1] && dataset.validation == [2, 3] && dataset.test == [5, 4])
        }
    }

    @Test func floatsParseAsSwiftParsesThem() throws {
        let texts = ["0.123", "-1.5e-3", "1", "+2", ".5", "3.", "1E3", "-0", "0.000001", "123456789", "16777217",
                     "0.1", "3.4028235e38", "1e-40", "1.17549435e-38", "0.30000000000000004", "2.5e+10",
                     "123456789012345678901234567890", "0.000000000000000000000000000001", "7.038531e-26",
                     "1.00000005960464477539062500001", "1.000000059604644775390625", "9007199254740993",
                     "-0.057943", "0.1234567", "33554431", "8.589973e9"]
        try withTemporaryDirectory { directory in
            var tiny = TinyDataSet()
            tiny.files["raw/num-node-list.csv"] = "\(texts.count)\n"
            tiny.files["raw/node-feat.csv"] = texts.map { "\($0),1" }.joined(separator: "\n") + "\n"
            tiny.files["raw/node-label.csv"] = String(repeating: "0\n", count: texts.count)
            try tiny.write(to: directory)
            let features = try NodePropertyDataset.load(directory: directory, name: "tiny").features
            for (row, text) in texts.enumerated() {
                let expected = Float(text)!
                let stored = features.range(ofRow: row).first.map { features.columnIndices[$0] == 0 ? features.values[$0] : 0 } ?? 0
                #expect(stored.bitPattern == (expected == 0 ? 0 : expected.bitPattern), "\(text): \(stored) vs \(expected)")
            }
        }
    }

    // MARK: Malformed data: one UserError naming the file and the line

    @Test func aBadNumberIsReportedWithItsFileAndLine() throws {
        var tiny = TinyDataSet()
        tiny.files["raw/node-feat.csv"] = "0,1,0\n0.5,x,1\n1,1,1\n0,0,0\n2.25,0,1\n0,3,0\n"
        try expectUserError(tiny, file: "raw/node-feat.csv.gz", line: 2, mentioning: "\"x\"")

        tiny = TinyDataSet()
        tiny.files["raw/edge.csv"] = "0,1\n1,2\n2,three\n3,4\n4,5\n"
        try expectUserError(tiny, file: "raw/edge.csv.gz", line: 3, mentioning: "\"three\"")

        tiny = TinyDataSet()
        tiny.files["raw/node-label.csv"] = "0\n1\n2\n-1\n1.5\n0\n"
        try expectUserError(tiny, file: "raw/node-label.csv.gz", line: 5, mentioning: "\"1.5\"")

        tiny = TinyDataSet()
        tiny.files["split/public/train.csv"] = "0\n\n"
        try expectUserError(tiny, file: "split/public/train.csv.gz", line: 2, mentioning: "is not a node id")

        tiny = TinyDataSet()
        tiny.files["raw/num-node-list.csv"] = "six\n"
        try expectUserError(tiny, file: "raw/num-node-list.csv.gz", line: 1, mentioning: "\"six\"")
    }

    @Test func anEdgeNodeIdOutOfRangeIsReported() throws {
        var tiny = TinyDataSet()
        tiny.files["raw/edge.csv"] = "0,1\n1,2\n2,3\n3,6\n4,5\n"
        try expectUserError(tiny, file: "raw/edge.csv.gz", line: 4, mentioning: "node id 6 is out of range")
        tiny.files["raw/edge.csv"] = "0,1\n-1,2\n2,3\n3,4\n4,5\n"
        try expectUserError(tiny, file: "raw/edge.csv.gz", line: 2, mentioning: "node id -1 is out of range")
    }

    @Test func aSplitNodeIdOutOfRangeIsReported() throws {
        var tiny = TinyDataSet()
        tiny.files["split/public/test.csv"] = "5\n6\n"
        try expectUserError(tiny, file: "split/public/test.csv.gz", line: 2, mentioning: "node id 6 is out of range")
    }

    @Test func aRaggedFeatureRowIsReported() throws {
        var tiny = TinyDataSet()
        tiny.files["raw/node-feat.csv"] = "0,1,0\n0.5,0,-1.5e-3\n1,1\n0,0,0\n2.25,0,1\n0,3,0\n"
        try expectUserError(tiny, file: "raw/node-feat.csv.gz", line: 3, mentioning: "2 columns, but line 1 has 3")
        tiny.files["raw/node-feat.csv"] = "0,1,0\n0.5,0,-1.5e-3\n1,1,1\n0,0,0,0\n2.25,0,1\n0,3,0\n"
        try expectUserError(tiny, file: "raw/node-feat.csv.gz", line: 4, mentioning: "4 columns, but line 1 has 3")
    }

    @Test func aFeatureFileWithTheWrongNumberOfRowsIsReported() throws {
        var tiny = TinyDataSet()
        tiny.files["raw/node-feat.csv"] = "0,1,0\n0.5,0,-1.5e-3\n1,1,1\n0,0,0\n2.25,0,1\n"
        try expectUserError(tiny, file: "raw/node-feat.csv.gz", line: 5, mentioning: "num-node-list.csv.gz says 6 nodes")
        tiny.files["raw/node-feat.csv"] = "0,1,0\n0.5,0,-1.5e-3\n1,1,1\n0,0,0\n2.25,0,1\n0,3,0\n1,1,1\n"
        try expectUserError(tiny, file: "raw/node-feat.csv.gz", line: 7, mentioning: "more rows than the 6 nodes")
    }

    @Test func aLabelFileWithTheWrongNumberOfLinesIsReported() throws {
        var tiny = TinyDataSet()
        tiny.files["raw/node-label.csv"] = "0\n1\n2\n-1\n1\n0\n2\n"
        try expectUserError(tiny, file: "raw/node-label.csv.gz", line: 7, mentioning: "more labels than the 6 nodes")
        tiny.files["raw/node-label.csv"] = "0\n1\n2\n"
        try expectUserError(tiny, file: "raw/node-label.csv.gz", line: 3, mentioning: "num-node-list.csv.gz says 6 nodes")
    }

    @Test func anEdgeCountThatDiffersFromNumEdgeListIsReported() throws {
        var tiny = TinyDataSet()
        tiny.files["raw/num-edge-list.csv"] = "4\n"
        try expectUserError(tiny, file: "raw/edge.csv.gz", line: 5, mentioning: "more edges than the 4 in num-edge-list.csv.gz")
        tiny.files["raw/num-edge-list.csv"] = "7\n"
        try expectUserError(tiny, file: "raw/edge.csv.gz", line: 5, mentioning: "num-edge-list.csv.gz says 7")
    }

    @Test func aLabelBelowMinusOneIsReported() throws {
        var tiny = TinyDataSet()
        tiny.files["raw/node-label.csv"] = "0\n1\n2\n-2\n1\n0\n"
        try expectUserError(tiny, file: "raw/node-label.csv.gz", line: 4, mentioning: "label -2")
    }

    @Test(arguments: ["raw/edge.csv", "raw/node-feat.csv", "raw/node-label.csv", "raw/num-node-list.csv",
                      "raw/num-edge-list.csv", "split/public/train.csv", "split/public/valid.csv", "split/public/test.csv"])
    func aMissingFileIsNamedWithItsPath(file: String) throws {
        var tiny = TinyDataSet()
        tiny.files.removeValue(forKey: file)
        try withTemporaryDirectory { directory in
            try tiny.write(to: directory)
            let error = #expect(throws: UserError.self) { try NodePropertyDataset.load(directory: directory, name: "tiny") }
            let message = error?.description ?? ""
            #expect(message.contains(directory.appendingPathComponent(file + ".gz").path) && message.contains("no such file"), "\(message)")
        }
    }

    @Test func aMissingDirectoryOrSplitFolderIsReported() throws {
        try withTemporaryDirectory { directory in
            let absent = directory.appendingPathComponent("absent")
            let error = #expect(throws: UserError.self) { try NodePropertyDataset.load(directory: absent, name: "tiny") }
            #expect(error?.description.contains(absent.path) == true, "\(error?.description ?? "")")

            var tiny = TinyDataSet()
            for split in ["train", "valid", "test"] {
                tiny.files["split/a/\(split).csv"] = tiny.files["split/public/\(split).csv"]
                tiny.files["split/b/\(split).csv"] = tiny.files.removeValue(forKey: "split/public/\(split).csv")
            }
            try tiny.write(to: directory)
            let splitError = #expect(throws: UserError.self) { try NodePropertyDataset.load(directory: directory, name: "tiny") }
            #expect(splitError?.description.contains("split/public") == true && splitError?.description.contains("a, b") == true,
                    "\(splitError?.description ?? "")")
        }
    }

    @Test func anEmptySplitIsReported() throws {
        var tiny = TinyDataSet()
        tiny.files["split/public/valid.csv"] = ""
        try expectUserError(tiny, file: "split/public/valid.csv.gz", line: 1, mentioning: "the split is empty")
    }

    @Test func aNodeInTwoSplitsIsReported() throws {
        var tiny = TinyDataSet()
        tiny.files["split/public/test.csv"] = "5\n2\n"
        try expectUserError(tiny, file: "split/public/test.csv.gz", line: 2, mentioning: "node 2 is already listed in valid.csv.gz (line 1)")
        tiny = TinyDataSet()
        tiny.files["split/public/train.csv"] = "0\n1\n0\n"
        try expectUserError(tiny, file: "split/public/train.csv.gz", line: 3, mentioning: "node 0 is already listed earlier in this file (line 1)")
    }

    // MARK: Sizes: counts a file claims, ids at 2³¹

    /// num-node-list claiming 2³⁰ nodes and num-edge-list 2³⁹ edges over files of a few bytes: the
    /// loader reserves only what those files can hold (a few thousand lines, not 2³⁰ × 12 bytes)
    /// and reports the first file that ends short.
    @Test func countsTheFilesCannotHoldReserveLittleAndAreReported() throws {
        try expectUserError(setting: "raw/num-node-list.csv", to: "\(1 << 30)\n", file: "raw/node-feat.csv.gz", line: 6,
                            mentioning: "num-node-list.csv.gz says 1073741824 nodes")
        try expectUserError(setting: "raw/num-edge-list.csv", to: "\(1 << 39)\n", file: "raw/edge.csv.gz", line: 5,
                            mentioning: "num-edge-list.csv.gz says 549755813888")
        try withTemporaryDirectory { directory in
            try TinyDataSet().write(to: directory)
            let edges = directory.appendingPathComponent("raw/edge.csv.gz")
            let bytes = try #require(try FileManager.default.attributesOfItem(atPath: edges.path)[.size] as? Int)
            #expect(NodePropertyDataset.lineCountBound(edges, minimumLineBytes: 4) == (bytes * 1032 + 1) / 4)
            #expect(NodePropertyDataset.lineCountBound(edges, minimumLineBytes: 4) < 1 << 15, "a \(bytes)-byte file")
            #expect(NodePropertyDataset.lineCountBound(directory.appendingPathComponent("absent"), minimumLineBytes: 4) == 0)
        }
        try withTemporaryDirectory { directory in
            try TinyDataSet().write(to: directory, compressed: false)
            let edges = directory.appendingPathComponent("raw/edge.csv")
            #expect(NodePropertyDataset.lineCountBound(edges, minimumLineBytes: 4) == ("0,1\n1,2\n2,3\n3,4\n4,5\n".utf8.count + 1) / 4)
        }
    }

    @Test func moreThan2To31NodesAreReported() throws {
        try expectUserError(setting: "raw/num-node-list.csv", to: "\((1 << 31) + 1)\n", line: 1, mentioning: "at most 2147483648 (2³¹)")
    }

    /// Ids of 2³¹ and beyond do not fit Int32: they are out of range of any N the loader accepts.
    @Test func nodeIdsOf2To31AreReportedWithTheirFileAndLine() throws {
        try expectUserError(setting: "raw/edge.csv", to: "0,1\n1,2\n2,2147483648\n3,4\n4,5\n", line: 3,
                            mentioning: "node id 2147483648 is out of range")
        try expectUserError(setting: "raw/edge.csv", to: "0,1\n4294967297,2\n2,3\n3,4\n4,5\n", line: 2,
                            mentioning: "node id 4294967297 is out of range")
        try expectUserError(setting: "split/public/test.csv", to: "5\n2147483653\n", line: 2, mentioning: "node id 2147483653 is out of range")
    }

    /// `TinyDataSet` with `path` holding `text` instead: expects one UserError naming `file` (by
    /// default the same path, gzip-compressed), `line N` and `detail`.
    func expectUserError(setting path: String, to text: String, file: String? = nil, line: Int, mentioning detail: String,
                         sourceLocation: SourceLocation = #_sourceLocation) throws {
        var tiny = TinyDataSet()
        tiny.files[path] = text
        try expectUserError(tiny, file: file ?? path + ".gz", line: line, mentioning: detail, sourceLocation: sourceLocation)
    }

    /// Loads `tiny` (gzip-compressed) and expects one UserError naming `file`, `line N` and `detail`.
    func expectUserError(_ tiny: TinyDataSet, file: String, line: Int, mentioning detail: String,
                         sourceLocation: SourceLocation = #_sourceLocation) throws {
        try withTemporaryDirectory { directory in
            try tiny.write(to: directory)
            let error = #expect(throws: UserError.self, sourceLocation: sourceLocation) {
                try NodePropertyDataset.load(directory: directory, name: "tiny")
            }
            let message = error?.description ?? ""
            let path = directory.appendingPathComponent(file).path
            #expect(message.contains("\(path), line \(line):"), "\(message)", sourceLocation: sourceLocation)
            #expect(message.contains(detail), "\(message)", sourceLocation: sourceLocation)
        }
    }
}

/// Six nodes, three features, five edges, in the OGB raw layout; paths without ".gz".
struct TinyDataSet {
    var files: [String: String] = [
        "raw/node-feat.csv": "0,1,0\n0.5,0,-1.5e-3\n1,1,1\n0,0,0\n2.25,0,1e5\n0,3,0\n",
        "raw/node-label.csv": "0\n1\n2\n-1\n1\n0\n",
        "raw/edge.csv": "0,1\n1,2\n2,3\n3,4\n4,5\n",
        "raw/num-node-list.csv": "6\n",
        "raw/num-edge-list.csv": "5\n",
        "split/public/train.csv": "0\n1\n",
        "split/public/valid.csv": "2\n3\n",
        "split/public/test.csv": "5\n4\n",
    ]

    /// Writes every file under `directory`, as `<path>.gz` or, if not `compressed`, as `<path>`.
    func write(to directory: URL, compressed: Bool = true) throws {
        for (path, text) in files {
            let url = directory.appendingPathComponent(compressed ? path + ".gz" : path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            if compressed { writeGzip(text, to: url) } else { try Data(text.utf8).write(to: url) }
        }
    }
}

/// Writes `text` gzip-compressed to `url`; `appending` adds another gzip member to the file.
func writeGzip(_ text: String, to url: URL, appending: Bool = false) {
    guard let file = gzopen(url.path, appending ? "ab" : "wb") else { fatalError("gzopen \(url.path) failed") }
    var bytes = Array(text.utf8)
    if !bytes.isEmpty {
        let written = gzwrite(file, &bytes, UInt32(bytes.count))
        precondition(written == Int32(bytes.count), "gzwrite \(url.path) failed")
    }
    precondition(gzclose(file) == Z_OK, "gzclose \(url.path) failed")
}

/// Runs `body` with a new empty directory that is removed afterwards.
func withTemporaryDirectory(_ body: (URL) throws -> Void) throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("replica-ogb-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    try body(directory)
}
