import Foundation
import Testing
import _ReplicaTestSupport

/// `replica data synth-graph`, run as users run it.
@Suite(.serialized) struct SynthGraphCommandTests {
    /// A new folder for a test's outputs, removed afterwards.
    func withFolder(_ body: (URL) throws -> Void) throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("replica-synth-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try body(folder)
    }

    static let tiny = ["data", "synth-graph", "--nodes", "300", "--avg-degree", "4", "--features", "8", "--classes", "3",
                       "--homophily", "0.9", "--seed", "5", "--progress", "none"]

    @Test func aTinyGraphIsWrittenAndTrainGATLoadsIt() throws {
        try withFolder { folder in
            let out = folder.appendingPathComponent("tiny")
            let result = try runProcess(replicaExecutable, Self.tiny + ["--out", out.path])
            #expect(result.status == 0, "\(result.standardError)")
            #expect(result.standardOutput.contains("300 nodes, 1200 edges, 8 features, 3 classes"), "\(result.standardOutput)")
            // 1,200 edges: the same-class fraction's standard deviation is √(0.9 · 0.1 / 1200) ≈ 0.009.
            let measured = result.standardOutput.components(separatedBy: "homophily of the written edges ").last?
                .split(separator: " ").first.flatMap { Double($0) }
            #expect(abs(try #require(measured) - 0.9) < 0.05, "\(result.standardOutput)")
            #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("raw/node-feat.csv.gz").path))

            let training = try runProcess(replicaExecutable, ["train", "gat", "--data", out.path, "--epochs", "2", "--threads", "1",
                                                              "--no-normalize-features", "--json", "--progress", "none"])
            #expect(training.status == 0, "\(training.standardError)")
            #expect(training.standardError.contains("300 nodes") && training.standardError.contains("loaded in"),
                    "the banner names the graph and its load time: \(training.standardError)")
            let summary = try #require(JSONSerialization.jsonObject(with: Data(training.lines.last!.utf8)) as? [String: Any])
            #expect(summary["load_seconds"] as? Double != nil, "\(summary)")
        }
    }

    @Test func anExistingFolderWithFilesIsAUserError() throws {
        try withFolder { folder in
            try Data("x".utf8).write(to: folder.appendingPathComponent("keep.txt"))
            let result = try runProcess(replicaExecutable, Self.tiny + ["--out", folder.path])
            expectUserFailure(result, naming: folder.path, noOutput: true)
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["keep.txt"])
        }
    }

    @Test func sizesWithoutAPresetMustAllBeGiven() throws {
        let result = try runProcess(replicaExecutable, ["data", "synth-graph", "--nodes", "100", "--out", "/tmp/never-written"])
        #expect(result.status == 1)
        #expect(result.standardError.contains("--like") && result.standardError.contains("missing --avg-degree, --features, --classes"),
                "\(result.standardError)")
        let badHomophily = try runProcess(replicaExecutable, ["data", "synth-graph", "--like", "arxiv", "--homophily", "2", "--out", "/tmp/never-written"])
        #expect(badHomophily.status == 1 && badHomophily.standardError.contains("--homophily 2"), "\(badHomophily.standardError)")
        #expect(!FileManager.default.fileExists(atPath: "/tmp/never-written"))
    }

    /// SIGKILL while the files are written leaves no --out folder, only the hidden temporary one,
    /// which the next run into the same folder removes.
    @Test func aKilledRunLeavesNoOutputFolder() throws {
        try withFolder { folder in
            let out = folder.appendingPathComponent("big")
            var killed = false
            let result = try runProcess(replicaExecutable, ["data", "synth-graph", "--nodes", "400000", "--avg-degree", "10",
                                                            "--features", "32", "--classes", "10", "--progress", "none",
                                                            "--out", out.path]) { pid in
                let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
                if !killed && names.contains(".tmp-big-\(pid)") {
                    kill(pid, SIGKILL)
                    killed = true
                }
            }
            try #require(killed, "the run ended before it could be killed: \(result.standardOutput)")
            #expect(result.status == 128 + SIGKILL)
            #expect(!FileManager.default.fileExists(atPath: out.path))

            let again = try runProcess(replicaExecutable, Self.tiny + ["--out", out.path])
            #expect(again.status == 0, "\(again.standardError)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["big"], "the leftover is removed")
        }
    }
}
