import Foundation
import Testing
import _ReplicaTestSupport

/// `launch/slurm.sbatch` under a real Slurm (issue 19): `cluster/slurm-up.sh` starts Debian's
/// munged, slurmctld and slurmd from a state folder of the test's own, a 2-rank charlm job runs
/// to its JSON summary, a second one gets `scancel --signal=USR1 --batch` mid-run (what Slurm does
/// before a time limit), stops with a checkpoint, requeues itself once and finishes with the
/// parameters and optimizer state of the uninterrupted one, bit for bit; `cluster/slurm-down.sh`
/// then leaves none of its daemons running.
/// A local Slurm of the test's own (`cluster/slurm-up.sh`): its own state folder and ports, so
/// that a local Slurm of the developer's (cluster/.slurm on 6817/6818), or another test's, is not
/// disturbed; every client call names its slurm.conf.
struct LocalSlurm {
    static let programs = ["/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/sbin/munged", "/usr/bin/sbatch", "/usr/bin/scontrol"]
    /// Root (the daemons run as root) and Debian's Slurm and munge installed (launch/test.sh
    /// installs them when it runs as root).
    static let available = getuid() == 0 && programs.allSatisfy { FileManager.default.isExecutableFile(atPath: $0) }
    static let skipReason: Comment = "skipped: needs root and Debian's Slurm and munge (apt-get install slurmctld slurmd slurm-client munge)"

    let state = FileManager.default.temporaryDirectory.appendingPathComponent("replica-slurm-\(UUID().uuidString)")
    let work = FileManager.default.temporaryDirectory.appendingPathComponent("replica-slurm-jobs-\(UUID().uuidString)")
    let port: Int

    var environment: [String: String] {
        ["SLURM_STATE": state.path, "SLURMCTLD_PORT": "\(port)", "SLURMD_PORT": "\(port + 1)",
         "SLURM_CONF": state.appendingPathComponent("slurm.conf").path,
         "BINARY": replicaExecutable, "REPLICA_HOME": repositoryRoot.path]
    }

    func run(_ program: String, _ arguments: [String], extra: [String: String] = [:], timeout: TimeInterval = 120) throws -> ProcessResult {
        try runProcess(program, arguments, environment: environment.merging(extra) { $1 }, timeout: timeout)
    }

    func script(_ path: String, _ arguments: [String] = []) throws -> ProcessResult {
        try run("/bin/bash", [repositoryRoot.appendingPathComponent(path).path] + arguments)
    }

    /// Starts it (`slurm-up.sh ARGUMENTS`); returns the daemons' pids.
    func up(_ arguments: [String] = []) throws -> [Int32] {
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        let up = try script("cluster/slurm-up.sh", arguments)
        try #require(up.status == 0, "cluster/slurm-up.sh: \(up.standardOutput) \(up.standardError)")
        let run = state.appendingPathComponent("run")
        return try FileManager.default.contentsOfDirectory(atPath: run.path).filter { $0.hasSuffix(".pid") }
            .compactMap { Int32((try String(contentsOf: run.appendingPathComponent($0), encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// Stops it (`slurm-down.sh`) and checks that none of `pids` runs and nothing is left.
    func down(pids: [Int32]) {
        let down = try? script("cluster/slurm-down.sh")
        #expect(down?.status == 0, "\(down?.standardError ?? "")")
        for pid in pids {
            let state = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8))?.split(separator: " ").dropFirst(2).first
            #expect(state == nil || state == "Z", "daemon \(pid) still runs after slurm-down.sh")
        }
        #expect(!FileManager.default.fileExists(atPath: state.path))
        try? FileManager.default.removeItem(at: work)
    }

    /// JobState and Restarts of job `id`.
    func job(_ id: String) throws -> (state: String, restarts: Int) {
        let shown = try run("/usr/bin/scontrol", ["show", "job", id]).standardOutput
        let fields = shown.split(whereSeparator: \.isWhitespace)
        func value(_ key: String) -> String? { fields.first { $0.hasPrefix(key + "=") }.map { String($0.dropFirst(key.count + 1)) } }
        return (value("JobState") ?? "?", value("Restarts").flatMap { Int($0) } ?? -1)
    }

    /// `sbatch OPTIONS launch/slurm.sbatch ARGUMENTS`, its output in `work`/replica-JOB.out.
    func sbatch(_ options: [String], _ arguments: [String], environment: [String: String] = [:]) throws -> ProcessResult {
        try run("/usr/bin/sbatch", ["--chdir", work.path, "--output", work.appendingPathComponent("replica-%j.out").path] + options
                + [repositoryRoot.appendingPathComponent("launch/slurm.sbatch").path] + arguments, extra: environment, timeout: 300)
    }

    /// The job's output and the JSON summary on its last line.
    func output(ofJob result: ProcessResult) throws -> (text: String, summary: [String: Any]) {
        let id = result.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        let text = try String(contentsOf: work.appendingPathComponent("replica-\(id).out"), encoding: .utf8)
        let last = text.split(separator: "\n").last.map(String.init) ?? ""
        let summary = try #require((try? JSONSerialization.jsonObject(with: Data(last.utf8))) as? [String: Any], "\(text)")
        return (text, summary)
    }

    /// Polls `condition` every 0.2 s for at most `seconds`.
    func wait(seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return true }
            Thread.sleep(forTimeInterval: 0.2)
        }
        return try condition()
    }
}

@Suite(.serialized) struct SlurmTests {
    let slurm = LocalSlurm(port: 16817)
    var work: URL { slurm.work }

    func arguments(_ directory: URL) throws -> [String] {
        try DataParallelCommandTests.arguments(batch: 4, steps: 200, directory: directory,
                                               extra: ["--checkpoint-every", "1000", "--metrics", directory.appendingPathComponent("metrics.jsonl").path])
    }

    @Test(.enabled(if: LocalSlurm.available, LocalSlurm.skipReason))
    func aJobRunsAndAPreemptedOneRequeuesItselfAndFinishesBitForBit() throws {
        let pids = try slurm.up()
        defer { slurm.down(pids: pids) }
        #expect(pids.count == 3, "munged, slurmctld and one slurmd")

        // Uninterrupted: sbatch --wait returns the job's status; its output ends with the summary.
        let straight = work.appendingPathComponent("straight")
        let first = try slurm.sbatch(["--wait", "--parsable", "--nodes=1", "--ntasks-per-node=2"], arguments(straight))
        #expect(first.status == 0, "\(first.standardError)")
        let summary = try slurm.output(ofJob: first).summary
        #expect(summary["ranks"] as? Int == 2 && summary["steps"] as? Int == 200, "\(summary)")

        // Preempted: rank 0 stalls 5 s before step 30 (changing no number) so that the signal,
        // sent once 29 steps are logged, lands in step 30.
        let preempted = work.appendingPathComponent("preempted")
        let submitted = try slurm.sbatch(["--parsable", "--nodes=1", "--ntasks-per-node=2"], arguments(preempted), environment: ["REPLICA_FAULT": "stall:rank=0:step=30:seconds=5"])
        let id = submitted.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        try #require(submitted.status == 0 && !id.isEmpty, "\(submitted.standardError)")
        let metrics = preempted.appendingPathComponent("metrics.jsonl")
        #expect(slurm.wait(seconds: 120) { ((try? String(contentsOf: metrics, encoding: .utf8)) ?? "").split(separator: "\n").count >= 29 })
        let cancel = try slurm.run("/usr/bin/scancel", ["--signal=USR1", "--batch", id])
        #expect(cancel.status == 0, "\(cancel.standardError)")
        // Requeued: Slurm holds a requeued job for its credential lifetime before it may start
        // again (`cred_expire`, 30 s in the local Slurm's slurm.conf), then runs it on its own.
        #expect(try slurm.wait(seconds: 60) { try slurm.job(id).restarts >= 1 })
        let completed = try slurm.wait(seconds: 240) { try slurm.job(id).state == "COMPLETED" }
        let final = try slurm.job(id)
        #expect(completed, "job \(id): \(final)")
        #expect(final.restarts == 1)
        let log = try String(contentsOf: work.appendingPathComponent("replica-\(id).out"), encoding: .utf8)
        #expect(log.contains("stopped on request (SIGUSR1) after step 30"), "\(log)")
        #expect(log.contains("requeueing job \(id)"), "\(log)")
        #expect(log.contains("resumed from \(preempted.path)/step-00000030 at step 30"), "\(log)")
        for file in ["model.safetensors", "optimizer.safetensors"] {
            let a = try Data(contentsOf: straight.appendingPathComponent("step-00000200/\(file)"))
            let b = try Data(contentsOf: preempted.appendingPathComponent("step-00000200/\(file)"))
            #expect(a == b, "\(file) differs after the preemption and requeue")
        }
    }
}
