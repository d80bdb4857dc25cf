import Foundation
import Testing
import _ReplicaTestSupport

/// `replica train mlm` and `replica analyze embeddings` end to end on a tiny corpus and model.
@Suite(.serialized) struct MLMCommandTests {
    static let folder: URL = {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("replica-mlm-\(getpid())")
        try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return folder
    }()

    /// 400 lines of five consecutive words from a cycle of twelve, a third of them from the start.
    static let corpus = Result { () throws -> URL in
        let words = ["red", "green", "blue", "dog", "cat", "runs", "jumps", "over", "the", "fence", "park", "ball"]
        let lines = (0..<400).map { i in (0..<5).map { words[((i % 3 == 0 ? 0 : i * 7) + $0) % words.count] }.joined(separator: " ") }
        let url = folder.appendingPathComponent("sentences.txt")
        try (lines.joined(separator: "\n") + "\n").write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    static func trainArguments() throws -> [String] {
        try ["train", "mlm", "--data", corpus.get().path, "--steps", "20", "--vocabulary", "100", "--embedding", "16",
                                 "--heads", "2", "--layers", "1", "--feed-forward", "32", "--batch-size", "16", "--max-length", "12",
                                 "--warmup", "2", "--threads", "1", "--json", "--quiet"]
    }

    static func errorLines(_ result: ProcessResult) -> [Substring] {
        result.standardError.split(separator: "\n").filter { $0.hasPrefix("Error:") }
    }

    static func lastJSON(_ result: ProcessResult) throws -> [String: Any] {
        let last = try #require(result.lines.last)
        return try #require(JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any])
    }

    @Test func trainingPrintsTheSummaryAndTheCheckpointIsAnalysed() throws {
        let checkpoints = Self.folder.appendingPathComponent("ckpt")
        let result = try runProcess(replicaExecutable, Self.trainArguments() + ["--checkpoint-dir", checkpoints.path])
        #expect(result.status == 0, "\(result.standardError)")
        let summary = try Self.lastJSON(result)
        for key in ["task", "ranks", "steps", "seconds", "param_count", "val_loss", "masked_accuracy", "unigram_accuracy"] {
            #expect(summary[key] != nil, "missing \(key)")
        }
        #expect(summary["task"] as? String == "mlm")
        #expect(summary["steps"] as? Int == 20)

        let analysis = try runProcess(replicaExecutable, ["analyze", "embeddings", "--checkpoint", checkpoints.path, "--json",
                                                          "--top", "3", "--nearest", "dog,red"])
        #expect(analysis.status == 0, "\(analysis.standardError)")
        #expect(analysis.standardOutput.contains("mean cosine") && analysis.standardOutput.contains("nearest to ▁dog"))
        let report = try Self.lastJSON(analysis)
        #expect(report["task"] as? String == "mlm")
        #expect(report["dim"] as? Int == 16)
        #expect(report["k"] as? Int == 3)
        let tokens = try #require(report["tokens"] as? Int)
        #expect(tokens >= 12 && tokens <= 95, "ordinary tokens: \(tokens)")
        let after = try #require(report["after"] as? [String: Any]), before = try #require(report["before"] as? [String: Any])
        let topAfter = try #require(after["top1_variance"] as? Double), topBefore = try #require(before["top1_variance"] as? Double)
        #expect(topAfter <= topBefore + 1e-9)
        #expect(abs(try #require(after["mean_cosine"] as? Double)) < 0.1)
        #expect(report["norm_log_frequency_correlation"] is Double, "mlm checkpoints carry token counts")
        #expect((report["nearest"] as? [String: Any])?["dog"] != nil)
    }

    @Test func aCharLMCheckpointIsAnalysed() throws {
        let text = Self.folder.appendingPathComponent("text.txt")
        try String(repeating: "to be or not to be, that is the question. ", count: 20).write(to: text, atomically: true, encoding: .utf8)
        let checkpoints = Self.folder.appendingPathComponent("charlm")
        let trained = try runProcess(replicaExecutable, ["train", "charlm", "--data", text.path, "--steps", "2", "--layers", "1",
                                                         "--embedding", "8", "--heads", "1", "--block-size", "8", "--batch-size", "2",
                                                         "--eval-batches", "1", "--quiet", "--threads", "1",
                                                         "--checkpoint-dir", checkpoints.path])
        #expect(trained.status == 0, "\(trained.standardError)")
        let analysis = try runProcess(replicaExecutable, ["analyze", "embeddings", "--checkpoint", checkpoints.path, "--json"])
        #expect(analysis.status == 0, "\(analysis.standardError)")
        let report = try Self.lastJSON(analysis)
        #expect(report["task"] as? String == "charlm")
        #expect(report["tokens"] as? Int == Set("to be or not to be, that is the question. ").count)
        #expect(report["dim"] as? Int == 8)
        #expect(report["norm_log_frequency_correlation"] is NSNull)
    }

    @Test(arguments: [["gat"], ["gat", "--model", "gcn"], ["graphmae"]])
    func aGraphCheckpointsInputFeatureVectorsAreAnalysed(model: [String]) throws {
        let checkpoints = Self.folder.appendingPathComponent(model.joined(separator: "-"))
        let trained = try runProcess(replicaExecutable, ["train"] + model + ["--epochs", "2", "--quiet", "--threads", "1",
                                                                             "--checkpoint-dir", checkpoints.path]
                                     + (model[0] == "graphmae" ? ["--hidden", "16", "--heads", "2", "--probe-epochs", "2"] : []))
        #expect(trained.status == 0, "\(trained.standardError)")
        let analysis = try runProcess(replicaExecutable, ["analyze", "embeddings", "--checkpoint", checkpoints.path, "--json"])
        #expect(analysis.status == 0, "\(analysis.standardError)")
        let report = try Self.lastJSON(analysis)
        #expect(report["task"] as? String == model[0])
        #expect(report["tokens"] as? Int == 1433, "one vector per Cora feature (word)")
    }

    @Test func aBadCheckpointIsOneErrorLine() throws {
        let missing = try runProcess(replicaExecutable, ["analyze", "embeddings", "--checkpoint", "/nonexistent/replica-ckpt"])
        #expect(missing.status == 1)
        #expect(Self.errorLines(missing).count == 1 && missing.standardError.contains("/nonexistent/replica-ckpt"), "\(missing.standardError)")
        let damaged = Self.folder.appendingPathComponent("damaged")
        try FileManager.default.createDirectory(at: damaged, withIntermediateDirectories: true)
        try "{not json".write(to: damaged.appendingPathComponent("state.json"), atomically: true, encoding: .utf8)
        let result = try runProcess(replicaExecutable, ["analyze", "embeddings", "--checkpoint", damaged.path])
        #expect(result.status == 1)
        let errors = Self.errorLines(result)
        #expect(errors.count == 1 && errors[0].contains("state.json"), "\(result.standardError)")
    }

    @Test func badDataIsOneErrorLineNamingTheFile() throws {
        let empty = Self.folder.appendingPathComponent("empty.txt")
        try Data().write(to: empty)
        let binary = Self.folder.appendingPathComponent("binary.txt")
        try Data([0x61, 0x62, 0x0a, 0xff, 0xfe, 0x0a]).write(to: binary)
        let blank = Self.folder.appendingPathComponent("blank.txt")
        try "\n   \n\n".write(to: blank, atomically: true, encoding: .utf8)
        for path in ["/nonexistent/sentences.txt", empty.path, binary.path, blank.path] {
            let result = try runProcess(replicaExecutable, ["train", "mlm", "--data", path, "--steps", "1"])
            #expect(result.status == 1, "\(path): \(result.standardError)")
            let errors = Self.errorLines(result)
            #expect(errors.count == 1 && errors[0].contains(path), "\(path): \(result.standardError)")
        }
    }

    @Test func twoRanksTrainTogether() throws {
        let result = try runProcess(mpirunPath, mpirunArguments(ranks: 2) + [replicaExecutable] + Self.trainArguments())
        #expect(result.status == 0, "\(result.standardError)")
        let summary = try Self.lastJSON(result)
        #expect(summary["ranks"] as? Int == 2)
        #expect(summary["task"] as? String == "mlm")
    }
}
