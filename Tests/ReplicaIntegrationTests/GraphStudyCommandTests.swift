import Foundation
import Testing
import _ReplicaTestSupport

@Suite(.serialized) struct GraphStudyCommandTests {
    private func summary(_ result: ProcessResult) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(result.lines.last!.utf8)) as? [String: Any])
    }

    @Test func trainGATWithModelGCNPrintsTheGATSummaryOfAGCN() throws {
        let result = try runProcess(replicaExecutable, ["train", "gat", "--model", "gcn", "--epochs", "2", "--json", "--threads", "1"])
        #expect(result.status == 0, "\(result.standardError)")
        let summary = try summary(result)
        for key in ["task", "ranks", "steps", "seconds", "param_count", "val_accuracy", "test_accuracy", "epoch_ms"] {
            #expect(summary[key] != nil, "missing \(key)")
        }
        #expect(summary["task"] as? String == "gat")
        #expect(summary["model"] as? String == "gcn")
        #expect(summary["steps"] as? Int == 2)
        // 1433 × 16 (no bias, as Kipf's code) + 16 × 7.
        #expect(summary["param_count"] as? Int == 1433 * 16 + 16 * 7)
    }

    @Test func anUnknownModelIsAUserError() throws {
        let result = try runProcess(replicaExecutable, ["train", "gat", "--model", "sage", "--epochs", "1"])
        #expect(result.status == 1)
        // The parser names the value and lists the valid ones.
        #expect(result.standardError.contains("'sage'") && result.standardError.contains("'gat' and 'gcn'"), "\(result.standardError)")
    }

    @Test func theOversmoothingStudyWritesItsTableCSVAndPlot() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("replica-oversmoothing-\(getpid())")
        defer { try? FileManager.default.removeItem(at: folder) }
        // The graph Transformer's N×N attention is slow in a debug build: its layer has its own tests.
        let result = try runProcess(replicaExecutable, ["study", "oversmoothing", "--models", "gcn,gat", "--depths", "2,3",
                                                        "--epochs", "2", "--width", "16", "--residual", "--json", "--threads", "1",
                                                        "--out", folder.path])
        #expect(result.status == 0, "\(result.standardError)")
        let rows = try #require(try summary(result)["rows"] as? [[String: Any]])
        #expect(rows.count == 4)
        for row in rows {
            for key in ["model", "layers", "test_accuracy", "mean_cosine", "dirichlet_energy", "relative_energy"] { #expect(row[key] != nil, "missing \(key)") }
        }
        let csv = try String(contentsOf: folder.appendingPathComponent("oversmoothing-residual.csv"), encoding: .utf8)
        #expect(csv.split(separator: "\n").count == 5)
        let svg = try String(contentsOf: folder.appendingPathComponent("oversmoothing-residual.svg"), encoding: .utf8)
        #expect(svg.hasPrefix("<svg") && svg.contains("polyline"))
    }

    @Test func theRewiringStudyReportsBothModelsAtEveryFraction() throws {
        let result = try runProcess(replicaExecutable, ["study", "rewiring", "--seeds", "1", "--draws", "1", "--epochs", "3",
                                                        "--fractions", "0,0.5", "--json", "--threads", "1"])
        #expect(result.status == 0, "\(result.standardError)")
        let rows = try #require(try summary(result)["rows"] as? [[String: Any]])
        #expect(Set(rows.map { "\($0["model"]!) \($0["p"]!)" }) == ["gat 0.0", "gat 0.5", "gcn 0.0", "gcn 0.5"])
    }

    @Test func badStudyOptionsAreUserErrors() throws {
        let depths = try runProcess(replicaExecutable, ["study", "oversmoothing", "--depths", "1,x"])
        #expect(depths.status == 1 && depths.standardError.contains("--depths"), "\(depths.standardError)")
        let fractions = try runProcess(replicaExecutable, ["study", "rewiring", "--fractions", "0,2"])
        #expect(fractions.status == 1 && fractions.standardError.contains("--fractions"), "\(fractions.standardError)")
    }
}
