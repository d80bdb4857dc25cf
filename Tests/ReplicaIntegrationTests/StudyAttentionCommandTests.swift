import Foundation
import Testing
import _ReplicaTestSupport

/// `replica study attention-scaling` and `replica study temperature` with tiny settings.
@Suite struct StudyAttentionCommandTests {
    func jsonObject(_ line: String) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not a JSON object: \(line)")
    }

    func finite(_ value: Any?) -> Bool { (value as? Double).map { $0.isFinite } ?? false }

    @Test func attentionScalingPrintsTablesWritesFilesAndEndsWithJSON() throws {
        let out = CharLMFixtures.folder.appendingPathComponent("attention-study")
        let result = try runProcess(replicaExecutable, [
            "study", "attention-scaling", "--head-sizes", "8,64", "--length", "16", "--random-heads", "2",
            "--curve-head-sizes", "8", "--curve-steps", "4", "--eval-interval", "2", "--eval-batches", "2",
            "--layers", "1", "--embedding", "16", "--data", try CharLMFixtures.textFile.get(), "--out", out.path,
            "--threads", "1", "--json",
        ], timeout: 300)
        #expect(result.status == 0, "\(result.standardError)")
        let summary = try jsonObject(try #require(result.lines.last))
        #expect(summary["task"] as? String == "study attention-scaling")
        let random = try #require(summary["random"] as? [[String: Any]])
        #expect(random.count == 4)
        #expect(Set(random.compactMap { $0["d_k"] as? Int }) == [8, 64])
        for row in random {
            for key in ["entropy", "entropy_fraction", "max_weight", "score_std", "q_grad_norm", "k_grad_norm"] {
                #expect(finite(row[key]), "\(key): \(row)")
            }
            #expect((0...1.0001).contains(row["entropy_fraction"] as? Double ?? -1))
        }
        // The curves' two models give the trained rows: 2 models × with/without, 1 layer each.
        let trained = try #require(summary["trained"] as? [[String: Any]])
        #expect(trained.count == 4)
        #expect(trained.allSatisfy { ($0["per_layer"] as? [Any])?.count == 1 && $0["d_k"] as? Int == 8 })
        let curves = try #require(summary["curves"] as? [[String: Any]])
        #expect(curves.count == 2)
        for curve in curves {
            let points = try #require(curve["val_loss"] as? [[String: Any]])
            #expect(points.compactMap { $0["step"] as? Int } == [0, 2, 4])
            #expect(points.allSatisfy { finite($0["loss"]) })
        }
        for file in ["attention-scaling.csv", "attention-scaling-curves.csv", "attention-scaling.svg"] {
            let path = out.appendingPathComponent(file).path
            #expect(FileManager.default.fileExists(atPath: path), "\(file) missing")
        }
        let svg = try String(contentsOf: out.appendingPathComponent("attention-scaling.svg"), encoding: .utf8)
        #expect(svg.hasPrefix("<svg") && svg.contains("polyline"))
        #expect(result.standardError.contains("| d_k | 1/√d_k |"), "the table goes to stderr under --json")
    }

    @Test func temperatureReportsEveryTemperatureAsJSON() throws {
        let result = try runProcess(replicaExecutable, [
            "study", "temperature", "--checkpoint", try CharLMFixtures.checkpoint.path, "--temperatures", "0.5,1.5",
            "--samples", "2", "--tokens", "60", "--data", try CharLMFixtures.textFile.get(), "--threads", "1", "--json",
        ], timeout: 120)
        #expect(result.status == 0, "\(result.standardError)")
        let summary = try jsonObject(try #require(result.lines.last))
        #expect(summary["task"] as? String == "study temperature")
        #expect(summary["distinct_unit"] as? String == "words")
        let rows = try #require(summary["rows"] as? [[String: Any]])
        #expect(rows.compactMap { $0["temperature"] as? Double } == [0.5, 1.5])
        for row in rows {
            #expect(finite(row["entropy"]) && (row["entropy"] as! Double) > 0)
            for key in ["distinct_1", "distinct_2", "distinct_3", "known_word_fraction"] {
                #expect((0...1.0).contains(row[key] as? Double ?? -1), "\(key): \(row)")
            }
            #expect(row["sample"] is String)
        }
    }

    @Test func temperatureRejectsANonPositiveTemperature() throws {
        let result = try runProcess(replicaExecutable, [
            "study", "temperature", "--checkpoint", try CharLMFixtures.checkpoint.path, "--temperatures", "0.5,0",
        ], timeout: 60)
        #expect(result.status == 1, "\(result.standardError)")
        #expect(result.standardError.contains("--temperatures"), "\(result.standardError)")
        #expect(result.standardOutput.isEmpty)
    }
}
