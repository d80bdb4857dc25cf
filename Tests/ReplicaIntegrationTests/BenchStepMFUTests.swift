import Foundation
import Testing
import _ReplicaTestSupport

/// `bench step`'s model FLOPs utilisation: `mfu`, `flops_per_step` and the start-up `sgemm_gflops`;
/// `tokens_per_cpu_s` of the text models.
@Suite struct BenchStepMFUTests {
    func summary(_ arguments: [String]) throws -> [String: Any] {
        let result = try runProcess(replicaExecutable, ["bench", "step"] + arguments + ["--threads", "1", "--json", "--progress", "none"],
                                    timeout: 300)
        #expect(result.status == 0, "\(result.standardError)")
        let line = try #require(result.lines.last)
        return try #require(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not a JSON object: \(line)")
    }

    @Test func charlmReportsTheFLOPsOfItsShapesOverTheMeasuredSgemmRate() throws {
        let summary = try summary(["--model", "charlm", "--layers", "1", "--heads", "2", "--embedding", "32", "--block-size", "16",
                                   "--batch-size", "2", "--steps", "3", "--warmup-steps", "1"])
        // B 2, T 16, N 32 tokens, C 32, V 65 (Tiny Shakespeare's characters), 1 block:
        // 3 × (24·N·C² + 4·B·T²·C + 2·N·C·V), backward twice forward.
        let (B, T, C, V) = (2.0, 16.0, 32.0, 65.0)
        let N = B * T
        #expect(summary["flops_per_step"] as? Double == 3 * (24 * N * C * C + 4 * B * T * T * C + 2 * N * C * V))
        let sgemm = try #require(summary["sgemm_gflops"] as? Double)
        let mfu = try #require(summary["mfu"] as? Double)
        #expect(sgemm > 0 && sgemm < 10_000, "sgemm_gflops \(sgemm)")
        #expect(mfu > 0 && mfu < 1.5, "mfu \(mfu)")
        // The summary's own figures give it back: FLOPs / seconds per step / (rate × threads).
        let flops = try #require(summary["flops_per_step"] as? Double), ms = try #require(summary["ms_per_step"] as? Double)
        #expect(abs(flops / (ms / 1000) / (sgemm * 1e9 * 1) / mfu - 1) < 1e-9)
    }

    @Test func translateAndMLMCountTheirPaddedBatchesAndGATHasNoMFU() throws {
        for model in ["translate", "mlm"] {
            let summary = try summary(["--model", model, "--batch-size", model == "mlm" ? "8" : "100", "--steps", "1", "--warmup-steps", "0"])
            let mfu = try #require(summary["mfu"] as? Double, "\(model)")
            #expect(mfu > 0 && mfu < 1.5, "\(model): mfu \(mfu)")
            #expect((summary["flops_per_step"] as? Double ?? 0) > 0 && (summary["sgemm_gflops"] as? Double ?? 0) > 0)
        }
        // GAT's attention and input projection are sparse, not sgemm: the rate, but no utilisation.
        let gat = try summary(["--model", "gat", "--steps", "1", "--warmup-steps", "0"])
        #expect((gat["sgemm_gflops"] as? Double ?? 0) > 0)
        #expect(gat["mfu"] == nil && gat["flops_per_step"] == nil)
    }

    /// The text models report tokens a second of wall time and of CPU time: one thread runs the
    /// step, so the two agree within the process's other work (the CPU clock counts a bit more).
    @Test func mlmAndCharlmReportTokensPerCPUSecond() throws {
        for arguments in [["--model", "mlm", "--batch-size", "8"], ["--model", "charlm", "--layers", "1", "--embedding", "32", "--batch-size", "2"]] {
            let summary = try summary(arguments + ["--steps", "3", "--warmup-steps", "1"])
            #expect(summary["model"] as? String == arguments[1])
            let wall = try #require(summary["tokens_per_s"] as? Double), cpu = try #require(summary["tokens_per_cpu_s"] as? Double)
            #expect(wall > 0 && cpu > 0 && cpu < wall * 3 && wall < cpu * 3, "\(arguments[1]): \(wall) tokens/s, \(cpu) tokens/CPU-s")
        }
    }
}
