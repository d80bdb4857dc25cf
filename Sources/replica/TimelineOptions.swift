import ArgumentParser
import Foundation
import ReplicaTrain

/// `--timeline FILE` and `--timeline-steps A:B`, for every train task and `bench step`.
struct TimelineOptions: ParsableArguments {
    @Option(help: "Write a Chrome trace-event timeline of every rank (compute and communication, clocks aligned to rank 0's) to this file; rank 0 writes it at the end, and its own events when the run fails. Open it in Perfetto or chrome://tracing.")
    var timeline: String?
    @Option(help: "Only steps A to B (counted from 1) on the timeline.")
    var timelineSteps: String?

    /// A:B with 1 ≤ A ≤ B.
    static func parseSteps(_ text: String) -> ClosedRange<Int>? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let first = Int(parts[0]), let last = Int(parts[1]), first >= 1, first <= last else { return nil }
        return first...last
    }

    func validate() throws {
        if let timeline, let problem = outputFolderProblem(URL(fileURLWithPath: timeline).deletingLastPathComponent().path) {
            throw ValidationError("--timeline \(timeline): its folder: \(problem); choose another file.")
        }
        if let timelineSteps {
            guard timeline != nil else { throw ValidationError("--timeline-steps needs --timeline FILE.") }
            guard Self.parseSteps(timelineSteps) != nil else {
                throw ValidationError("--timeline-steps \(timelineSteps): give A:B with 1 ≤ A ≤ B, for example 10:20.")
            }
        }
    }

    func apply(to options: inout TrainingOptions) {
        options.timelinePath = timeline
        options.timelineSteps = timelineSteps.flatMap(Self.parseSteps)
    }
}
