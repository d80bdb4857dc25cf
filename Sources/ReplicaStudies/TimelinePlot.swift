import Foundation
import ReplicaCore

/// `replica plot timeline`: a Gantt chart of a few steps of a `--timeline` file, as SVG: for each
/// rank a compute lane, a communication lane and the buckets' collectives (stacked where they are
/// in flight at once), on a common time axis in ms. Compute is coloured by kind (forward with its
/// data and loss, backward, the optimizer, the rest), so the buckets' overlap with backward shows.
public enum TimelinePlot {
    /// The colours and legend entries: compute's four kinds, communication, buckets.
    static let kinds: [(name: String, colour: String)] = [
        ("forward", "#9ecae1"), ("backward", "#1f77b4"), ("optimizer", "#9467bd"), ("other compute", "#7f7f7f"),
        ("communication", "#d62728"), ("bucket collectives", "#ff7f0e"),
    ]

    /// The index in `kinds` of a span: compute by its name (Timeline's names), else its lane.
    static func kind(_ span: Span) -> Int {
        guard span.lane == 0 else { return span.lane + 3 }
        let name = span.name
        if name == "data" || name == "loss" || name.hasPrefix("forward:") { return 0 }
        if name.hasPrefix("backward") || name.hasSuffix("forward and backward") { return 1 }
        if name.hasPrefix("optimizer") { return 2 }
        return 3
    }

    struct Span {
        let rank: Int
        let lane: Int      // 0 compute, 1 communication, 2 buckets
        let name: String
        let start: Double  // µs
        let end: Double
        let step: Int
    }

    /// Reads the file (the merged object, or the array form a failed run leaves) into spans.
    static func spans(_ url: URL) throws -> [Span] {
        guard var text = try? String(contentsOf: url, encoding: .utf8) else { throw UserError("\(url.path): cannot read the timeline") }
        text = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if text.hasPrefix("[") && !text.hasSuffix("]") {
            if text.hasSuffix(",") { text.removeLast() }
            text += "]"
        }
        let parsed = try? JSONSerialization.jsonObject(with: Data(text.utf8))
        guard let events = (parsed as? [String: Any])?["traceEvents"] as? [[String: Any]] ?? parsed as? [[String: Any]] else {
            throw UserError("\(url.path): not a trace-event file (neither {\"traceEvents\": [...]} nor an array of events)")
        }
        var spans: [Span] = [], open: [Int: (rank: Int, name: String, start: Double, step: Int)] = [:]
        for event in events {
            guard let rank = event["pid"] as? Int, let ts = (event["ts"] as? NSNumber)?.doubleValue, let phase = event["ph"] as? String else { continue }
            let name = event["name"] as? String ?? "", step = (event["args"] as? [String: Any])?["step"] as? Int ?? 0
            switch phase {
            case "X":
                let lane = (event["tid"] as? Int) == 2 ? 1 : 0
                spans.append(Span(rank: rank, lane: lane, name: name, start: ts, end: ts + ((event["dur"] as? NSNumber)?.doubleValue ?? 0), step: step))
            case "b":
                if let id = event["id"] as? Int { open[id] = (rank, name, ts, step) }
            case "e":
                if let id = event["id"] as? Int, let begin = open.removeValue(forKey: id) {
                    spans.append(Span(rank: begin.rank, lane: 2, name: begin.name, start: begin.start, end: ts, step: begin.step))
                }
            default: continue
            }
        }
        guard !spans.isEmpty else { throw UserError("\(url.path): holds no spans to draw") }
        return spans
    }

    /// The chart of `steps` (default: the last three steps in the file).
    public static func chart(_ url: URL, steps: ClosedRange<Int>? = nil) throws -> String {
        let all = try spans(url)
        let recorded = Set(all.map(\.step).filter { $0 > 0 }).sorted()
        let window = steps ?? (recorded.isEmpty ? 0...0 : max(recorded.first!, recorded.last! - 2)...recorded.last!)
        let shown = all.filter { window.contains($0.step) }
        guard !shown.isEmpty else { throw UserError("\(url.path): no spans in steps \(window.lowerBound):\(window.upperBound) (it has steps \(recorded.first ?? 0) to \(recorded.last ?? 0))") }
        let origin = shown.map(\.start).min()!, finish = shown.map(\.end).max()!
        let ranks = Set(shown.map(\.rank)).sorted()
        // Bucket rows: each bucket in the first row free at its start.
        var rows: [Int: Int] = [:], bucketRows: [Int: Int] = [:]
        for rank in ranks {
            var ends: [Double] = []
            for (index, span) in shown.enumerated() where span.rank == rank && span.lane == 2 {
                let row = ends.firstIndex { $0 <= span.start } ?? ends.count
                if row == ends.count { ends.append(span.end) } else { ends[row] = span.end }
                rows[index] = row
            }
            bucketRows[rank] = max(ends.count, 1)
        }
        let width = 960.0, left = 150.0, right = 20.0, laneHeight = 18.0, bucketHeight = 7.0, gap = 14.0, top = 40.0
        var y = top
        var laneY: [[Int]: Double] = [:]
        var labels = ""
        for rank in ranks {
            for lane in 0..<2 {
                laneY[[rank, lane]] = y
                labels += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">rank %d %@</text>\n", left - 6, y + 13, rank, lane == 0 ? "compute" : "communication")
                y += laneHeight + 2
            }
            laneY[[rank, 2]] = y
            labels += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">rank %d buckets</text>\n", left - 6, y + 8, rank)
            y += Double(bucketRows[rank]!) * (bucketHeight + 1) + gap
        }
        let axisY = y + 4, height = axisY + 56
        let span = max(finish - origin, 1)
        func px(_ t: Double) -> Double { left + (t - origin) / span * (width - left - right) }
        var svg = String(format: "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\">\n", width, height, width, height)
        svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<g font-family=\"sans-serif\" font-size=\"11\">\n"
        let title = "Timeline of steps \(window.lowerBound) to \(window.upperBound): \(url.lastPathComponent)"
        svg += String(format: "<text x=\"%.1f\" y=\"20\" text-anchor=\"middle\" font-size=\"%.1f\">%@</text>\n", width / 2,
                      LinePlot.fittedFontSize(title, width: width - 20, largest: 14), LinePlot.escaped(title))
        svg += labels
        // Longer spans first, so a micro-step's whole span lies under its parts.
        for index in shown.indices.sorted(by: { shown[$0].end - shown[$0].start > shown[$1].end - shown[$1].start }) {
            let item = shown[index]
            let x = px(item.start), w = max(0.5, px(item.end) - x)
            let top = item.lane == 2 ? laneY[[item.rank, 2]]! + Double(rows[index] ?? 0) * (bucketHeight + 1) : laneY[[item.rank, item.lane]]!
            let h = item.lane == 2 ? bucketHeight : laneHeight
            svg += String(format: "<rect x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" fill=\"%@\" stroke=\"white\" stroke-width=\"0.3\"><title>%@</title></rect>\n",
                          x, top, w, h, kinds[kind(item)].colour, LinePlot.escaped("step \(item.step): \(item.name)"))
        }
        let ticks = LinePlot.niceTicks(lower: 0, upper: span / 1e3, target: 8)
        svg += String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444\"/>\n", left, axisY, width - right, axisY)
        for tick in ticks.values {
            let x = px(origin + tick * 1e3)
            svg += String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444\"/><text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%@</text>\n",
                          x, axisY, x, axisY + 4, x, axisY + 16, LinePlot.label(tick, step: ticks.step))
        }
        svg += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">ms from the first event shown</text>\n", left + (width - left - right) / 2, axisY + 32)
        for (index, kind) in kinds.enumerated() {
            let x = left + Double(index) * 130
            svg += String(format: "<rect x=\"%.1f\" y=\"%.1f\" width=\"14\" height=\"10\" fill=\"%@\"/><text x=\"%.1f\" y=\"%.1f\">%@</text>\n",
                          x, axisY + 40, kind.colour, x + 18, axisY + 49, kind.name)
        }
        return svg + "</g>\n</svg>\n"
    }
}
