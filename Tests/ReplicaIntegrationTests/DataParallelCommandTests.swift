import Foundation
import Testing
import ReplicaCore
import _ReplicaTestSupport

/// `replica train charlm` under mpirun: N ranks equal one rank with the global batch, and resuming
/// from a checkpoint continues the run bit for bit.
@Suite(.serialized) struct DataParallelCommandTests {
    /// A tiny GPT on the first 30,000 characters of Tiny Shakespeare, 20 steps.
    static func arguments(batch: Int, steps: Int, directory: URL, extra: [String] = []) throws -> [String] {
        try ["train", "charlm", "--data", textFile.get().path, "--steps", "\(steps)", "--batch-size", "\(batch)",
         "--layers", "2", "--heads", "2", "--embedding", "32", "--block-size", "16", "--warmup", "5", "--lr", "3e-3",
         "--eval-batches", "2", "--eval-interval", "0", "--checkpoint-dir", directory.path, "--json", "--quiet"] + extra
    }

    /// The first 30,000 characters of the embedded Tiny Shakespeare.
    static let textFile = Result { try Fixtures.tinyShakespeareFile(prefix: 30_000) }

    func temporaryDirectory(_ name: String) -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("replica-\(name)-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    func run(ranks: Int, _ arguments: [String], environment: [String: String] = [:]) throws -> ProcessResult {
        let result = ranks == 1
            ? try runProcess(replicaExecutable, arguments, environment: environment, timeout: 300)
            : try runProcess(mpirunPath, mpirunArguments(ranks: ranks) + [replicaExecutable] + arguments,
                             environment: environment, timeout: 300)
        #expect(result.status == 0, "\(arguments): \(result.standardError)")
        return result
    }

    func parameters(_ directory: URL, step: Int) throws -> [String: Tensor] {
        let folder = directory.appendingPathComponent(String(format: "step-%08d", step))
        return try SafeTensors.read(from: folder.appendingPathComponent("model.safetensors")).tensors
    }

    /// ‖a − b‖ / ‖b‖ over every tensor.
    func relativeDifference(_ a: [String: Tensor], _ b: [String: Tensor]) -> Double {
        var difference = 0.0, norm = 0.0
        for (name, x) in b {
            let y = a[name]!
            for i in 0..<x.count {
                difference += Double(y[i] - x[i]) * Double(y[i] - x[i])
                norm += Double(x[i]) * Double(x[i])
            }
        }
        return (difference / norm).squareRoot()
    }

    @Test func twoRanksUnderMPIEqualOneRankWithTheGlobalBatch() throws {
        let one = temporaryDirectory("one"), two = temporaryDirectory("two"), accumulated = temporaryDirectory("accum")
        _ = try run(ranks: 1, Self.arguments(batch: 24, steps: 20, directory: one))
        let result = try run(ranks: 2, Self.arguments(batch: 12, steps: 20, directory: two, extra: ["--bucket-mb", "0.01"]))
        _ = try run(ranks: 1, Self.arguments(batch: 12, steps: 20, directory: accumulated, extra: ["--grad-accum", "2"]))
        let summary = try #require(JSONSerialization.jsonObject(with: Data(result.lines.last!.utf8)) as? [String: Any])
        #expect(summary["ranks"] as? Int == 2)
        let reference = try parameters(one, step: 20)
        #expect(relativeDifference(try parameters(two, step: 20), reference) < 1e-5)
        #expect(relativeDifference(try parameters(accumulated, step: 20), reference) < 1e-5)
    }

    @Test(arguments: [1, 2])
    func resumingAfterACrashContinuesBitForBit(ranks: Int) throws {
        let straight = temporaryDirectory("straight"), crashed = temporaryDirectory("crashed")
        let arguments = { (directory: URL) in try Self.arguments(batch: 8, steps: 40, directory: directory, extra: ["--checkpoint-every", "20"]) }
        _ = try run(ranks: ranks, arguments(straight))
        // Rank 0 dies before step 21, after the checkpoint of step 20.
        let crash = ranks == 1
            ? try runProcess(replicaExecutable, arguments(crashed), environment: ["REPLICA_FAULT": "kill:rank=0:step=21"])
            : try runProcess(mpirunPath, mpirunArguments(ranks: ranks) + [replicaExecutable] + arguments(crashed),
                             environment: ["REPLICA_FAULT": "kill:rank=0:step=21"], timeout: 120)
        #expect(crash.status != 0)
        #expect(FileManager.default.fileExists(atPath: crashed.appendingPathComponent("step-00000020/state.json").path))
        #expect(!FileManager.default.fileExists(atPath: crashed.appendingPathComponent("step-00000040").path))
        _ = try run(ranks: ranks, arguments(crashed) + ["--resume"])
        for file in ["model.safetensors", "optimizer.safetensors"] {
            let a = try Data(contentsOf: straight.appendingPathComponent("step-00000040/\(file)"))
            let b = try Data(contentsOf: crashed.appendingPathComponent("step-00000040/\(file)"))
            #expect(a == b, "\(file) differs after resuming on \(ranks) rank(s)")
        }
    }
}
