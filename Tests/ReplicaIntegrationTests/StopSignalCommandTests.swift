import Foundation
import Synchronization
import Testing
import _ReplicaTestSupport

/// Signals under mpirun (issue 18): SIGUSR1 to one rank alone, or SIGTERM to the launch script
/// (which passes it to mpirun as SIGUSR1), stops every rank after the same step; rank 0 writes the
/// checkpoint of that step; every process exits with status 3; `--resume` then ends where an
/// uninterrupted run does, bit for bit. SIGTERM to mpirun itself: Open MPI ends the job, the
/// ranks get SIGTERM a second later and stop cleanly if they can within another, and mpirun
/// returns 1 whatever they return (pinned here, documented in docs/robustness.md).
///
/// The moment is pinned without racing the run: rank 0 stalls 4 s before step 30
/// (`REPLICA_FAULT=stall`, which changes no number), the signal is sent once the metrics file
/// shows step 29, so every rank stops after step 30.
@Suite(.serialized) struct StopSignalCommandTests {
    func arguments(_ directory: URL, steps: Int) throws -> [String] {
        try DataParallelCommandTests.arguments(batch: 4, steps: steps, directory: directory,
                                               extra: ["--checkpoint-every", "1000", "--metrics", directory.appendingPathComponent("metrics.jsonl").path])
    }

    func temporaryDirectory(_ name: String) -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("replica-\(name)-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Steps the metrics file of `directory` has recorded so far.
    func recordedSteps(_ directory: URL) -> Int {
        guard let text = try? String(contentsOf: directory.appendingPathComponent("metrics.jsonl"), encoding: .utf8) else { return 0 }
        return text.split(separator: "\n").count
    }

    /// Runs `command` (mpirun or the launch script and its arguments) on `directory`; once 29 steps
    /// are recorded, `signal(pid)` is called once. The result and the seconds from the signal to the end.
    func runAndSignal(_ command: [String], _ directory: URL, fault: String?, signal: @escaping (pid_t) -> Void)
        throws -> (ProcessResult, Double) {
        var signalled: Date?
        var environment = ["BINARY": replicaExecutable]
        if let fault { environment["REPLICA_FAULT"] = fault }
        let result = try runProcess(command[0], Array(command.dropFirst()), environment: environment, timeout: 120) { pid in
            if signalled == nil && recordedSteps(directory) >= 29 {
                signal(pid)
                signalled = Date()
            }
        }
        return (result, signalled.map { Date().timeIntervalSince($0) } ?? .infinity)
    }

    func mpirun(_ directory: URL, steps: Int) throws -> [String] {
        [mpirunPath] + mpirunArguments(ranks: 2) + [replicaExecutable] + (try arguments(directory, steps: steps))
    }

    /// The final checkpoint of `directory` after `--resume` equals the uninterrupted reference's.
    func expectResumeEndsBitForBit(_ directory: URL, steps: Int) throws {
        let resumed = try runProcess(mpirun(directory, steps: steps)[0], Array(mpirun(directory, steps: steps).dropFirst()) + ["--resume"],
                                     timeout: 120)
        #expect(resumed.status == 0, "\(resumed.standardError)")
        let reference = try Self.reference(steps: steps)
        let final = "step-\(String(format: "%08d", steps))"
        for file in ["model.safetensors", "optimizer.safetensors"] {
            let a = try Data(contentsOf: reference.appendingPathComponent("\(final)/\(file)"))
            let b = try Data(contentsOf: directory.appendingPathComponent("\(final)/\(file)"))
            #expect(a == b, "\(file) differs after the stop and resume")
        }
    }

    func expectStoppedAtStep30(_ directory: URL, _ result: ProcessResult, _ seconds: Double) throws {
        #expect(result.status == 3, "exit status \(result.status): \(result.standardError)")
        #expect(seconds < 20, "the job took \(seconds) s to end after the signal")
        #expect(result.standardError.contains("stopped on request"), "\(result.standardError)")
        let latest = try String(contentsOf: directory.appendingPathComponent("latest"), encoding: .utf8)
        #expect(latest.trimmingCharacters(in: .whitespacesAndNewlines) == "step-00000030")
        #expect(result.lines.last?.contains("\"stopped\"") == true, "the summary says it stopped: \(result.standardOutput)")
    }

    /// The uninterrupted run of `steps`, made once per length.
    static func reference(steps: Int) throws -> URL {
        try references.withLock { made in
            if let url = made[steps] { return url }
            let url = FileManager.default.temporaryDirectory.appendingPathComponent("replica-stop-reference-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
            let command = try StopSignalCommandTests().mpirun(url, steps: steps)
            let result = try runProcess(command[0], Array(command.dropFirst()), timeout: 120)
            guard result.status == 0 else { throw ReferenceRunFailed(message: result.standardError) }
            made[steps] = url
            return url
        }
    }
    static let references = Mutex<[Int: URL]>([:])

    static let stall = "stall:rank=0:step=30:seconds=4"

    @Test func sigusr1ToOneRankAloneStopsEveryRank() throws {
        let directory = temporaryDirectory("sigusr1")
        let (result, seconds) = try runAndSignal(mpirun(directory, steps: 60), directory, fault: Self.stall) { mpirun in
            if let rank1 = rankProcess(1, under: mpirun) { kill(rank1, SIGUSR1) }
        }
        try expectStoppedAtStep30(directory, result, seconds)
        try expectResumeEndsBitForBit(directory, steps: 60)
    }

    @Test func sigtermToTheLaunchScriptStopsEveryRankWithExitThree() throws {
        let directory = temporaryDirectory("sigterm-script")
        let script = repositoryRoot.appendingPathComponent("launch/local.sh").path
        let command = ["/bin/bash", script, "2"] + (try arguments(directory, steps: 60))
        let (result, seconds) = try runAndSignal(command, directory, fault: Self.stall) { kill($0, SIGTERM) }
        try expectStoppedAtStep30(directory, result, seconds)
        try expectResumeEndsBitForBit(directory, steps: 60)
    }

    @Test func sigtermToMpirunItselfStopsTheRanksCleanlyButMpirunReturnsOne() throws {
        // No stall: Open MPI's mpirun gives the ranks SIGTERM 1 s after its own and SIGKILL 1 s
        // later, so the steps must be short; 300 of them outlast that second.
        let directory = temporaryDirectory("sigterm-mpirun")
        let (result, seconds) = try runAndSignal(mpirun(directory, steps: 300), directory, fault: nil) { kill($0, SIGTERM) }
        #expect(result.status == 1, "Open MPI's mpirun returns 1 when it was signalled: \(result.status)")
        #expect(seconds < 20)
        let latest = try #require(try? String(contentsOf: directory.appendingPathComponent("latest"), encoding: .utf8),
                                  "the ranks wrote a checkpoint: \(result.standardError)")
        let step = Int(latest.trimmingCharacters(in: .whitespacesAndNewlines).dropFirst(5)) ?? 0
        #expect((30..<300).contains(step), "checkpoint of step \(step)")
        try expectResumeEndsBitForBit(directory, steps: 300)
    }
}

/// The process mpirun started for `rank` (its supervisor, which passes signals to the worker).
func rankProcess(_ rank: Int, under parent: pid_t) -> pid_t? {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return nil }
    for entry in entries {
        guard let pid = pid_t(entry),
              let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { continue }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 2, pid_t(fields[1]) == parent,
              let environment = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { continue }
        let variables = environment.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        if variables.contains("OMPI_COMM_WORLD_RANK=\(rank)") { return pid }
    }
    return nil
}

struct ReferenceRunFailed: Error, CustomStringConvertible {
    let message: String
    var description: String { "the uninterrupted reference run failed: \(message)" }
}
