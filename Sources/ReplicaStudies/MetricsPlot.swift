import Foundation
import ReplicaCore

/// `replica plot metrics`: charts of `--metrics` files (one JSON object a step), several runs
/// overlaid, each quantity against step and against training seconds (the sum of `step_ms`).
public enum MetricsPlot {
    /// One run: its name (the file's, without `.jsonl`) and its records in order.
    public struct Run {
        public let name: String
        public let records: [[String: Any]]

        /// Reads a `--metrics` file; a line that is not a JSON object is a UserError naming the file and line.
        public init(url: URL) throws {
            guard let text = try? String(contentsOf: url, encoding: .utf8) else {
                throw UserError("\(url.path): cannot read the metrics file")
            }
            var records: [[String: Any]] = []
            for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where !line.trimmingCharacters(in: .whitespaces).isEmpty {
                guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else {
                    throw UserError("\(url.path):\(index + 1): not a JSON object; a --metrics file has one a line")
                }
                records.append(object)
            }
            guard records.contains(where: { $0["step"] is NSNumber }) else {
                throw UserError("\(url.path): no record with a \"step\"; is it a --metrics file?")
            }
            self.records = records
            name = url.deletingPathExtension().lastPathComponent
        }
    }

    /// The quantities charted, in order: (key or key suffix, chart file name, axis label).
    static func quantities(in runs: [Run]) -> [(key: String, file: String, label: String)] {
        let keys = Set(runs.flatMap { $0.records.flatMap(\.keys) })
        var result: [(String, String, String)] = [("loss", "loss", "training loss")]
        for key in keys.sorted() where key.hasPrefix("val_") || key.hasSuffix("_accuracy") || key == "masked_accuracy" || key == "reconstruction_loss" {
            if key != "loss" { result.append((key, key, key.replacingOccurrences(of: "_", with: " "))) }
        }
        result.append(("lr", "lr", "learning rate"))
        for key in keys.sorted() where key.hasSuffix("_per_s") { result.append((key, "throughput", key.replacingOccurrences(of: "_per_s", with: " / s"))) }
        result += [("comm_ms", "comm_ms", "gradient communication (ms a step)"), ("overlap_fraction", "overlap_fraction", "share of communication hidden")]
        return result.filter { entry in keys.contains(entry.0) }
    }

    /// The charts as (file name, SVG): one a quantity, two panels (against step, against seconds).
    public static func charts(_ runs: [Run]) -> [(String, String)] {
        quantities(in: runs).map { quantity in
            var byStep = LinePlot(title: "\(quantity.label) by step", xLabel: "step", yLabel: quantity.label)
            var bySeconds = LinePlot(title: "\(quantity.label) by training time", xLabel: "seconds", yLabel: quantity.label)
            var values: [Double] = []
            for run in runs {
                var seconds = 0.0
                var stepPoints: [(x: Double, y: Double)] = [], timePoints: [(x: Double, y: Double)] = []
                for record in run.records {
                    seconds += (record["step_ms"] as? NSNumber)?.doubleValue ?? 0
                    guard let step = (record["step"] as? NSNumber)?.doubleValue, let value = (record[quantity.key] as? NSNumber)?.doubleValue,
                          value.isFinite else { continue }
                    stepPoints.append((step, value))
                    timePoints.append((seconds / 1e3, value))
                    values.append(value)
                }
                byStep.series.append(.init(name: run.name, points: stepPoints))
                bySeconds.series.append(.init(name: run.name, points: timePoints))
            }
            // Log scale where the values span more than a factor of 20 (learning-rate warmup, early losses).
            if let low = values.min(), let high = values.max(), low > 0, high / low > 20 {
                byStep.logY = true
                bySeconds.logY = true
            }
            return ("\(quantity.file).svg", svgDocument([byStep, bySeconds], panelWidth: 440, panelHeight: 320))
        }
    }
}
