import Foundation
import Testing
import ReplicaCore
import _ReplicaTestSupport

/// A fresh directory under the system's temporary directory; remove it when done.
private func makeScratchDirectory() throws -> URL {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("replica-safetensors-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    return directory
}

/// A safetensors file: the header's length, the header (space-padded to 8 bytes), `dataBytes` bytes.
private func safetensorsBytes(header: String, dataBytes: Int) -> Data {
    var headerBytes = Array(header.utf8)
    headerBytes += Array(repeating: UInt8(ascii: " "), count: (8 - headerBytes.count % 8) % 8)
    var data = Data()
    withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { data.append(contentsOf: $0) }
    data.append(contentsOf: headerBytes)
    data.append(contentsOf: (0..<dataBytes).map { UInt8(truncatingIfNeeded: $0) })
    return data
}

/// One malformed file and a word its error message must contain.
struct MalformedFile: Sendable, CustomTestStringConvertible {
    let label: String
    let bytes: Data
    let keyword: String
    var testDescription: String { label }

    init(_ label: String, header: String, dataBytes: Int, keyword: String) {
        self.init(label, bytes: safetensorsBytes(header: header, dataBytes: dataBytes), keyword: keyword)
    }

    init(_ label: String, bytes: Data, keyword: String) {
        self.label = label
        self.bytes = bytes
        self.keyword = keyword
    }

    static func tensor(_ name: String, dtype: String = "F32", shape: String, offsets: String) -> String {
        "\"\(name)\":{\"dtype\":\"\(dtype)\",\"shape\":\(shape),\"data_offsets\":\(offsets)}"
    }

    static let all: [MalformedFile] = [
        MalformedFile("shorter than 8 bytes", bytes: Data([1, 0, 0, 0, 0]), keyword: "too short"),
        MalformedFile("header length beyond the file",
                      bytes: Data([0xE8, 0x03, 0, 0, 0, 0, 0, 0]) + Data("{}        ".utf8), keyword: "exceeds"),
        MalformedFile("header length of 2^64 - 1", bytes: Data(repeating: 0xFF, count: 8) + Data("{}".utf8), keyword: "exceeds"),
        MalformedFile("header not JSON", header: "{\"a\": [0, 4", dataBytes: 4, keyword: "not valid JSON"),
        MalformedFile("header not an object", header: "[1, 2]", dataBytes: 0, keyword: "not a JSON object"),
        MalformedFile("tensor entry not an object", header: "{\"a\": 5}", dataBytes: 0, keyword: "not an object"),
        MalformedFile("unknown dtype", header: "{\(tensor("a", dtype: "Q7", shape: "[1]", offsets: "[0,4]"))}",
                      dataBytes: 4, keyword: "unknown dtype"),
        MalformedFile("dtype other than F32", header: "{\(tensor("a", dtype: "F16", shape: "[2]", offsets: "[0,4]"))}",
                      dataBytes: 4, keyword: "F32 only"),
        MalformedFile("missing dtype", header: "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", dataBytes: 4, keyword: "dtype"),
        MalformedFile("shape and offsets disagree", header: "{\(tensor("a", shape: "[2]", offsets: "[0,4]"))}",
                      dataBytes: 4, keyword: "span"),
        MalformedFile("offsets beyond the data", header: "{\(tensor("a", shape: "[2]", offsets: "[0,8]"))}",
                      dataBytes: 4, keyword: "outside"),
        MalformedFile("offsets reversed", header: "{\(tensor("a", shape: "[0]", offsets: "[4,0]"))}",
                      dataBytes: 4, keyword: "outside"),
        MalformedFile("overlapping tensors",
                      header: "{\(tensor("a", shape: "[2]", offsets: "[0,8]")),\(tensor("b", shape: "[2]", offsets: "[4,12]"))}",
                      dataBytes: 12, keyword: "overlap"),
        MalformedFile("gap between tensors",
                      header: "{\(tensor("a", shape: "[1]", offsets: "[0,4]")),\(tensor("b", shape: "[1]", offsets: "[8,12]"))}",
                      dataBytes: 12, keyword: "belong to no tensor"),
        MalformedFile("trailing bytes", header: "{\(tensor("a", shape: "[1]", offsets: "[0,4]"))}", dataBytes: 8, keyword: "cover"),
        MalformedFile("fractional shape", header: "{\(tensor("a", shape: "[1.5]", offsets: "[0,4]"))}", dataBytes: 4, keyword: "shape"),
        MalformedFile("real-valued offset", header: "{\(tensor("a", shape: "[1]", offsets: "[0,4.0]"))}", dataBytes: 4, keyword: "data_offsets"),
        MalformedFile("boolean shape", header: "{\(tensor("a", shape: "[true]", offsets: "[0,4]"))}", dataBytes: 4, keyword: "shape"),
        MalformedFile("negative dimension", header: "{\(tensor("a", shape: "[-1]", offsets: "[0,4]"))}", dataBytes: 4, keyword: "shape"),
        MalformedFile("three offsets", header: "{\(tensor("a", shape: "[1]", offsets: "[0,4,8]"))}", dataBytes: 4, keyword: "data_offsets"),
        MalformedFile("overflowing shape",
                      header: "{\(tensor("a", shape: "[4611686018427387904,4]", offsets: "[0,4]"))}", dataBytes: 4, keyword: "too many"),
        MalformedFile("metadata not strings", header: "{\"__metadata__\":{\"step\":3}}", dataBytes: 0, keyword: "__metadata__"),
    ]
}

@Suite struct SafeTensorsTests {
    @Test func tensorsAndMetadataRoundTrip() throws {
        let directory = try makeScratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("model.safetensors")
        let tensors: [(name: String, tensor: Tensor)] = [
            ("transformer.wte.weight", randomTensor([5, 3], seed: 1)),
            ("transformer.h.0.ln_1.weight", randomTensor([3], seed: 2)),
            ("empty", Tensor(zeros: [0, 4])),
            ("scalar", Tensor(shape: [], values: [42])),
            ("odd \"name\"\\with\tescapes", randomTensor([2, 1, 2], seed: 3)),
        ]
        let metadata = ["format": "pt", "step": "12", "note": "ünïcode \"quoted\""]
        try SafeTensors.write(tensors, metadata: metadata, to: file)

        let bytes = try Data(contentsOf: file)
        let headerLength = bytes.prefix(8).reversed().reduce(0) { $0 << 8 | Int($1) }
        #expect(headerLength % 8 == 0)
        #expect(bytes[8] == UInt8(ascii: "{"))
        #expect(bytes.count == 8 + headerLength + (15 + 3 + 0 + 1 + 4) * 4)

        let read = try SafeTensors.read(from: file)
        #expect(read.order == tensors.map(\.name))
        #expect(read.metadata == metadata)
        for (name, tensor) in tensors {
            #expect(read.tensors[name]?.shape == tensor.shape, "\(name)")
            #expect(read.tensors[name]?.scalars.map(\.bitPattern) == tensor.scalars.map(\.bitPattern), "\(name)")
        }
    }

    @Test func fileWithoutMetadataOrTensorsRoundTrips() throws {
        let directory = try makeScratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("empty.safetensors")
        try SafeTensors.write([], metadata: [:], to: file)
        let read = try SafeTensors.read(from: file)
        #expect(read.tensors.isEmpty && read.order.isEmpty && read.metadata.isEmpty)
    }

    @Test(arguments: MalformedFile.all)
    func malformedFileIsAUserErrorNamingTheFile(_ malformed: MalformedFile) throws {
        let directory = try makeScratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("broken-checkpoint.safetensors")
        try malformed.bytes.write(to: file)
        let error = #expect(throws: UserError.self) { try SafeTensors.read(from: file) }
        #expect(error?.description.contains("broken-checkpoint.safetensors") == true, "\(error?.description ?? "")")
        #expect(error?.description.contains(malformed.keyword) == true, "\(error?.description ?? "")")
    }

    @Test func missingFileIsAUserErrorNamingTheFile() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("replica-missing-\(UUID().uuidString).safetensors")
        let error = #expect(throws: UserError.self) { try SafeTensors.read(from: file) }
        #expect(error?.description.contains(file.lastPathComponent) == true)
    }
}

@Suite struct AtomicDirectoryTests {
    /// Hidden entries (temporary or set-aside directories) left in `directory`.
    private func leftovers(in directory: URL) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasPrefix(".") }
    }

    @Test func failingFillLeavesTheOldDirectoryIntact() throws {
        let directory = try makeScratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let checkpoint = directory.appendingPathComponent("step-00000010")
        try AtomicDirectory.write(to: checkpoint) { try Data("old".utf8).write(to: $0.appendingPathComponent("state.json")) }

        struct FillFailed: Error {}
        #expect(throws: FillFailed.self) {
            try AtomicDirectory.write(to: checkpoint) { temporary in
                try Data("new".utf8).write(to: temporary.appendingPathComponent("state.json"))
                try Data("partial".utf8).write(to: temporary.appendingPathComponent("model.safetensors"))
                throw FillFailed()
            }
        }
        #expect(try String(contentsOf: checkpoint.appendingPathComponent("state.json"), encoding: .utf8) == "old")
        #expect(try FileManager.default.contentsOfDirectory(atPath: checkpoint.path) == ["state.json"])
        #expect(try leftovers(in: directory).isEmpty)
    }

    @Test func newDirectoryReplacesTheOldOne() throws {
        let directory = try makeScratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let checkpoint = directory.appendingPathComponent("step-00000010")
        try AtomicDirectory.write(to: checkpoint) { try Data("old".utf8).write(to: $0.appendingPathComponent("old.txt")) }
        try AtomicDirectory.write(to: checkpoint) { temporary in
            let nested = temporary.appendingPathComponent("nested")
            try FileManager.default.createDirectory(at: nested, withIntermediateDirectories: false)
            try Data("new".utf8).write(to: nested.appendingPathComponent("new.txt"))
            try SafeTensors.write([("w", randomTensor([2, 2], seed: 4))], metadata: [:],
                                  to: temporary.appendingPathComponent("model.safetensors"))
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: checkpoint.path).sorted() == ["model.safetensors", "nested"])
        #expect(try SafeTensors.read(from: checkpoint.appendingPathComponent("model.safetensors")).order == ["w"])
        #expect(try leftovers(in: directory).isEmpty)
    }

    @Test func fileIsReplacedAtomically() throws {
        let directory = try makeScratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let latest = directory.appendingPathComponent("latest")
        try AtomicDirectory.writeFileAtomically(Data("step-00000010\n".utf8), to: latest)
        try AtomicDirectory.writeFileAtomically(Data("step-00000020\n".utf8), to: latest)
        #expect(try String(contentsOf: latest, encoding: .utf8) == "step-00000020\n")
        #expect(try leftovers(in: directory).isEmpty)
    }

    @Test func fileInAMissingDirectoryIsAUserError() {
        let latest = FileManager.default.temporaryDirectory.appendingPathComponent("replica-missing-\(UUID().uuidString)/latest")
        let error = #expect(throws: UserError.self) { try AtomicDirectory.writeFileAtomically(Data("x".utf8), to: latest) }
        #expect(error?.description.contains(latest.deletingLastPathComponent().lastPathComponent) == true)
    }

    @Test func leftoversOfDeadWritersAreRemovedAndLiveOnesKept() throws {
        let directory = try makeScratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        // A pid far above pid_max (4,194,304 at most on Linux) is never running.
        let dead = ".tmp-step-00000005-99999999", old = ".old-step-00000003-99999999"
        let live = ".tmp-step-00000010-\(getpid())"
        for name in [dead, old, live, "step-00000004"] {
            try FileManager.default.createDirectory(at: directory.appendingPathComponent(name), withIntermediateDirectories: false)
        }
        #expect(AtomicDirectory.removeLeftovers(in: directory) == [old, dead])
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted() == [live, "step-00000004"])
    }
}
