import ArgumentParser
import Foundation
import ReplicaCore
import ReplicaData
import ReplicaTrain

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Make data sets.",
        subcommands: [SynthGraph.self]
    )
}

/// `replica data synth-graph`: a synthetic node-classification graph in the OGB raw layout.
struct SynthGraph: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synth-graph",
        abstract: "Write a synthetic node-classification graph (power-law block model, noisy class features) in the OGB raw layout.",
        discussion: """
        A degree-corrected stochastic block model whose blocks are the classes: each edge's source is drawn ∝ a power-law weight, its target ∝ weight from the source's class with probability --homophily, else from another class; features are 0.1 × a class mean + N(0, 1) noise. The same options and seed give the same bytes. --out must be new or empty; the folder appears only when complete. docs/graphs-at-scale.md has the model and measurements.
          replica data synth-graph --like arxiv --out data/arxiv-synth
          replica data synth-graph --nodes 10000 --avg-degree 8 --features 32 --classes 5 --homophily 0.8 --seed 1 --out data/small
          replica train gat --data data/arxiv-synth --no-normalize-features
        """
    )

    @Option(help: "Sizes of an OGB graph: arxiv (169,343 nodes, 1,166,243 edges, 128 features, 40 classes, homophily 0.65) or products (2,449,029 nodes, 61,859,140 edges, 100 features, 47 classes, homophily 0.40); the options below override it.")
    var like: SyntheticGraphPreset?
    @Option(help: "Nodes N.") var nodes: Int?
    @Option(help: "Edges per node, E / N, as edge.csv lists them (directed, before symmetrising); E = N × this, rounded.")
    var avgDegree: Double?
    @Option(help: "Features per node.") var features: Int?
    @Option(help: "Classes (the blocks).") var classes: Int?
    @Option(help: "The chance an edge joins two nodes of one class (default: the preset's; without --like 0.65).")
    var homophily: Double?
    @Option(help: "Seed of every random choice.") var seed: UInt64 = 0
    @Option(help: "Folder to write (must not exist, or be empty).") var out: String
    @Option(help: "Progress output: a bar redrawn in place, plain lines, or none (auto: the bar on a terminal).")
    var progress: ProgressMode = .auto

    /// The graph these options ask for.
    func config() throws -> SyntheticGraphConfig {
        var config: SyntheticGraphConfig
        if let like {
            config = like.config
        } else {
            let missing = [("--nodes", nodes == nil), ("--avg-degree", avgDegree == nil), ("--features", features == nil),
                           ("--classes", classes == nil)].filter(\.1).map(\.0)
            guard missing.isEmpty else {
                throw ValidationError("give --like arxiv|products, or all of --nodes, --avg-degree, --features and --classes (missing \(missing.joined(separator: ", "))).")
            }
            config = SyntheticGraphConfig()   // arxiv's homophily and split proportions
        }
        if let avgDegree {
            guard avgDegree >= 0, avgDegree.isFinite, avgDegree * Double(nodes ?? config.nodeCount) <= Double(SyntheticGraphConfig.maximumEdgeCount) else {
                throw ValidationError("--avg-degree \(avgDegree): edges per node, 0 or more, at most 2³⁹ edges in all.")
            }
        }
        if let nodes {
            guard nodes > 0, nodes <= SyntheticGraphConfig.maximumNodeCount else {
                throw ValidationError("--nodes \(nodes): between 1 and 2³¹.")
            }
            // The preset's edges per node, kept when only --nodes changes.
            if avgDegree == nil { config.edgeCount = Int((Double(config.edgeCount) * Double(nodes) / Double(config.nodeCount)).rounded()) }
            config.nodeCount = nodes
        }
        if let avgDegree { config.edgeCount = Int((Double(config.nodeCount) * avgDegree).rounded()) }
        if let features { config.featureCount = features }
        if let classes { config.classCount = classes }
        if let homophily { config.homophily = homophily }
        config.seed = seed
        if let problem = config.problem { throw ValidationError(problem + ".") }
        return config
    }

    func validate() throws { _ = try config() }

    func run() throws {
        let started = Date()
        let graph = SyntheticGraph(config: try config())
        // A bar (or lines at 1, 25, 50, 75, 100 %) for each phase in turn.
        var current: (phase: SyntheticGraph.Phase, bar: ProgressBar, started: Date, percent: Int)?
        let summary = try graph.write(to: URL(fileURLWithPath: out)) { phase, done, total in
            if current?.phase != phase {
                current?.bar.finish()
                current = (phase, ProgressBar(total: 100, isRoot: true, mode: progress, toStandardError: false, logEvery: 25), Date(), 0)
            }
            let percent = total > 0 ? done * 100 / total : 100
            guard let shown = current, percent > shown.percent else { return }
            current?.percent = percent
            let rate = Double(done) / max(Date().timeIntervalSince(shown.started), 1e-3)
            // Every step crossed, so that plain lines at 25, 50, 75 % appear however coarse the calls.
            for step in (shown.percent + 1)...percent {
                shown.bar.update(step: step, fields: phase.rawValue, unitsPerSecond: rate, unit: phase == .edges ? "edges" : "rows")
            }
        }
        current?.bar.finish()
        let (train, validation, test) = summary.splitCounts
        print("synth-graph: \(summary.nodeCount) nodes, \(summary.edgeCount) edges, \(summary.featureCount) features, "
            + "\(summary.classCount) classes; homophily of the written edges "
            + String(format: "%.4f (asked %.4g)", summary.measuredHomophily, graph.config.homophily)
            + "; splits \(train)/\(validation)/\(test) train/valid/test")
        print(String(format: "wrote %@: %.1f MB, %.1f s", out, Double(summary.bytes) / 1e6, Date().timeIntervalSince(started)))
    }
}
