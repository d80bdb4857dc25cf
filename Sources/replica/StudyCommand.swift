import ArgumentParser
import Foundation
import ReplicaCore
import ReplicaData
import ReplicaModels
import ReplicaStudies
import ReplicaTrain

struct Study: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Experiments that answer a question with Replica's own training runs (tables, CSV, SVG).",
        subcommands: [StudyRewiring.self, StudyOversmoothing.self, StudyAttentionScaling.self, StudyTemperature.self]
    )
}

/// Options every study takes.
struct StudyOutputOptions: ParsableArguments {
    @Option(help: "Folder for the study's CSV and SVG plot (created if missing).") var out: String?
    @Option(help: "Graph data set in the OGB raw layout (default: the embedded Cora).") var data: String?

    func dataset() throws -> NodePropertyDataset {
        try data.map { try NodePropertyDataset.load(directory: URL(fileURLWithPath: $0), name: $0) } ?? NodePropertyDataset.cora()
    }

    /// Writes `files` (name -> contents) into --out, if given; returns the paths written.
    func write(_ files: [(String, String)]) throws -> [String] { try writeStudyFiles(files, into: out) }
}

/// Writes `files` (name -> contents) into `folder` (`--out`), if given; returns the paths written.
func writeStudyFiles(_ files: [(String, String)], into folder: String?) throws -> [String] {
    guard let folder else { return [] }
    let url = URL(fileURLWithPath: folder)
    do {
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return try files.map { name, contents in
            let file = url.appendingPathComponent(name)
            try contents.write(to: file, atomically: true, encoding: .utf8)
            return file.path
        }
    } catch {
        throw UserError("--out \(folder): cannot write the study's files (\(error.localizedDescription))")
    }
}

/// The study runs on one rank; under mpirun, rank 0 would repeat what the others do.
func singleRankRuntime(_ options: RuntimeOptions) throws -> Runtime {
    let runtime = try Runtime(options)
    guard runtime.communicator.size == 1 else {
        throw UserError("replica study runs on one rank (it trains many small models in turn); start it without mpirun")
    }
    return runtime
}

struct StudyRewiring: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rewiring",
        abstract: "GAT vs GCN tested on graphs with a fraction p of edges randomly rewired.",
        discussion: """
        Trains GAT and GCN on the intact graph (the defaults of `replica train gat` and `--model gcn`), then tests each with p = 0, 0.1, ..., 0.5 of the edges rewired: an edge {u, v} is removed and u joined to a uniformly drawn node; the graph stays symmetric with its self-loops and edge count.
          replica study rewiring --seeds 5 --out docs/studies/rewiring
        """
    )
    @Option(help: "Seeds 0..<N; each trains one GAT and one GCN.") var seeds = 5
    @Option(help: "Rewired graphs per seed and p (their accuracies are averaged).") var draws = 3
    @Option(help: "Fractions of edges to rewire, comma-separated.") var fractions = "0,0.1,0.2,0.3,0.4,0.5"
    @Option(help: "Cap on both models' epochs (default: GAT until early stopping, GCN 200).") var epochs: Int?
    @OptionGroup var output: StudyOutputOptions
    @OptionGroup var runtimeOptions: RuntimeOptions

    func parsedFractions() throws -> [Double] {
        try commaSeparated(fractions, option: "--fractions", expecting: "numbers in [0, 1]", example: "0,0.1,0.2",
                           isValid: { (0...1).contains($0) }) { Double($0) }
    }

    func validate() throws {
        guard seeds >= 1, draws >= 1, epochs ?? 1 >= 1 else { throw ValidationError("--seeds, --draws and --epochs must be at least 1.") }
        _ = try parsedFractions()
    }

    func run() throws {
        let runtime = try singleRankRuntime(runtimeOptions)
        let dataset = try output.dataset()
        var study = RewiringStudy()
        study.seeds = (0..<seeds).map(UInt64.init)
        study.draws = draws
        study.fractions = try parsedFractions()
        study.epochs = epochs
        let started = Date()
        runtime.log("rewiring: GAT and GCN on \(dataset.name), seeds 0-\(seeds - 1), \(draws) rewired graph(s) per seed and p")
        let rows = try study.run(dataset: dataset) { runtime.log($0) }
        let seconds = Date().timeIntervalSince(started)
        func row(_ model: String, _ p: Double) -> RewiringStudy.Row? { rows.first { $0.model == model && $0.fraction == p } }
        var table = "| p | GAT test accuracy | GCN test accuracy |\n|---|---|---|\n"
        var csv = "model,p,mean,std," + (0..<seeds).map { "seed\($0)" }.joined(separator: ",") + "\n"
        for p in study.fractions {
            let cells = ["gat", "gcn"].map { model -> String in
                guard let r = row(model, p) else { return "" }
                return String(format: "%.1f ± %.1f %%", 100 * r.mean, 100 * r.standardDeviation)
            }
            table += String(format: "| %.1f | ", p) + cells.joined(separator: " | ") + " |\n"
        }
        for r in rows {
            csv += "\(r.model),\(r.fraction),\(r.mean),\(r.standardDeviation)," + r.accuracies.map { "\($0)" }.joined(separator: ",") + "\n"
        }
        var plot = LinePlot(title: "Test accuracy with edges rewired at test time", xLabel: "fraction of edges rewired p",
                            yLabel: "test accuracy (%)")
        for model in ["gat", "gcn"] {
            plot.series.append(.init(name: model.uppercased(), points: rows.filter { $0.model == model }.map { ($0.fraction, 100 * $0.mean) }))
        }
        let written = try output.write([("rewiring.csv", csv), ("rewiring.svg", svgDocument([plot], panelWidth: 480, panelHeight: 320))])
        runtime.log(table + String(format: "%.1f s", seconds) + (written.isEmpty ? "" : ", wrote " + written.joined(separator: ", ")))
        runtime.emit(summary: [
            "task": .string("study rewiring"), "seconds": .number(seconds), "seeds": .integer(seeds), "draws": .integer(draws),
            "rows": .array(rows.map { r in .object([
                "model": .string(r.model), "p": .number(r.fraction), "test_accuracy": .number(r.mean),
                "std": .number(r.standardDeviation), "per_seed": .array(r.accuracies.map { .number($0) }),
            ]) }),
        ])
    }
}

struct StudyOversmoothing: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "oversmoothing",
        abstract: "GCN, GAT and graph-Transformer networks of growing depth: accuracy and how alike node representations become.",
        discussion: """
        For each depth trains a GCN (width 64), a GAT (8 heads × 8) and a graph Transformer (full attention over all nodes with a learnt bias on the graph's edges, initially ln N; width 16), full batch, keeping the epoch `replica train gat` would select, and reports the test accuracy, the mean pairwise cosine similarity of the last hidden layer's node representations, and their Dirichlet energy per node, (1/N) Σ_{edges uv} ‖x_u/√(1+d_u) − x_v/√(1+d_v)‖².
          replica study oversmoothing --out docs/studies/oversmoothing
          replica study oversmoothing --residual --depths 2,4,8,16 --json
        """
    )
    @Option(help: "Numbers of layers, comma-separated.") var depths = "2,4,8,16"
    @Flag(help: "Residual connections around every hidden-to-hidden layer.") var residual = false
    @Option(help: "Models, comma-separated: gcn, gat, transformer.") var models = "gcn,gat,transformer"
    @Option(help: "Seeds 0..<N per model and depth.") var seeds = 1
    @Option(help: "Maximum epochs per model (early stopping may end it sooner).") var epochs = 100
    @Option(help: "Epochs without validation improvement before stopping.") var patience = 100
    @Option(help: "Hidden width of GCN and GAT (8 heads).") var width = 64
    @Option(help: "Hidden width of the graph Transformer (one head).") var transformerWidth = 16
    @OptionGroup var output: StudyOutputOptions
    @OptionGroup var runtimeOptions: RuntimeOptions

    func parsedDepths() throws -> [Int] {
        try commaSeparated(depths, option: "--depths", expecting: "layer counts of at least 2", example: "2,4,8,16",
                           isValid: { $0 >= 2 }) { Int($0) }
    }

    func parsedModels() throws -> [GraphLayerKind] {
        try commaSeparated(models, option: "--models", expecting: GraphLayerKind.allCases.map(\.rawValue).joined(separator: ", "),
                           example: "gcn,gat") { GraphLayerKind(rawValue: $0) }
    }

    func validate() throws {
        _ = try parsedDepths()
        _ = try parsedModels()
        guard seeds >= 1, epochs >= 1, patience >= 0 else { throw ValidationError("--seeds and --epochs must be ≥ 1, --patience ≥ 0.") }
        guard width >= 8, width % 8 == 0 else { throw ValidationError("--width \(width): use a multiple of 8 (GAT's 8 heads).") }
        guard transformerWidth >= 1 else { throw ValidationError("--transformer-width must be at least 1.") }
    }

    func run() throws {
        let runtime = try singleRankRuntime(runtimeOptions)
        let dataset = try output.dataset()
        var study = OversmoothingStudy()
        study.depths = try parsedDepths()
        study.kinds = try parsedModels()
        study.residual = residual
        study.seeds = (0..<seeds).map(UInt64.init)
        study.epochs = epochs
        study.patience = patience
        study.width = width
        study.transformerWidth = transformerWidth
        let started = Date()
        runtime.log("oversmoothing: \(study.kinds.map(\.rawValue).joined(separator: ", ")) at depths \(depths)"
            + "\(residual ? " with residual connections" : ""), \(dataset.name), \(seeds) seed(s), up to \(epochs) epochs, "
            + "\(runtime.threads) thread(s)")
        let rows = try study.run(dataset: dataset) { runtime.log($0) }
        let seconds = Date().timeIntervalSince(started)
        let suffix = residual ? "-residual" : ""
        var table = "| model | layers | test accuracy | mean cosine | Dirichlet energy | relative energy | epoch kept | seconds |\n"
            + "|---|---|---|---|---|---|---|---|\n"
        var csv = "model,layers,residual,test_accuracy,mean_cosine,dirichlet_energy,relative_energy,selected_epoch,seconds,param_count\n"
        for r in rows {
            let name = r.kind == .transformer ? "Transformer" : r.kind.rawValue.uppercased()
            table += String(format: "| %@ | %d | %.1f %% | %.3f | %.3g | %.3g | %@ | %.0f |\n", name, r.depth, 100 * arithmeticMean(r.testAccuracy),
                            arithmeticMean(r.meanCosine), arithmeticMean(r.dirichletEnergy), arithmeticMean(r.relativeEnergy),
                            r.selectedEpoch.map(String.init).joined(separator: ","), r.seconds)
            csv += "\(r.kind.rawValue),\(r.depth),\(r.residual),\(arithmeticMean(r.testAccuracy)),\(arithmeticMean(r.meanCosine)),"
                + "\(arithmeticMean(r.dirichletEnergy)),\(arithmeticMean(r.relativeEnergy)),\(r.selectedEpoch.map(String.init).joined(separator: " ")),\(r.seconds),\(r.parameterCount)\n"
        }
        func panel(_ title: String, _ label: String, logY: Bool, _ value: (OversmoothingStudy.Row) -> Double) -> LinePlot {
            var plot = LinePlot(title: title, xLabel: "layers", yLabel: label, logX: true, logY: logY)
            for kind in study.kinds {
                let name = kind == .transformer ? "Transformer" : kind.rawValue.uppercased()
                plot.series.append(.init(name: name, points: rows.filter { $0.kind == kind }.map { (Double($0.depth), value($0)) }))
            }
            return plot
        }
        let svg = svgDocument([
            panel("Test accuracy\(residual ? " (residual)" : "")", "test accuracy (%)", logY: false) { 100 * arithmeticMean($0.testAccuracy) },
            panel("Mean pairwise cosine, last hidden layer", "mean cosine similarity", logY: false) { arithmeticMean($0.meanCosine) },
            panel("Dirichlet energy per node, last hidden layer", "energy (log scale)", logY: true) { arithmeticMean($0.dirichletEnergy) },
            panel("Relative Dirichlet energy (energy / mean squared norm)", "relative energy", logY: false) { arithmeticMean($0.relativeEnergy) },
        ], panelWidth: 340)
        let written = try output.write([("oversmoothing\(suffix).csv", csv), ("oversmoothing\(suffix).svg", svg)])
        runtime.log(table + String(format: "%.1f s", seconds) + (written.isEmpty ? "" : ", wrote " + written.joined(separator: ", ")))
        runtime.emit(summary: [
            "task": .string("study oversmoothing"), "seconds": .number(seconds), "residual": .bool(residual),
            "rows": .array(rows.map { r in .object([
                "model": .string(r.kind.rawValue), "layers": .integer(r.depth), "residual": .bool(r.residual),
                "test_accuracy": .number(arithmeticMean(r.testAccuracy)), "mean_cosine": .number(arithmeticMean(r.meanCosine)),
                "dirichlet_energy": .number(arithmeticMean(r.dirichletEnergy)),
                "relative_energy": .number(arithmeticMean(r.relativeEnergy)), "seconds": .number(r.seconds),
                "selected_epoch": .array(r.selectedEpoch.map { .integer($0) }), "param_count": .integer(r.parameterCount),
            ]) }),
        ])
    }
}
