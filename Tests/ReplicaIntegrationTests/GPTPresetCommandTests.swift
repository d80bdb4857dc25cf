import Foundation
import Testing
import ReplicaCore
import _ReplicaTestSupport

/// `--preset baby|gpt2-small` and the size options of `train charlm` and `bench step`, and the
/// `peak_rss_mb` every summary carries.
@Suite struct GPTPresetCommandTests {
    func summary(_ result: ProcessResult) throws -> [String: Any] {
        #expect(result.status == 0, "\(result.standardError)")
        let line = try #require(result.lines.last)
        return try #require(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not a JSON object: \(line)")
    }

    /// The distinct characters of the embedded Tiny Shakespeare: the charlm vocabulary.
    static let shakespeareCharacters = 65

    /// GPT parameters: token and position tables, 12C² + 2C a block (attention 4C², MLP 8C², two
    /// norm weights), the final norm; no biases, the head tied to the token table.
    static func gptParameters(vocabulary V: Int, width C: Int, block T: Int, layers L: Int) -> Int {
        V * C + T * C + L * (12 * C * C + 2 * C) + C
    }

    @Test func gpt2SmallIsTwelveHeadsOf768AndExplicitOptionsOverrideIt() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("replica-preset-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let metrics = folder.appendingPathComponent("metrics.jsonl")
        // One block of GPT-2 small's width and heads (the preset's 12 layers and block 1024 overridden).
        let result = try runProcess(replicaExecutable, ["train", "charlm", "--preset", "gpt2-small", "--layers", "1", "--block-size", "16",
                                                        "--batch-size", "1", "--steps", "2", "--eval-batches", "1", "--threads", "1",
                                                        "--metrics", metrics.path, "--json", "--quiet"], timeout: 300)
        let summary = try summary(result)
        #expect(summary["preset"] as? String == "gpt2-small")
        #expect(summary["param_count"] as? Int == Self.gptParameters(vocabulary: Self.shakespeareCharacters, width: 768, block: 16, layers: 1))
        // Parameters, gradients and two AdamW moments alone are 16 bytes a parameter.
        let parameters = Double(try #require(summary["param_count"] as? Int))
        let peak = try #require(summary["peak_rss_mb"] as? Double)
        #expect(peak > 16 * parameters / 1_048_576 && peak < 4096, "peak_rss_mb \(peak)")
        let lines = try String(contentsOf: metrics, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 2)
        for line in lines {
            let record = try #require(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let ranks = try #require(record["rank_peak_rss_mb"] as? [Double])
            #expect(ranks.count == 1 && ranks[0] > 0 && record["peak_rss_mb"] as? Double == ranks.max())
        }
    }

    @Test func aRunThatCannotFitIsRefusedWithTheEstimateBeforeAllocating() throws {
        let result = try runProcess(replicaExecutable, ["train", "charlm", "--block-size", "100000", "--threads", "1"], timeout: 60)
        #expect(result.status == 1)
        let errors = result.standardError.split(separator: "\n").filter { $0.hasPrefix("Error:") }
        #expect(errors.count == 1 && errors[0].contains("needs about") && errors[0].contains("activations")
                && errors[0].contains("available") && errors[0].contains("--block-size (100000)"), "\(result.standardError)")
        #expect(!result.standardError.contains("Fatal error"))
    }

    @Test func benchStepTakesThePresetAndTheSizeOptions() throws {
        let summary = try summary(try runProcess(replicaExecutable, ["bench", "step", "--model", "charlm", "--preset", "baby", "--layers", "2",
                                                                     "--batch-size", "2", "--steps", "2", "--warmup-steps", "0",
                                                                     "--threads", "1", "--json", "--progress", "none"], timeout: 120))
        #expect(summary["preset"] as? String == "baby")
        #expect(summary["param_count"] as? Int == Self.gptParameters(vocabulary: Self.shakespeareCharacters, width: 128, block: 64, layers: 2))
        let peak = try #require(summary["peak_rss_mb"] as? Double)
        let memory = try #require(summary["memory_mb"] as? [String: Double])
        let parameters = Double(try #require(summary["param_count"] as? Int)) * 4 / 1_048_576
        #expect(memory["parameters"] == parameters && memory["gradients"] == parameters && memory["optimizer"] == 2 * parameters)
        // The parts add up. (At this size the peak is mostly the process itself, OpenBLAS's buffers and the
        // data, which the estimate does not model; at gpt2-small it is within a few percent: docs/memory.md.)
        let total = try #require(memory["total"])
        let parts = ["parameters", "gradients", "optimizer", "activations", "communication", "runtime"].compactMap { memory[$0] }
        #expect(parts.count == 6 && abs(parts.reduce(0, +) - total) < 1e-6 * total, "\(memory)")
        #expect(peak > 0 && total < 3 * peak, "estimate \(total) MiB, peak \(peak) MiB")
    }
}
