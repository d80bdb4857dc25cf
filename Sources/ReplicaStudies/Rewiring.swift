import Foundation
import ReplicaCore
import ReplicaData
import ReplicaModels
import ReplicaTrain

// Legend: N nodes, E undirected edges (each listed once, self-loops aside).

/// An undirected edge list with a fraction of its edges randomly rewired.
///
/// The list is first made canonical: each undirected edge once (u < v), duplicates and self-loops
/// left out (graph builders add self-loops back). Then exactly round(p·E) edges, drawn uniformly
/// without replacement, are rewired: the edge {u, v} is removed and one of its endpoints, u (kept
/// by a fair coin), is connected to a node w drawn uniformly from the nodes that are neither u nor
/// joined to u, nor joined to u in the original list. So the edge count stays E, no rewired edge
/// recreates an original one (exactly round(p·E) original edges are gone and as many new ones
/// appear; a node joined to nearly every other keeps its edge), and the result is a function of
/// `seed` alone. Build the symmetric graph with
/// `CSRMatrix.graph(…, symmetric: true, selfLoops: true)`.
public func rewiredEdges(sources: [Int32], targets: [Int32], nodeCount: Int, fraction: Double,
                         seed: UInt64) -> (sources: [Int32], targets: [Int32]) {
    precondition((0...1).contains(fraction), "rewiredEdges: fraction \(fraction) outside [0, 1]")
    precondition(sources.count == targets.count, "rewiredEdges: \(sources.count) sources, \(targets.count) targets")
    precondition(nodeCount >= 3, "rewiredEdges needs at least 3 nodes, got \(nodeCount)")
    func key(_ a: Int32, _ b: Int32) -> UInt64 { UInt64(UInt32(min(a, b))) << 32 | UInt64(UInt32(max(a, b))) }
    var original = Set<UInt64>()
    var edges: [(Int32, Int32)] = []
    for (a, b) in zip(sources, targets) where a != b && original.insert(key(a, b)).inserted {
        edges.append((min(a, b), max(a, b)))
    }
    var generator = SeededGenerator(seed: seed, 0x7265_7769_7265)
    let count = Int((fraction * Double(edges.count)).rounded())
    var order = Array(edges.indices)
    for position in 0..<count {          // partial Fisher–Yates: the first `count` are a uniform sample
        order.swapAt(position, position + generator.nextInt(below: order.count - position))
    }
    var current = original
    for index in order[0..<count] {
        let (a, b) = edges[index]
        let u = generator.next() & 1 == 0 ? a : b
        // A node joined to (nearly) every other has no partner left: it keeps its edge.
        var w: Int32 = -1
        for _ in 0..<(64 * nodeCount) {
            let candidate = Int32(generator.nextInt(below: nodeCount))
            if candidate != u && !current.contains(key(u, candidate)) && !original.contains(key(u, candidate)) {
                w = candidate
                break
            }
        }
        if w < 0 { continue }
        current.remove(key(a, b))
        current.insert(key(u, w))
        edges[index] = (u, w)
    }
    return (edges.map(\.0), edges.map(\.1))
}

/// GAT and GCN, trained on the intact graph, tested on graphs with a fraction p of edges rewired.
public struct RewiringStudy: Sendable {
    public var seeds: [UInt64] = [0, 1, 2, 3, 4]
    public var fractions: [Double] = [0, 0.1, 0.2, 0.3, 0.4, 0.5]
    /// Rewired graphs drawn per (model, seed, p); their test accuracies are averaged.
    public var draws = 3
    /// Caps both models' epochs (default: each model's own, GAT with early stopping, GCN 200).
    public var epochs: Int?
    public init() {}

    public struct Row: Sendable {
        public var model: String            // "gat" or "gcn"
        public var fraction: Double
        /// Test accuracy per seed (the mean over `draws` rewirings).
        public var accuracies: [Double]
        public var mean: Double { arithmeticMean(accuracies) }
        public var standardDeviation: Double { sampleStandardDeviation(accuracies) }
    }

    /// Rows model by model, p ascending. `progress` gets one line per trained model.
    public func run(dataset: NodePropertyDataset, progress: (String) -> Void = { _ in }) throws -> [Row] {
        var rows: [Row] = []
        for model in ["gat", "gcn"] {
            var perFraction = [[Double]](repeating: [], count: fractions.count)
            for seed in seeds {
                let started = Date()
                var options = TrainingOptions.nodeClassification(gcn: model == "gcn")
                options.seed = seed
                if let epochs { options.steps = epochs }
                let network: NodeClassifier
                if model == "gcn" {
                    var config = GraphNetworkConfig()
                    config.featureCount = dataset.featureCount
                    config.classCount = dataset.classCount
                    network = GraphNetwork(config)
                } else {
                    var config = GATConfig()
                    config.featureCount = dataset.featureCount
                    config.classCount = dataset.classCount
                    network = GAT(config)
                }
                let task = try trainNodeClassifier(network, dataset: dataset, options: options, patience: 100)
                for (index, p) in fractions.enumerated() {
                    var total = 0.0
                    let drawCount = p == 0 ? 1 : draws
                    for draw in 0..<drawCount {
                        let edges = rewiredEdges(sources: dataset.edgeSources, targets: dataset.edgeTargets,
                                                 nodeCount: dataset.nodeCount, fraction: p,
                                                 seed: seed &* 1000 &+ UInt64(draw) &* 100 &+ UInt64(index))
                        let pattern = CSRMatrix.graph(nodeCount: dataset.nodeCount, sources: edges.sources, targets: edges.targets,
                                                      symmetric: true, selfLoops: true)
                        total += task.evaluate(onGraph: task.model.propagationGraph(pattern))["test_accuracy"] ?? .nan
                    }
                    perFraction[index].append(total / Double(drawCount))
                }
                progress(String(format: "%@ seed %llu: selected epoch %d, test accuracy %.4f (p = 0) ... %.4f (p = %.1f), %.1f s",
                                model, seed, task.selectedEpoch, perFraction[0].last!, perFraction[fractions.count - 1].last!,
                                fractions.last!, Date().timeIntervalSince(started)))
            }
            for (index, p) in fractions.enumerated() {
                rows.append(Row(model: model, fraction: p, accuracies: perFraction[index]))
            }
        }
        return rows
    }
}
