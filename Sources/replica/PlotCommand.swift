import ArgumentParser
import Foundation
import ReplicaCore
import ReplicaStudies

struct Plot: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plot",
        abstract: "SVG charts of runs (--metrics files) and of --timeline files.",
        subcommands: [PlotMetrics.self, PlotTimeline.self]
    )
}

struct PlotMetrics: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics",
        abstract: "Charts of one or more --metrics files: each quantity against step and against training seconds, the runs overlaid.",
        discussion: """
        Writes DIR/loss.svg, the evaluation metrics (val_loss.svg, ...), lr.svg, throughput.svg, comm_ms.svg and overlap_fraction.svg, for the quantities the files hold; each run is named after its file. A quantity spanning more than a factor of 20 is drawn on a log scale.
          replica plot metrics one-rank.jsonl two-ranks.jsonl --out charts
        """
    )
    @Argument(help: "--metrics files (one JSON object a step).") var files: [String]
    @Option(help: "Folder for the SVG files (created if missing).") var out: String

    func run() throws {
        let runs = try files.map { try MetricsPlot.Run(url: URL(fileURLWithPath: $0)) }
        for path in try writeStudyFiles(MetricsPlot.charts(runs), into: out) { print(path) }
    }
}

struct PlotTimeline: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "timeline",
        abstract: "A Gantt chart of a --timeline file: compute, communication and each bucket's collective, a lane each per rank.",
        discussion: """
        Writes DIR/timeline.svg (the last three steps in the file, or --steps A:B).
          replica plot timeline t.json --out charts
        """
    )
    @Argument(help: "A --timeline file.") var file: String
    @Option(help: "Folder for timeline.svg (created if missing).") var out: String
    @Option(help: "Steps A to B (from 1) instead of the last three.") var steps: String?

    func validate() throws {
        if let steps, TimelineOptions.parseSteps(steps) == nil {
            throw ValidationError("--steps \(steps): give A:B with 1 ≤ A ≤ B, for example 10:12.")
        }
    }

    func run() throws {
        let svg = try TimelinePlot.chart(URL(fileURLWithPath: file), steps: steps.flatMap(TimelineOptions.parseSteps))
        for path in try writeStudyFiles([("timeline.svg", svg)], into: out) { print(path) }
    }
}
