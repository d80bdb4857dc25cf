import Foundation
import Testing
import _ReplicaTestSupport

/// Faults under mpirun end the whole job quickly, with exit status 2 and a message naming the
/// rank (issue 9): a killed rank, a stalled rank past `--timeout`, ranks calling different
/// collectives. Nothing hangs: every run here has a hard time limit.
@Suite(.serialized) struct FaultCommandTests {
    func temporaryDirectory(_ name: String) -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("replica-\(name)-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Runs `arguments` on 2 ranks; returns the result and the seconds it took.
    func runTwoRanks(_ arguments: [String], fault: String? = nil, limit: TimeInterval = 120) throws -> (ProcessResult, Double) {
        let started = Date()
        let result = try runProcess(mpirunPath, mpirunArguments(ranks: 2) + [replicaExecutable] + arguments,
                                    environment: fault.map { ["REPLICA_FAULT": $0] } ?? [:], timeout: limit)
        return (result, Date().timeIntervalSince(started))
    }

    @Test func aKilledRankEndsTheJobWithStatusTwoAndResumeFinishesTheSameRun() throws {
        let straight = temporaryDirectory("straight"), faulted = temporaryDirectory("faulted")
        let arguments = { (directory: URL) in
            try DataParallelCommandTests.arguments(batch: 4, steps: 12, directory: directory, extra: ["--checkpoint-every", "5"])
        }
        let (reference, _) = try runTwoRanks(arguments(straight))
        #expect(reference.status == 0, "\(reference.standardError)")

        let (killed, seconds) = try runTwoRanks(arguments(faulted), fault: "kill:rank=1:step=7")
        #expect(killed.status == 2, "\(killed.standardError)")
        #expect(killed.standardError.contains("rank 1 died: killed by signal 9"))
        #expect(seconds < 30)
        #expect(FileManager.default.fileExists(atPath: faulted.appendingPathComponent("step-00000005/model.safetensors").path))

        let (resumed, _) = try runTwoRanks(arguments(faulted) + ["--resume"])
        #expect(resumed.status == 0, "\(resumed.standardError)")
        for file in ["model.safetensors", "optimizer.safetensors"] {
            let a = try Data(contentsOf: straight.appendingPathComponent("step-00000012/\(file)"))
            let b = try Data(contentsOf: faulted.appendingPathComponent("step-00000012/\(file)"))
            #expect(a == b, "\(file) differs after the kill and resume")
        }
    }

    @Test func aStalledRankIsReportedByNameWithinTheTimeout() throws {
        let directory = temporaryDirectory("stall")
        let arguments = try DataParallelCommandTests.arguments(batch: 4, steps: 10, directory: directory) + ["--timeout", "5"]
        let (result, seconds) = try runTwoRanks(arguments, fault: "stall:rank=1:step=3:seconds=60", limit: 60)
        #expect(result.status == 2, "\(result.standardError)")
        #expect(seconds < 20)
        #expect(result.standardError.contains("collective timeout"))
        #expect(result.standardError.contains("rank 1: computing, not in a collective"))
    }

    @Test func ranksCallingDifferentCollectivesAreNamedNotHung() throws {
        let (result, seconds) = try runTwoRanks(["selftest", "mismatch"], limit: 60)
        #expect(result.status == 2, "\(result.standardError)")
        #expect(seconds < 20)
        #expect(result.standardError.contains("collective mismatch"))
        #expect(result.standardError.contains("broadcast"))
    }

    @Test func debugCollectivesNamesBothCallsAndExitsCleanly() throws {
        let (result, seconds) = try runTwoRanks(["selftest", "mismatch", "--debug-collectives"], limit: 60)
        #expect(result.status == 2, "\(result.standardError)")
        #expect(seconds < 20)
        #expect(result.standardError.contains("rank 0: #1 all-reduce (double) of 16"))
        #expect(result.standardError.contains("rank 1: #1 broadcast (bytes) of 64"))
    }

    /// Every file of `directory` and its contents, but the lock file, which names whichever run
    /// opened the folder last (CheckpointFolder).
    func snapshot(_ directory: URL) throws -> [String: Data] {
        var files: [String: Data] = [:]
        let enumerator = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: [.isRegularFileKey])
        while let url = enumerator?.nextObject() as? URL {
            if url.lastPathComponent != ".lock", (try url.resourceValues(forKeys: [.isRegularFileKey])).isRegularFile == true {
                files[url.path] = try Data(contentsOf: url)
            }
        }
        return files
    }

    @Test(arguments: ["state.json", "model.safetensors", "optimizer.safetensors"])
    func resumingFromACorruptCheckpointIsExitOneAndChangesNothing(file: String) throws {
        let directory = temporaryDirectory("corrupt")
        let arguments = try DataParallelCommandTests.arguments(batch: 4, steps: 2, directory: directory)
        let first = try runProcess(replicaExecutable, arguments, timeout: 120)
        #expect(first.status == 0, "\(first.standardError)")
        let damaged = directory.appendingPathComponent("step-00000002/\(file)")
        let bytes = try Data(contentsOf: damaged)
        try bytes.prefix(bytes.count / 2).write(to: damaged)   // a short file: truncated JSON or tensors
        let before = try snapshot(directory)
        let resumed = try runProcess(replicaExecutable, DataParallelCommandTests.arguments(batch: 4, steps: 4, directory: directory) + ["--resume"],
                                     timeout: 120)
        #expect(resumed.status == 1, "\(resumed.standardError)")
        let errors = resumed.standardError.split(separator: "\n").filter { $0.hasPrefix("Error:") }
        #expect(errors.count == 1 && errors[0].contains(damaged.path), "\(resumed.standardError)")
        #expect(try snapshot(directory) == before, "a refused resume changed the checkpoint directory")
    }
}
