import Foundation
import Testing
import ReplicaCore
import _ReplicaTestSupport

/// `--grad-compression fp16|bf16|powersgd` under mpirun (issue 20): 16 bits within the rounding's
/// reach of float32 (GradientCompressionTests derives the bound), every compression resumed bit
/// for bit after a killed rank, named in the summary, and combined with `--zero 1`.
@Suite(.serialized) struct CompressionCommandTests {
    let runs = DataParallelCommandTests()

    func arguments(_ directory: URL, steps: Int, compression: String, extra: [String] = []) throws -> [String] {
        try DataParallelCommandTests.arguments(batch: 6, steps: steps, directory: directory,
                                               extra: ["--grad-compression", compression, "--bucket-mb", "0.01"] + extra)
    }

    @Test(arguments: [("bf16", 3.5e-3), ("fp16", 1e-3)]) func sixteenBitGradientsStayNearFloat32(compression: String, bound: Double) throws {
        let plain = runs.temporaryDirectory("plain"), compressed = runs.temporaryDirectory(compression)
        _ = try runs.run(ranks: 2, arguments(plain, steps: 20, compression: "none"))
        let result = try runs.run(ranks: 2, arguments(compressed, steps: 20, compression: compression))
        let summary = try #require(JSONSerialization.jsonObject(with: Data(result.lines.last!.utf8)) as? [String: Any])
        #expect(summary["grad_compression"] as? String == compression)
        let difference = runs.relativeDifference(try runs.parameters(compressed, step: 20), try runs.parameters(plain, step: 20))
        #expect(difference < bound && difference > 0, "\(compression): relative L2 \(difference)")
    }

    /// PowerSGD from step 2, so that the checkpoint of step 5 holds error feedback and warm starts.
    @Test(arguments: ["bf16", "fp16", "powersgd"]) func aKilledCompressedRunResumesBitForBit(compression: String) throws {
        let straight = runs.temporaryDirectory("\(compression)-straight"), killed = runs.temporaryDirectory("\(compression)-killed")
        let every = ["--checkpoint-every", "5", "--powersgd-start-step", "2"]
        let result = try runs.run(ranks: 2, arguments(straight, steps: 12, compression: compression, extra: every))
        let summary = try #require(JSONSerialization.jsonObject(with: Data(result.lines.last!.utf8)) as? [String: Any])
        #expect(summary["grad_compression"] as? String == compression)
        let crash = try runProcess(mpirunPath, mpirunArguments(ranks: 2) + [replicaExecutable] + arguments(killed, steps: 12, compression: compression, extra: every),
                                   environment: ["REPLICA_FAULT": "kill:rank=1:step=7"], timeout: 120)
        #expect(crash.status == 2, "\(crash.standardError)")
        _ = try runs.run(ranks: 2, arguments(killed, steps: 12, compression: compression, extra: every + ["--resume"]))
        let files = ["model.safetensors", "optimizer.safetensors"] + (compression == "powersgd" ? ["compression.safetensors"] : [])
        for file in files {
            let a = try Data(contentsOf: straight.appendingPathComponent("step-00000012/\(file)"))
            let b = try Data(contentsOf: killed.appendingPathComponent("step-00000012/\(file)"))
            #expect(a == b, "\(file) differs after the kill and resume")
        }
    }

    /// `--zero 1` with bf16 under mpirun (the 16-bit reduce-scatter): within 1e-5 of `--zero 0`
    /// with bf16 (the norm's summation order, GradientCompressionTests), on 2 and 3 ranks.
    @Test(arguments: [2, 3]) func zeroOneWithCompressionEqualsPlainDataParallelismWithIt(ranks: Int) throws {
        let plain = runs.temporaryDirectory("bf16-zero0"), sharded = runs.temporaryDirectory("bf16-zero1")
        _ = try runs.run(ranks: ranks, arguments(plain, steps: 12, compression: "bf16"))
        _ = try runs.run(ranks: ranks, arguments(sharded, steps: 12, compression: "bf16", extra: ["--zero", "1"]))
        let difference = runs.relativeDifference(try runs.parameters(sharded, step: 12), try runs.parameters(plain, step: 12))
        #expect(difference < 1e-5, "\(ranks) ranks: relative L2 \(difference)")
    }
}
