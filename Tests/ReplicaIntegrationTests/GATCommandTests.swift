import Foundation
import Testing
import _ReplicaTestSupport

@Suite(.serialized) struct GATCommandTests {
    @Test(arguments: [1, 2])
    func trainingPrintsTheGATSummary(ranks: Int) throws {
        let arguments = ["train", "gat", "--epochs", "3", "--json", "--threads", "1"] + (ranks == 2 ? ["--fanout", "10,10"] : [])
        let result = ranks == 1
            ? try runProcess(replicaExecutable, arguments)
            : try runProcess(mpirunPath, mpirunArguments(ranks: ranks) + [replicaExecutable] + arguments)
        #expect(result.status == 0, "\(result.standardError)")
        let summary = try #require(JSONSerialization.jsonObject(with: Data(result.lines.last!.utf8)) as? [String: Any])
        for key in ["task", "ranks", "steps", "seconds", "param_count", "val_accuracy", "test_accuracy", "epoch_ms"] {
            #expect(summary[key] != nil, "missing \(key)")
        }
        #expect(summary["task"] as? String == "gat")
        #expect(summary["ranks"] as? Int == ranks)
    }

    @Test func aMissingDataFolderIsAUserError() throws {
        let result = try runProcess(replicaExecutable, ["train", "gat", "--data", "/nonexistent/graph", "--epochs", "1"])
        #expect(result.status == 1)
        let errors = result.standardError.split(separator: "\n").filter { $0.hasPrefix("Error:") }
        #expect(errors.count == 1 && errors[0].contains("/nonexistent/graph"), "\(result.standardError)")
    }

    @Test func aBadAugmentationIsAUserError() throws {
        let result = try runProcess(replicaExecutable, ["train", "gat", "--augment", "feature-mask=2", "--epochs", "1"])
        #expect(result.status == 1)
        #expect(result.standardError.contains("--augment"))
    }
}
