import Foundation
import Testing
import ReplicaCore
import _ReplicaTestSupport

/// One short `replica train cbow` run on the embedded Multi30k, shared by the tests that read it.
enum CBOWFixtures {
    static let folder: URL = {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("replica-cbow-cli-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(at: CBOWFixtures.folder) }
        return folder
    }()

    static func arguments(_ extra: [String]) -> [String] {
        ["train", "cbow", "--steps", "30", "--batch-size", "64", "--embedding", "16", "--eval-windows", "256", "--json",
         "--warmup", "5", "--lr", "3e-2", "--threads", "1", "--quiet"] + extra
    }

    static let training: Result<(result: ProcessResult, directory: URL), Error> = Result {
        let directory = folder.appendingPathComponent("run")
        let result = try runProcess(replicaExecutable, arguments(["--checkpoint-dir", directory.path]), timeout: 180)
        return (result, directory)
    }
}

@Suite struct CBOWCommandTests {
    func jsonObject(_ line: String) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not a JSON object: \(line)")
    }

    @Test func trainingPrintsTheCBOWSummaryAsTheLastLine() throws {
        let (result, _) = try CBOWFixtures.training.get()
        #expect(result.status == 0, "\(result.standardError)")
        let summary = try jsonObject(try #require(result.lines.last))
        #expect(summary["task"] as? String == "cbow")
        #expect(summary["ranks"] as? Int == 1 && summary["steps"] as? Int == 30)
        // 4,565 words of Multi30k English occur 3 times or more; two tables of 16 each.
        #expect(summary["vocab_size"] as? Int == 4565)
        #expect(summary["param_count"] as? Int == 2 * 4565 * 16)
        for key in ["seconds", "train_loss", "val_loss", "words_per_s"] {
            let value = summary[key] as? Double
            #expect(value != nil && value!.isFinite && value! > 0, "\(key): \(summary[key] ?? "absent")")
        }
        for key in ["val_accuracy", "val_top10"] {
            let value = summary[key] as? Double
            #expect(value != nil && (0...1).contains(value!), "\(key): \(summary[key] ?? "absent")")
        }
        // After 30 steps the loss is below its start, at most 6·log 2 = 4.16 per window.
        #expect((summary["val_loss"] as? Double ?? 9) < 4.0)
    }

    @Test func theCheckpointHoldsBothTablesAndTheVocabularyWithCounts() throws {
        let (result, directory) = try CBOWFixtures.training.get()
        #expect(result.status == 0, "\(result.standardError)")
        let folder = directory.appendingPathComponent("step-00000030")
        let stateData = try Data(contentsOf: folder.appendingPathComponent("state.json"))
        let state = try #require(JSONSerialization.jsonObject(with: stateData) as? [String: Any])
        #expect(state["task"] as? String == "cbow")
        let vocabulary = try #require(state["vocab"] as? [String])
        let counts = try #require(state["counts"] as? [Int])
        #expect(vocabulary.count == 4565 && counts.count == 4565)
        #expect(vocabulary.prefix(3) == ["a", "in", "the"] && counts[0] == 49171)
        let tensors = try SafeTensors.read(from: folder.appendingPathComponent("model.safetensors")).tensors
        #expect(tensors["input_embedding.weight"]?.shape == [4565, 16])
        #expect(tensors["output_embedding.weight"]?.shape == [4565, 16])
    }

    @Test func analyzeEmbeddingsReadsTheInputVectorsVocabularyAndCounts() throws {
        let (result, directory) = try CBOWFixtures.training.get()
        #expect(result.status == 0, "\(result.standardError)")
        let analysis = try runProcess(replicaExecutable, ["analyze", "embeddings", "--checkpoint", directory.path, "--json",
                                                          "--nearest", "man,dog", "--neighbours", "3"])
        #expect(analysis.status == 0, "\(analysis.standardError)")
        let summary = try jsonObject(try #require(analysis.lines.last))
        #expect(summary["task"] as? String == "cbow" && summary["tensor"] as? String == "input_embedding.weight")
        #expect(summary["tokens"] as? Int == 4565 && summary["dim"] as? Int == 16)
        let nearest = try #require(summary["nearest"] as? [String: [[String: Any]]])
        #expect(nearest["man"]?.count == 3 && nearest["dog"]?.count == 3)
        #expect(summary["norm_log_frequency_correlation"] as? Double != nil)
        #expect(summary["norm_log_frequency_correlation_whitened"] as? Double != nil)
        let buckets = try #require(summary["norm_by_frequency"] as? [[String: Any]])
        // Counts 3 to 49,171: the decades 1–9 up to 10,000–99,999, every word in one of them.
        #expect(buckets.count == 5 && buckets.reduce(0) { $0 + ($1["words"] as? Int ?? 0) } == 4565)
        let after = try #require(summary["after"] as? [String: Double])
        #expect(abs(after["mean_cosine"] ?? 1) < 0.05)
        let unknown = try runProcess(replicaExecutable, ["analyze", "embeddings", "--checkpoint", directory.path, "--nearest", "zzqx"])
        expectUserFailure(unknown, naming: "zzqx")
    }

    @Test func twoMPIRanksEqualOneRankAccumulatingTwoMicroSteps() throws {
        let common = ["--steps", "10", "--batch-size", "32", "--eval-windows", "128"]
        let pair = try runProcess(mpirunPath, mpirunArguments(ranks: 2) + [replicaExecutable] + CBOWFixtures.arguments(common), timeout: 180)
        let single = try runProcess(replicaExecutable, CBOWFixtures.arguments(common + ["--grad-accum", "2"]), timeout: 180)
        #expect(pair.status == 0 && single.status == 0, "\(pair.standardError) \(single.standardError)")
        let a = try jsonObject(try #require(pair.lines.last)), b = try jsonObject(try #require(single.lines.last))
        #expect(a["ranks"] as? Int == 2 && b["ranks"] as? Int == 1)
        #expect(pair.lines.filter { $0.hasPrefix("{") }.count == 1, "only rank 0 prints the summary")
        // The same windows and the same summed gradients; only the order of float sums differs.
        let lossA = try #require(a["val_loss"] as? Double), lossB = try #require(b["val_loss"] as? Double)
        #expect(abs(lossA - lossB) < 1e-4 * lossB, "2 ranks \(lossA), 1 rank × 2 micro-steps \(lossB)")
        #expect(abs((a["train_loss"] as? Double ?? 0) - (b["train_loss"] as? Double ?? 1)) < 1e-4 * lossB)
    }

    @Test func aMissingDataFileIsAUserError() throws {
        let path = CBOWFixtures.folder.appendingPathComponent("absent.txt").path
        expectUserFailure(try runProcess(replicaExecutable, CBOWFixtures.arguments(["--data", path])), naming: path)
    }

    @Test func aDataFileThatIsNotUTF8IsAUserError() throws {
        let path = CBOWFixtures.folder.appendingPathComponent("latin1.txt").path
        try Data(Array("a man in a street\nthe caf".utf8) + [0xE9, 0x0A] + Array(String(repeating: "a dog runs\n", count: 50).utf8))
            .write(to: URL(fileURLWithPath: path))
        let result = try runProcess(replicaExecutable, CBOWFixtures.arguments(["--data", path]))
        expectUserFailure(result, naming: path)
        #expect(result.standardError.contains("line 2"), "\(result.standardError)")
    }

    @Test func aTextWithTooFewWordsIsAUserError() throws {
        let path = CBOWFixtures.folder.appendingPathComponent("few.txt").path
        try Data(String(repeating: "a dog runs on the grass\n", count: 12).utf8).write(to: URL(fileURLWithPath: path))
        expectUserFailure(try runProcess(replicaExecutable, CBOWFixtures.arguments(["--data", path])), naming: path)
    }
}
