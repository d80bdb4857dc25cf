import Foundation
import Testing
import _ReplicaTestSupport

@Suite(.serialized) struct GraphMAECommandTests {
    @Test(arguments: [1, 2])
    func trainingPrintsTheGraphMAESummary(ranks: Int) throws {
        let arguments = ["train", "graphmae", "--epochs", "2", "--probe-epochs", "5", "--json", "--threads", "1"]
        let result = ranks == 1
            ? try runProcess(replicaExecutable, arguments)
            : try runProcess(mpirunPath, mpirunArguments(ranks: ranks) + [replicaExecutable] + arguments)
        #expect(result.status == 0, "\(result.standardError)")
        let summary = try #require(JSONSerialization.jsonObject(with: Data(result.lines.last!.utf8)) as? [String: Any])
        for key in ["task", "ranks", "steps", "seconds", "param_count", "test_accuracy", "val_accuracy", "epoch_ms"] {
            #expect(summary[key] != nil, "missing \(key)")
        }
        #expect(summary["task"] as? String == "graphmae")
        #expect(summary["ranks"] as? Int == ranks)
        #expect(summary["steps"] as? Int == 2)
        #expect(summary["param_count"] as? Int == 2_000_486)
        let accuracy = try #require(summary["test_accuracy"] as? Double)
        #expect(accuracy > 0 && accuracy <= 1)
        // Only rank 0 prints: one JSON line.
        #expect(result.lines.filter { $0.hasPrefix("{") }.count == 1)
    }

    @Test func hiddenMustDivideIntoHeads() throws {
        let result = try runProcess(replicaExecutable, ["train", "graphmae", "--hidden", "10", "--heads", "4", "--epochs", "1"])
        #expect(result.status == 1)
        #expect(result.standardError.contains("--hidden"), "\(result.standardError)")
    }
}
