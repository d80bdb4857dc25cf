import Foundation
import Testing
import ReplicaCore
import _ReplicaTestSupport

/// `--zero 1` under mpirun: the same run as plain data parallelism, and checkpoints that resume
/// across the switch in both directions.
@Suite(.serialized) struct ZeroCommandTests {
    let runs = DataParallelCommandTests()

    /// Two micro-steps, buckets of 10 KB (many pieces, cutting tensors), and a clip far below
    /// the gradient norm, so clipping scales every step.
    static func arguments(steps: Int, directory: URL, zero: Int, extra: [String] = []) throws -> [String] {
        try DataParallelCommandTests.arguments(batch: 6, steps: steps, directory: directory,
                                               extra: ["--grad-accum", "2", "--clip", "0.05", "--bucket-mb", "0.01", "--zero", "\(zero)"] + extra)
    }

    func tensors(_ directory: URL, step: Int, file: String) throws -> [String: Tensor] {
        let folder = directory.appendingPathComponent(String(format: "step-%08d", step))
        return try SafeTensors.read(from: folder.appendingPathComponent(file)).tensors
    }

    /// Summation order is the only difference (the global norm is summed shard by shard, so the
    /// clipping factor differs in its last bits): 1e-5 global relative L2 after 20 Adam steps,
    /// for the parameters and for the moments, which rank 0 gathered bucket by bucket.
    @Test(arguments: [2, 3]) func zeroStageOneUnderMPIEqualsPlainDataParallelism(ranks: Int) throws {
        let plain = runs.temporaryDirectory("plain"), sharded = runs.temporaryDirectory("zero")
        _ = try runs.run(ranks: ranks, Self.arguments(steps: 20, directory: plain, zero: 0))
        let result = try runs.run(ranks: ranks, Self.arguments(steps: 20, directory: sharded, zero: 1))
        let summary = try #require(JSONSerialization.jsonObject(with: Data(result.lines.last!.utf8)) as? [String: Any])
        #expect(summary["zero"] as? Int == 1)
        for file in ["model.safetensors", "optimizer.safetensors"] {
            let reference = try tensors(plain, step: 20, file: file), candidate = try tensors(sharded, step: 20, file: file)
            #expect(Set(candidate.keys) == Set(reference.keys))
            #expect(runs.relativeDifference(candidate, reference) < 1e-5, "\(file) on \(ranks) ranks")
        }
    }

    /// A checkpoint written with `--zero 1` resumes without it, and one written without it
    /// resumes with it; either way the run ends where the uninterrupted one does.
    @Test(arguments: [(1, 0), (0, 1)]) func checkpointsResumeAcrossTheSwitch(written: Int, resumed: Int) throws {
        let straight = runs.temporaryDirectory("straight"), interrupted = runs.temporaryDirectory("interrupted")
        let extra = ["--checkpoint-every", "10"]
        _ = try runs.run(ranks: 2, Self.arguments(steps: 20, directory: straight, zero: 0, extra: extra))
        // Rank 0 dies before step 11, after the checkpoint of step 10.
        let crash = try runProcess(mpirunPath, mpirunArguments(ranks: 2) + [replicaExecutable]
                                   + Self.arguments(steps: 20, directory: interrupted, zero: written, extra: extra),
                                   environment: ["REPLICA_FAULT": "kill:rank=0:step=11"], timeout: 120)
        #expect(crash.status != 0)
        #expect(FileManager.default.fileExists(atPath: interrupted.appendingPathComponent("step-00000010/state.json").path))
        _ = try runs.run(ranks: 2, Self.arguments(steps: 20, directory: interrupted, zero: resumed, extra: extra + ["--resume"]))
        for file in ["model.safetensors", "optimizer.safetensors"] {
            let difference = runs.relativeDifference(try tensors(interrupted, step: 20, file: file), try tensors(straight, step: 20, file: file))
            #expect(difference < 1e-5, "\(file): written with --zero \(written), resumed with --zero \(resumed)")
        }
    }

    /// A `--zero 1` checkpoint of 2 ranks × 6 (× 2 micro-steps) resumes on 3 ranks × 4 with
    /// `--zero 1` (unequal shards, each rank reading its own pieces of the whole optimizer file)
    /// and on 1 rank × 12 without it: the same global batch of 24, so the run ends within 1e-5 of
    /// the uninterrupted plain 2-rank run (summation order alone differs, as above).
    @Test(arguments: [(3, 4, 1), (1, 12, 0)]) func aShardedCheckpointResumesOnAnotherRankCount(ranks: Int, batch: Int, zero: Int) throws {
        let straight = runs.temporaryDirectory("straight"), interrupted = runs.temporaryDirectory("elastic-zero")
        let every = ["--checkpoint-every", "10"]
        _ = try runs.run(ranks: 2, Self.arguments(steps: 20, directory: straight, zero: 0, extra: every))
        let crash = try runProcess(mpirunPath, mpirunArguments(ranks: 2) + [replicaExecutable]
                                   + Self.arguments(steps: 20, directory: interrupted, zero: 1, extra: every),
                                   environment: ["REPLICA_FAULT": "kill:rank=1:step=11"], timeout: 120)
        #expect(crash.status != 0)
        let resumed = try runs.run(ranks: ranks, Self.arguments(steps: 20, directory: interrupted, zero: zero,
                                                                 extra: every + ["--batch-size", "\(batch)", "--resume"]))
        #expect(resumed.standardError.contains("elastic resume"), "\(resumed.standardError)")
        for file in ["model.safetensors", "optimizer.safetensors"] {
            let difference = runs.relativeDifference(try tensors(interrupted, step: 20, file: file), try tensors(straight, step: 20, file: file))
            #expect(difference < 1e-5, "\(file): resumed on \(ranks) rank(s) × \(batch) with --zero \(zero)")
        }
    }
}
