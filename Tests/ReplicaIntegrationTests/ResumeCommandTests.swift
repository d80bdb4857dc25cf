import Foundation
import Testing
import _ReplicaTestSupport

/// Resuming from the command line (issue 18): on another rank count with the same global batch,
/// `--allow-batch-change`, `--auto-resume`, `--steps` changed on resume, the checkpoint folder's
/// lock, and `--overwrite`.
@Suite(.serialized) struct ResumeCommandTests {
    let runs = DataParallelCommandTests()

    static func arguments(batch: Int, steps: Int, directory: URL, extra: [String] = []) throws -> [String] {
        try DataParallelCommandTests.arguments(batch: batch, steps: steps, directory: directory, extra: extra)
    }

    /// The JSON summary (the last line of standard output).
    func summary(_ result: ProcessResult) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data((result.lines.last ?? "").utf8)) as? [String: Any])
    }

    /// 2 ranks × 12 for 20 steps of 40 (rank 1 is killed before step 21, after the checkpoint of
    /// 20), then resumed on 1 rank × 12 × 2 micro-steps and, from a copy, on 3 ranks × 8: both end
    /// within 1e-5 of the uninterrupted 2-rank run (the same 24 sequences each step, summed in
    /// another order; ElasticResumeTests shows that a wrong batch or rate is 1e-3 away or more).
    @Test func aTwoRankRunContinuesOnOneRankAndOnThree() throws {
        let straight = runs.temporaryDirectory("elastic-straight"), interrupted = runs.temporaryDirectory("elastic")
        let every = ["--checkpoint-every", "20"]
        _ = try runs.run(ranks: 2, Self.arguments(batch: 12, steps: 40, directory: straight, extra: every))
        let killed = try runProcess(mpirunPath, mpirunArguments(ranks: 2) + [replicaExecutable]
                                    + Self.arguments(batch: 12, steps: 40, directory: interrupted, extra: every),
                                    environment: ["REPLICA_FAULT": "kill:rank=1:step=21"], timeout: 120)
        #expect(killed.status == 2, "\(killed.standardError)")
        let copy = runs.temporaryDirectory("elastic-copy")
        try FileManager.default.removeItem(at: copy)
        try FileManager.default.copyItem(at: interrupted, to: copy)

        let one = try runs.run(ranks: 1, Self.arguments(batch: 12, steps: 40, directory: interrupted, extra: every + ["--grad-accum", "2", "--resume"]))
        #expect(one.standardError.contains("elastic resume: the checkpoint ran 2 rank(s) × batch 12 × grad-accum 1, this run 1 rank(s) × batch 12 × grad-accum 2; the global batch of 24"),
                "\(one.standardError)")
        let three = try runs.run(ranks: 3, Self.arguments(batch: 8, steps: 40, directory: copy, extra: every + ["--resume"]))
        #expect(three.standardError.contains("elastic resume"), "\(three.standardError)")
        let reference = try runs.parameters(straight, step: 40)
        #expect(runs.relativeDifference(try runs.parameters(interrupted, step: 40), reference) < 1e-5)
        #expect(runs.relativeDifference(try runs.parameters(copy, step: 40), reference) < 1e-5)
    }

    @Test func anotherGlobalBatchIsExitOneNamingBothAndChangesNothing() throws {
        let directory = runs.temporaryDirectory("batch-change")
        _ = try runs.run(ranks: 2, Self.arguments(batch: 12, steps: 4, directory: directory))
        let before = try FaultCommandTests().snapshot(directory)
        let refused = try runProcess(replicaExecutable, Self.arguments(batch: 12, steps: 8, directory: directory, extra: ["--resume"]), timeout: 120)
        #expect(refused.status == 1)
        let errors = refused.standardError.split(separator: "\n").filter { $0.hasPrefix("Error:") }
        #expect(errors.count == 1 && errors[0].contains("global batch is 24 (2 rank(s) × batch 12 × grad-accum 1), this run's 12")
                && errors[0].contains("--allow-batch-change"), "\(refused.standardError)")
        #expect(try FaultCommandTests().snapshot(directory) == before)

        let allowed = try runs.run(ranks: 1, Self.arguments(batch: 12, steps: 8, directory: directory, extra: ["--resume", "--allow-batch-change"]))
        #expect(allowed.standardError.contains("the learning rate is multiplied by 0.5"), "\(allowed.standardError)")
        #expect(try summary(allowed)["steps"] as? Int == 8)
    }

    /// One command line for the first start and every restart; a longer `--steps` extends a
    /// finished run, which trains on to a lower validation loss and says the schedule was recomputed.
    @Test func autoResumeStartsFreshThenContinuesAndALongerRunTrainsOn() throws {
        let directory = runs.temporaryDirectory("auto-resume")
        let first = try runs.run(ranks: 2, Self.arguments(batch: 8, steps: 60, directory: directory, extra: ["--auto-resume"]))
        #expect(!first.standardError.contains("resumed from"), "\(first.standardError)")
        let extended = try runs.run(ranks: 2, Self.arguments(batch: 8, steps: 150, directory: directory, extra: ["--auto-resume"]))
        #expect(extended.standardError.contains("resumed from \(directory.path)/step-00000060 at step 60"), "\(extended.standardError)")
        #expect(extended.standardError.contains("--steps 150 (the checkpoint's run had 60): the learning-rate schedule is recomputed for 150 steps, from step 60 on"),
                "\(extended.standardError)")
        let before = try #require(summary(first)["val_loss"] as? Double), after = try #require(summary(extended)["val_loss"] as? Double)
        #expect(after < before - 0.05, "val loss \(before) after 60 steps, \(after) after 150")
        #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent("step-00000150/model.safetensors").path))
    }

    /// A fresh run on a folder of checkpoints is exit 1 and changes nothing; with `--overwrite`
    /// it deletes them and starts afresh.
    @Test func aFreshRunOnAUsedFolderNeedsOverwrite() throws {
        let directory = runs.temporaryDirectory("overwrite")
        _ = try runs.run(ranks: 1, Self.arguments(batch: 4, steps: 6, directory: directory, extra: ["--checkpoint-every", "3"]))
        let before = try FaultCommandTests().snapshot(directory)
        let refused = try runProcess(replicaExecutable, Self.arguments(batch: 4, steps: 4, directory: directory, extra: ["--seed", "7"]), timeout: 120)
        #expect(refused.status == 1)
        #expect(refused.standardError.contains("already holds checkpoints (the newest step-00000006)"), "\(refused.standardError)")
        #expect(try FaultCommandTests().snapshot(directory) == before)

        let replaced = try runs.run(ranks: 1, Self.arguments(batch: 4, steps: 4, directory: directory, extra: ["--seed", "7", "--overwrite"]))
        #expect(replaced.standardError.contains("--overwrite: deleted 2 checkpoint(s)"), "\(replaced.standardError)")
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasPrefix("step-") }
        #expect(names == ["step-00000004"], "\(names)")
    }

    @Test func keepCheckpointsLeavesTheNewestK() throws {
        let directory = runs.temporaryDirectory("keep")
        _ = try runs.run(ranks: 2, Self.arguments(batch: 4, steps: 10, directory: directory, extra: ["--checkpoint-every", "2", "--keep-checkpoints", "2"]))
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasPrefix("step-") }.sorted()
        #expect(names == ["step-00000008", "step-00000010"], "\(names)")
        let latest = try String(contentsOf: directory.appendingPathComponent("latest"), encoding: .utf8)
        #expect(latest.trimmingCharacters(in: .whitespacesAndNewlines) == "step-00000010")
    }

    /// While a run holds the folder (stalled 20 s before step 3), a second run on it ends at once
    /// with exit 1 naming the holder's host and pid; the first's files are untouched and it ends normally.
    @Test func aSecondRunOnAFolderInUseIsExitOneNamingTheFirst() throws {
        let directory = runs.temporaryDirectory("locked")
        let metrics = directory.appendingPathComponent("metrics.jsonl")
        let arguments = try Self.arguments(batch: 4, steps: 4, directory: directory, extra: ["--checkpoint-every", "1", "--metrics", metrics.path])
        var second: ProcessResult?
        var secondSeconds = 0.0
        var unchanged: Bool?
        let first = try runProcess(replicaExecutable, arguments, environment: ["REPLICA_FAULT": "stall:rank=0:step=3:seconds=20"],
                                   timeout: 120) { pid in
            // Once the checkpoint of step 2 is complete, during the stall.
            let latest = (try? String(contentsOf: directory.appendingPathComponent("latest"), encoding: .utf8)) ?? ""
            guard second == nil, latest.hasPrefix("step-00000002") else { return }
            let before = try? FaultCommandTests().snapshot(directory)
            let started = Date()
            second = try? runProcess(replicaExecutable, Self.arguments(batch: 4, steps: 4, directory: directory, extra: ["--seed", "9", "--overwrite"]),
                                     timeout: 60)
            secondSeconds = Date().timeIntervalSince(started)
            unchanged = before != nil && (try? FaultCommandTests().snapshot(directory)) == before
            #expect(second?.standardError.contains("pid \(pid),") == true, "\(second?.standardError ?? "")")
        }
        #expect(first.status == 0, "\(first.standardError)")
        let refused = try #require(second)
        #expect(refused.status == 1)
        #expect(refused.standardError.contains("the checkpoint folder is in use by another run (host "), "\(refused.standardError)")
        #expect(secondSeconds < 15, "the second run took \(secondSeconds) s to give up")
        #expect(unchanged == true, "the second run changed the folder")
        #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent("step-00000004/model.safetensors").path))
    }
}
