import Foundation
import ReplicaCore
import ReplicaData
import ReplicaModels
import ReplicaTrain

// Legend: N nodes, W features per node representation.

/// The Dirichlet energy per node of representations x [N, W] on `graph` (Cai & Wang 2020):
///
///     E(x) = (1/N) · Σ over undirected edges {u, v}, u ≠ v, of ‖x_u/√(1+d_u) − x_v/√(1+d_v)‖²
///
/// with d_v the number of v's neighbours other than itself. `graph` is symmetric (each undirected
/// edge stored in both rows, as `CSRMatrix.graph(…, symmetric: true, …)` builds it); its
/// self-loops and values are ignored. It is tr(xᵀ Δ̃ x)/N for the augmented normalised Laplacian
/// Δ̃ = I − D̃^-1/2 Ã D̃^-1/2: 0 when every x_v is proportional to √(1+d_v), as repeated GCN
/// propagation makes them. Summed in Double.
public func dirichletEnergy(_ x: Tensor, graph: CSRGraph) -> Double {
    let N = x.rowCount, W = x.columnCount
    precondition(graph.rowCount == N && graph.columnCount == N, "dirichletEnergy: a \(graph.rowCount)-node graph for \(N) rows")
    let scale = (0..<N).map { v -> Double in
        let neighbours = graph.range(ofRow: v).filter { Int(graph.columnIndices[$0]) != v }.count
        return 1 / Double(1 + neighbours).squareRoot()
    }
    var total = 0.0
    for u in 0..<N {
        for e in graph.range(ofRow: u) {
            let v = Int(graph.columnIndices[e])
            if v == u { continue }
            let a = x.data + u * W, b = x.data + v * W
            for k in 0..<W {
                let d = Double(a[k]) * scale[u] - Double(b[k]) * scale[v]
                total += d * d
            }
        }
    }
    return total / 2 / Double(N)     // each undirected edge was visited from both ends
}

/// The Dirichlet energy relative to the representations' size: E(x) / (‖x‖²_F / N), that is
/// tr(xᵀ Δ̃ x) / tr(xᵀ x), in [0, 2). Unlike E(x) it does not grow when a deep network merely
/// scales its features up. nan for x = 0.
public func relativeDirichletEnergy(_ x: Tensor, graph: CSRGraph) -> Double {
    var squares = 0.0
    for k in 0..<x.count { squares += Double(x[k]) * Double(x[k]) }
    return squares > 0 ? dirichletEnergy(x, graph: graph) / (squares / Double(x.rowCount)) : .nan
}

/// GCN, GAT and graph-Transformer networks of growing depth on one data set: test accuracy and how
/// distinguishable the last hidden layer's node representations stay.
///
/// Every model is trained by the data-parallel loop on one rank (full batch), with the early
/// stopping of `replica train gat` (the epoch with the best validation accuracy and loss is kept)
/// within `epochs`; the representations are measured on the whole graph in evaluation mode.
public struct OversmoothingStudy: Sendable {
    public var depths = [2, 4, 8, 16]
    public var kinds = GraphLayerKind.allCases
    public var residual = false
    public var seeds: [UInt64] = [0]
    public var epochs = 100
    public var patience = 100
    /// Width of the hidden layers of GCN (64) and GAT (8 heads × 8).
    public var width = 64
    /// The graph Transformer's: its cost grows as N²·width (Cora: 7.3M scores a head and layer).
    public var transformerWidth = 16
    public var transformerHeads = 1
    public init() {}

    /// The network of `kind` and `depth` this study trains.
    public func config(kind: GraphLayerKind, depth: Int, dataset: NodePropertyDataset) -> GraphNetworkConfig {
        var config: GraphNetworkConfig
        switch kind {
        case .gcn:
            config = GraphNetworkConfig()
            config.hidden = width
        case .gat:
            config = GraphNetworkConfig.gat(layers: depth)
            config.hidden = max(1, width / 8)
        case .transformer:
            config = GraphNetworkConfig()
            config.kind = .transformer
            config.heads = transformerHeads
            config.hidden = max(1, transformerWidth / transformerHeads)
            config.decaysFirstLayerOnly = false
            config.bias = true
            config.initialEdgeBias = Float(log(Double(dataset.nodeCount)))
        }
        config.featureCount = dataset.featureCount
        config.classCount = dataset.classCount
        config.layerCount = depth
        config.residual = residual
        return config
    }

    public struct Row: Sendable {
        public var kind: GraphLayerKind
        public var depth: Int
        public var residual: Bool
        public var testAccuracy: [Double]       // per seed
        public var meanCosine: [Double]
        public var dirichletEnergy: [Double]
        public var relativeEnergy: [Double]
        public var selectedEpoch: [Int]
        public var seconds: Double               // training and measuring, all seeds
        public var parameterCount: Int
    }

    public func run(dataset: NodePropertyDataset, progress: (String) -> Void = { _ in }) throws -> [Row] {
        let symmetric = dataset.symmetricGraphWithSelfLoops
        var rows: [Row] = []
        for kind in kinds {
            for depth in depths {
                let started = Date()
                var row = Row(kind: kind, depth: depth, residual: residual, testAccuracy: [], meanCosine: [], dirichletEnergy: [], relativeEnergy: [],
                              selectedEpoch: [], seconds: 0, parameterCount: 0)
                for seed in seeds {
                    var options = TrainingOptions.nodeClassification(gcn: kind == .gcn)
                    options.steps = epochs
                    options.seed = seed
                    let network = GraphNetwork(config(kind: kind, depth: depth, dataset: dataset))
                    let task = try trainNodeClassifier(network, dataset: dataset, options: options, patience: patience)
                    let evaluation = task.evaluate(onGraph: task.graph)
                    let hidden = network.lastHidden ?? Tensor(zeros: [dataset.nodeCount, 1])
                    row.testAccuracy.append(evaluation["test_accuracy"] ?? .nan)
                    row.meanCosine.append(meanPairwiseCosine(hidden))
                    row.dirichletEnergy.append(dirichletEnergy(hidden, graph: symmetric))
                    row.relativeEnergy.append(relativeDirichletEnergy(hidden, graph: symmetric))
                    row.selectedEpoch.append(task.selectedEpoch)
                    row.parameterCount = network.parameterCount
                }
                row.seconds = Date().timeIntervalSince(started)
                progress(String(format: "%@ depth %d%@: test accuracy %.4f, mean cosine %.3f, Dirichlet energy %.4g (relative %.4g), %.1f s",
                                kind.rawValue, depth, residual ? " (residual)" : "", arithmeticMean(row.testAccuracy), arithmeticMean(row.meanCosine),
                                arithmeticMean(row.dirichletEnergy), arithmeticMean(row.relativeEnergy), row.seconds))
                rows.append(row)
            }
        }
        return rows
    }
}
