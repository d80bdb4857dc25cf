import Foundation
import Testing
import _ReplicaTestSupport

/// `--timeline FILE` under mpirun (issue 21): trace-event JSON with both ranks, each step's
/// backward segments and bucket spans; with overlap some bucket starts before its step's backward
/// ends, with `--no-overlap` none does; `--timeline-steps` keeps only its window; forward is cut
/// per block; the watchdog's notices and its report are there when a rank stalls.
@Suite(.serialized) struct TimelineCommandTests {
    let runs = DataParallelCommandTests()

    struct Trace {
        let events: [[String: Any]]
        let metadata: [String: Any]

        init(_ url: URL) throws {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
            events = try #require(object["traceEvents"] as? [[String: Any]])
            metadata = try #require(object["metadata"] as? [String: Any])
        }

        /// The format's array form as a failed run leaves it: events each followed by a comma, no
        /// closing bracket (which the format makes optional).
        init(arrayForm url: URL) throws {
            var text = try String(contentsOf: url, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(text.hasPrefix("[") && !text.hasSuffix("]"), "the array form, unclosed")
            if text.hasSuffix(",") { text.removeLast() }
            events = try #require(try JSONSerialization.jsonObject(with: Data((text + "]").utf8)) as? [[String: Any]])
            metadata = [:]
        }

        func step(_ event: [String: Any]) -> Int? { (event["args"] as? [String: Any])?["step"] as? Int }

        /// The steps (rank, step) in which a bucket's collective started before that step's last
        /// backward segment on that rank ended.
        var overlappingSteps: Set<[Int]> {
            var backwardEnds: [[Int]: Double] = [:], bucketStarts: [[Int]: Double] = [:]
            for event in events {
                guard let rank = event["pid"] as? Int, let step = step(event), let ts = event["ts"] as? Double else { continue }
                let name = event["name"] as? String ?? ""
                if event["ph"] as? String == "X", event["cat"] as? String == "compute", name.hasPrefix("backward") {
                    backwardEnds[[rank, step]] = max(backwardEnds[[rank, step]] ?? 0, ts + (event["dur"] as? Double ?? 0))
                }
                if event["ph"] as? String == "b" { bucketStarts[[rank, step]] = min(bucketStarts[[rank, step]] ?? .infinity, ts) }
            }
            return Set(bucketStarts.keys.filter { key in backwardEnds[key].map { bucketStarts[key]! < $0 } ?? false })
        }
    }

    func trace(_ extra: [String], steps: Int = 12) throws -> Trace {
        let directory = runs.temporaryDirectory("timeline")
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("t.json")
        _ = try runs.run(ranks: 2, DataParallelCommandTests.arguments(batch: 4, steps: steps, directory: directory,
                                                                      extra: ["--bucket-mb", "0.01", "--timeline", file.path] + extra))
        return try Trace(file)
    }

    @Test func theTimelineShowsBucketsOverlappingBackwardOnlyWithOverlap() throws {
        let overlapped = try trace([])
        #expect(Set(overlapped.events.compactMap { $0["pid"] as? Int }) == [0, 1], "both ranks")
        #expect(overlapped.metadata["ranks"] as? Int == 2)
        let alignment = try #require(overlapped.metadata["clock_alignment_us"] as? Double)
        #expect(alignment >= 0 && alignment < 100_000, "clock alignment \(alignment) µs")
        let names = Set(overlapped.events.compactMap { $0["name"] as? String })
        for expected in ["agree: loss, finiteness, stop", "optimizer", "wait for the buckets", "evaluation", "checkpoint",
                         "broadcast of rank 0's parameters"] {
            #expect(names.contains(expected), "no \(expected) span")
        }
        #expect(names.contains { $0.hasPrefix("backward to transformer.h.1.") }, "backward is cut per block")
        for segment in ["data", "forward: embeddings", "forward: block 0", "forward: block 1", "forward: final norm and logits", "loss"] {
            #expect(names.contains(segment), "no \(segment) segment: forward is cut per block")
        }
        #expect(!overlapped.overlappingSteps.isEmpty, "with overlap a bucket starts before backward ends")
        let serial = try trace(["--no-overlap"])
        #expect(serial.events.contains { $0["ph"] as? String == "b" }, "the buckets are there")
        #expect(serial.overlappingSteps.isEmpty, "--no-overlap: \(serial.overlappingSteps)")
    }

    @Test func timelineStepsKeepsOnlyItsWindow() throws {
        let window = try trace(["--timeline-steps", "3:5"], steps: 8)
        let steps = Set(window.events.compactMap { window.step($0) })
        #expect(steps == [3, 4, 5], "\(steps)")
    }

    /// A rank killed at step 5: the job ends with exit 2 (mpirun kills rank 0 too) and the file
    /// holds what rank 0 had: its own events up to the failure, in the format's array form.
    @Test func aFailedRunStillLeavesRankZerosTimeline() throws {
        let directory = runs.temporaryDirectory("timeline-failed")
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("t.json")
        let arguments = try DataParallelCommandTests.arguments(batch: 4, steps: 12, directory: directory, extra: ["--timeline", file.path])
        let result = try runProcess(mpirunPath, mpirunArguments(ranks: 2) + [replicaExecutable] + arguments,
                                    environment: ["REPLICA_FAULT": "kill:rank=1:step=5"], timeout: 120)
        #expect(result.status == 2, "\(result.standardError)")
        let trace = try Trace(arrayForm: file)
        #expect(Set(trace.events.compactMap { $0["pid"] as? Int }) == [0])
        #expect(trace.events.contains { trace.step($0) == 4 }, "the steps before the failure are there")
    }

    /// Rank 1 stalls for 6 s at step 4 under `--timeout 2`: rank 0's watchdog ends the job, and
    /// its file holds the watchdog's notice (over a second in one collective) and the report that
    /// ended the job, both naming rank 1, at step 4.
    @Test func theWatchdogsReportsAreOnTheTimeline() throws {
        let directory = runs.temporaryDirectory("timeline-watchdog")
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("t.json")
        let arguments = try DataParallelCommandTests.arguments(batch: 4, steps: 8, directory: directory,
                                                               extra: ["--timeline", file.path, "--timeout", "2"])
        let result = try runProcess(mpirunPath, mpirunArguments(ranks: 2) + [replicaExecutable] + arguments,
                                    environment: ["REPLICA_FAULT": "stall:rank=1:step=4:seconds=6"], timeout: 120)
        #expect(result.status == 2, "\(result.standardError)")
        let trace = try Trace(arrayForm: file)
        let watchdog = trace.events.filter { ($0["name"] as? String)?.hasPrefix("watchdog") ?? false }
        #expect(watchdog.map { $0["name"] as? String } == ["watchdog: long wait", "watchdog: ending the job"], "\(watchdog)")
        for event in watchdog {
            #expect(event["ph"] as? String == "i" && event["cat"] as? String == "communication" && trace.step(event) == 4, "\(event)")
            let report = (event["args"] as? [String: Any])?["report"] as? String ?? ""
            #expect(report.contains("1 rank(s) have not arrived:\n  rank 1: "), "\(report)")
        }
        // Two seconds into the stall rank 1's latest heartbeat came from inside it (one a second).
        let fatal = (watchdog.last?["args"] as? [String: Any])?["report"] as? String ?? ""
        #expect(fatal.contains("rank 1: computing, not in a collective"), "\(fatal)")
    }

    /// A timeline file whose folder cannot be made (a file stands where it would be): every rank
    /// ends with exit 1 naming it, before training (not rank 0 alone, leaving the other to the
    /// watchdog).
    @Test func anUnwritableTimelineEndsEveryRankWithExitOne() throws {
        let directory = runs.temporaryDirectory("timeline-unwritable")
        defer { try? FileManager.default.removeItem(at: directory) }
        let blocker = directory.appendingPathComponent("a-file")
        try Data("x".utf8).write(to: blocker)
        let file = blocker.appendingPathComponent("t.json").path
        let arguments = try DataParallelCommandTests.arguments(batch: 4, steps: 4, directory: directory, extra: ["--timeline", file])
        let result = try runProcess(mpirunPath, mpirunArguments(ranks: 2) + [replicaExecutable] + arguments, timeout: 120)
        #expect(result.status == 1, "\(result.standardError)")
        #expect(result.standardError.contains(file), "\(result.standardError)")
        #expect(!result.standardError.contains("watchdog") && !result.standardError.contains("ending the job"), "\(result.standardError)")
    }

    @Test func timelineStepsNeedsATimelineAndAWindow() throws {
        let directory = runs.temporaryDirectory("timeline-refused")
        defer { try? FileManager.default.removeItem(at: directory) }
        for extra in [["--timeline-steps", "3:5"], ["--timeline", directory.appendingPathComponent("t.json").path, "--timeline-steps", "5:3"]] {
            let result = try runProcess(replicaExecutable, try DataParallelCommandTests.arguments(batch: 4, steps: 4, directory: directory, extra: extra), timeout: 60)
            #expect(result.status == 1, "\(extra): \(result.status) \(result.standardError)")
            #expect(result.standardError.contains("--timeline-steps"), "\(result.standardError)")
        }
    }
}
