import Foundation
import Testing
@testable import ReplicaCore
import _ReplicaTestSupport

/// The `replica` binary under mpirun: exact collective results, JSON summaries, clear errors.
@Suite(.serialized) struct MPIRunTests {
    func mpirun(_ ranks: Int, _ arguments: [String]) throws -> ProcessResult {
        try runProcess(mpirunPath, mpirunArguments(ranks: ranks) + [replicaExecutable] + arguments, timeout: 120)
    }

    func jsonObject(_ line: String) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }

    @Test(arguments: [2, 3])
    func collectivesGiveExactResultsOnEveryRank(ranks: Int) throws {
        // 2,500 elements in chunks of 1,000: the chunking runs across real ranks.
        let result = try mpirun(ranks, ["selftest", "collectives", "--count", "2500", "--chunk-elements", "1000"])
        #expect(result.status == 0, "\(result.standardError)")
        let reports = try result.lines.filter { $0.hasPrefix("{") }.map(jsonObject)
        #expect(reports.count == ranks)
        let p = Float(ranks)
        for report in reports {
            #expect(report["size"] as? Int == ranks)
            #expect(report["max_chunk_elements"] as? Int == 1000)
            for key in ["sum_errors", "mean_errors", "double_sum_errors", "non_blocking_errors", "broadcast_errors"] {
                #expect(report[key] as? Int == 0, "\(key) on rank \(report["rank"] ?? "?")")
            }
            // Rank r contributes (r+1)(i mod 17 + 1): the sum over p ranks is p(p+1)/2 · (i mod 17 + 1).
            let sums = (report["sum_sample"] as? [Double] ?? []).map { Float($0) }
            #expect(sums == [1, 2, 3, 4].map { p * (p + 1) / 2 * $0 })
            // Rank p−1 broadcasts 3i + 7.
            let broadcast = (report["broadcast_sample"] as? [Double] ?? []).map { Float($0) }
            #expect(broadcast == [7, 10, 13, 16])
            #expect(report["gathered"] as? [Int] == Array(0..<ranks))
        }
        #expect(Set(reports.compactMap { $0["rank"] as? Int }) == Set(0..<ranks))
    }

    @Test func allReduceBenchmarkPrintsTheContractSummary() throws {
        let result = try mpirun(2, ["bench", "allreduce", "--sizes", "4K, 1MiB", "--iters", "3", "--json"])
        #expect(result.status == 0, "\(result.standardError)")
        let summary = try jsonObject(try #require(result.lines.last))
        #expect(summary["task"] as? String == "bench allreduce")
        #expect(summary["ranks"] as? Int == 2)
        let rows = try #require(summary["results"] as? [[String: Any]])
        #expect(rows.map { $0["bytes"] as? Int } == [4096, 1 << 20])
        for row in rows {
            for key in ["seconds", "busbw_gbps", "raw_mpi_busbw_gbps"] {
                #expect(((row[key] as? Double) ?? 0) > 0, "\(key)")
            }
        }
        // Only rank 0 prints: one JSON line.
        #expect(result.lines.filter { $0.hasPrefix("{") }.count == 1)
    }

    @Test func gemmBenchmarkPrintsTheContractSummary() throws {
        let result = try runProcess(replicaExecutable, ["bench", "gemm", "--sizes", "64,33x17x5", "--iters", "2", "--threads", "1", "--json"])
        #expect(result.status == 0, "\(result.standardError)")
        let summary = try jsonObject(try #require(result.lines.last))
        #expect(summary["task"] as? String == "bench gemm")
        let rows = try #require(summary["results"] as? [[String: Any]])
        #expect(rows.map { [$0["m"] as? Int, $0["n"] as? Int, $0["k"] as? Int] } == [[64, 64, 64], [33, 17, 5]])
        #expect(rows.allSatisfy { (($0["gflops"] as? Double) ?? 0) > 0 })
    }

    /// OpenBLAS's Haswell kernels on a Zen 4 (BLASKernelChoice.swift), unless OPENBLAS_CORETYPE names
    /// others: the summary's "blas" names the kernel in use. Sandybridge's run on every x86 CPU with
    /// AVX; an empty OPENBLAS_CORETYPE counts as none, as for OpenBLAS.
    @Test func theKernelIsHaswellOnAZen4UnlessOpenBLASCoretypeNamesAnother() throws {
        func kernel(_ environment: [String: String]) throws -> String? {
            let result = try runProcess(replicaExecutable, ["bench", "gemm", "--sizes", "64", "--iters", "1", "--threads", "1", "--json"],
                                        environment: environment)
            #expect(result.status == 0, "\(result.standardError)")
            return try jsonObject(try #require(result.lines.last))["blas"] as? String
        }
        #expect(try kernel(["OPENBLAS_CORETYPE": "Sandybridge"])?.hasSuffix("(kernel Sandybridge)") == true)
        if CPUDescription.current?.isZen4 == true {
            #expect(try kernel(["OPENBLAS_CORETYPE": ""])?.hasSuffix("(kernel Haswell)") == true)
        }
    }

    static let badInputs: [[String]] = [
        ["bench", "allreduce", "--sizes", "abc"],
        ["bench", "allreduce", "--sizes", "6"],
        ["bench", "allreduce", "--sizes", "1,,2"],
        ["bench", "allreduce", "--sizes", "-4K"],
        ["bench", "allreduce", "--sizes", "4X"],
        ["bench", "gemm", "--threads", "0"],
        ["bench", "gemm", "--sizes", "12x"],
        ["bench", "gemm", "--sizes", "12x3"],
        ["frobnicate"],
        ["train", "gat", "--batch-size", "1000"],        // a global batch above Cora's 140 training nodes
        ["train", "graphmae", "--batch-size", "4"],
        ["bench", "step", "--model", "gat", "--batch-size", "4"],
        ["bench", "step", "--model", "gat", "--preset", "gpt2-small"],
        ["train", "charlm", "--preset", "gpt3"],
        // Memory preflight: 7,000 GiB of attention probabilities, or a batch of 512 × 1024 at GPT-2 small.
        ["train", "charlm", "--block-size", "100000"],
        ["train", "charlm", "--preset", "gpt2-small", "--batch-size", "512"],
        ["bench", "step", "--preset", "gpt2-small", "--batch-size", "512"],
        ["train", "charlm", "--preset", "gpt2-small", "--heads", "7"],
        // The other tasks' preflight (MemoryPreflightCommandTests): the message once, from rank 0.
        ["train", "gat", "--heads", "1000000"],
        ["train", "translate", "--batch-size", "1000000000"],
        ["train", "cbow", "--batch-size", "100000000000"],
        // Folders that cannot be made: refused while parsing, on every rank, not by rank 0 alone.
        ["train", "charlm", "--steps", "2", "--checkpoint-dir", "/etc/hostname/checkpoints"],
        ["train", "charlm", "--steps", "2", "--timeline", "/etc/hostname/t.json"],
    ]

    @Test(arguments: badInputs)
    func badInputGivesOneMessageAndExitOneOnEveryRank(arguments: [String]) throws {
        for ranks in [1, 2] {
            let result = ranks == 1 ? try runProcess(replicaExecutable, arguments) : try mpirun(ranks, arguments)
            #expect(result.status == 1, "\(arguments) on \(ranks) ranks: \(result.standardError)")
            let errorLines = result.standardError.split(separator: "\n").filter { $0.hasPrefix("Error:") }
            #expect(errorLines.count == 1, "\(result.standardError)")
            for marker in ["Fatal error", "Stack dump", "backtrace", "Current stack trace"] {
                #expect(!result.standardError.contains(marker))
            }
        }
    }
}
