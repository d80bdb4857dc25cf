import ArgumentParser
import Foundation
import ReplicaCore
import ReplicaData
import ReplicaDistributed
import ReplicaModels
import ReplicaTrain

struct TrainGAT: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gat",
        abstract: "Graph attention network (or GCN) node classification (default: the embedded Cora).",
        discussion: """
        Defaults are the GAT paper's Cora configuration: 8 heads × 8 hidden features, 1 output head, dropout 0.6 on inputs and attention, Adam lr 0.005 with L2 weight decay 5e-4, early stopping on validation with patience 100. Reports test accuracy at the selected (best validation) epoch. --model gcn trains Kipf & Welling's GCN instead, with its defaults wherever no value is given: 2 layers, 16 hidden, dropout 0.5, Adam lr 0.01, L2 5e-4 on the first layer's weight, 200 epochs (the same selection of the best validation epoch).
          replica train gat --seed 0 --json
          replica train gat --model gcn --seed 0 --json
          mpirun -np 2 replica train gat --augment feature-mask=0.1,drop-edge=0.1
          replica train gat --batch-size 64 --fanout 10,5 --json
        --batch-size N trains on neighbour-sampled mini-batches (GraphSAGE): N seed nodes per rank and micro-step, one block per layer sampled from them with --fanout (all neighbours without it), several steps an epoch; evaluation, in both modes, is layer-wise inference over the whole graph.
        --data takes a folder in the OGB raw layout (raw/*.csv.gz, split/<name>/*.csv.gz).
        """
    )

    @OptionGroup var common: CommonTrainOptions
    @Option(help: "The model: gat, or gcn (Kipf & Welling's graph convolutional network).") var model = NodeClassifierKind.gat
    @Option(help: "Features per head in hidden layers (default: 8; gcn 16).") var hidden: Int?
    @Option(help: "Attention heads in hidden layers (concatenated; gat only).") var heads = 8
    @Option(help: "Attention heads of the output layer (averaged; gat only).") var outputHeads = 1
    @Option(help: "GAT (or GCN) layers.") var layers = 2
    @Option(help: "Dropout on every layer's input (default: 0.6; gcn 0.5).") var dropout: Float?
    @Option(help: "Dropout on attention coefficients (gat only).") var attentionDropout: Float = 0.6
    @Option(help: "Dropout on projected features where they are aggregated (the GAT code's; 0 as PyG).") var valueDropout: Float = 0.6
    @Flag(inversion: .prefixedNo, help: "Each first-layer head drops its own copy of the input (the GAT code's); --no-head-input-dropout: one mask for all heads, as PyG's GATConv after F.dropout (gat only).")
    var headInputDropout = true
    @Flag(inversion: .prefixedNo, help: "Divide each node's features by their sum (GAT's and PyG's preprocessing).")
    var normalizeFeatures = true
    @Option(help: "Normalisation between layers.") var norm = GraphNorm.none
    @Option(help: "Neighbours sampled per node and hop, such as 15,10 (the first hop from the seeds; default: all).") var fanout: String?
    @Option(help: "Stop after this many epochs without validation improvement (0: never).") var patience = 100

    var isGCN: Bool { model == .gcn }

    func validate() throws {
        guard hidden ?? 1 >= 1, heads >= 1, outputHeads >= 1, layers >= 1 else {
            throw ValidationError("--hidden, --heads, --output-heads and --layers must be at least 1.")
        }
        if isGCN && norm != .none { throw ValidationError("--norm \(norm) is for --model gat; GCN has no normalisation layers.") }
        guard (0..<1).contains(dropout ?? 0), (0..<1).contains(attentionDropout), (0..<1).contains(valueDropout) else {
            throw ValidationError("--dropout, --attention-dropout and --value-dropout must be in [0, 1).")
        }
        guard patience >= 0 else { throw ValidationError("--patience must not be negative.") }
        _ = try parsedFanout()
    }

    func parsedFanout() throws -> [Int]? {
        guard let fanout else { return nil }
        return try commaSeparated(fanout, option: "--fanout", expecting: "a positive count per layer", example: "10,10",
                                  isValid: { $0 >= 1 }) { Int($0) }
    }

    /// The GCN of these options for `dataset`.
    func gcnConfig(_ dataset: NodePropertyDataset) -> GraphNetworkConfig {
        var config = GraphNetworkConfig()
        config.featureCount = dataset.featureCount
        config.classCount = dataset.classCount
        config.hidden = hidden ?? 16
        config.layerCount = layers
        config.dropout = dropout ?? 0.5
        return config
    }

    /// The GAT of these options for `dataset`.
    func gatConfig(_ dataset: NodePropertyDataset) -> GATConfig {
        var config = GATConfig()
        config.featureCount = dataset.featureCount
        config.classCount = dataset.classCount
        config.hidden = hidden ?? 8
        config.heads = heads
        config.outputHeads = outputHeads
        config.layerCount = layers
        config.inputDropout = dropout ?? 0.6
        config.attentionDropout = attentionDropout
        config.valueDropout = valueDropout
        config.inputDropoutPerHead = headInputDropout
        config.norm = norm.kind
        return config
    }

    func run() throws {
        let (dataset, load) = try LoadedGraph.load(common.data)
        let fanout = try parsedFanout()
        // The model is built after the memory preflight: its parameters are part of what is checked.
        let batchSize = common.batchSize
        let run = try TrainingRun(common, defaults: .nodeClassification(gcn: isGCN), augmentations: ["feature-mask", "drop-edge"],
                                  memory: { options, communicator in
            let graph = GraphSize(dataset)
            return isGCN ? gcnConfig(dataset).memoryEstimate(graph: graph, options: options, fanout: fanout, batchSize: batchSize, ranks: communicator.size)
                : gatConfig(dataset).memoryEstimate(graph: graph, options: options, fanout: fanout, batchSize: batchSize, ranks: communicator.size)
        }, makeTask: { options, communicator in
            let network: NodeClassifier = isGCN ? GraphNetwork(gcnConfig(dataset)) : GAT(gatConfig(dataset))
            return try GATTask(dataset: dataset, model: network, options: options, fanout: fanout, batchSize: batchSize,
                               patience: patience, normalizeFeatures: normalizeFeatures, rank: communicator.rank,
                               ranks: communicator.size)
        }, adjustForTask: { options, task in
            // The defaults count epochs; with mini-batches an epoch is several steps, evaluated at its end.
            options.evaluationInterval = task.stepsPerEpoch
            if common.steps == nil && common.epochs == nil { options.steps *= task.stepsPerEpoch }
        })
        let task = run.task, stepsPerEpoch = task.stepsPerEpoch
        let epochs = (run.options.steps + stepsPerEpoch - 1) / stepsPerEpoch
        let sampling = batchSize.map { "mini-batches of \($0) seed nodes per rank (global \(task.globalBatch ?? 0)), "
            + "fanout \(fanout.map { $0.map(String.init).joined(separator: ",") } ?? "all"), \(stepsPerEpoch) steps per epoch, " } ?? ""
        try run.train(banner: "\(model): \(task.model.parameterCount) parameters, \(dataset.name): \(dataset.nodeCount) nodes, "
            + "\(dataset.train.count)/\(dataset.validation.count)/\(dataset.test.count) train/val/test, "
            + "\(run.communicator.size) rank(s) × \(run.runtime.threads) thread(s), \(sampling)up to \(epochs) epochs, patience \(patience), "
            + load.description) { outcome in
            let chosen = task.selected.isEmpty ? outcome.evaluation : task.selected
            let validation = chosen["val_accuracy"] ?? .nan, test = chosen["test_accuracy"] ?? .nan
            let epochMilliseconds = outcome.secondsPerStep * Double(stepsPerEpoch) * 1e3
            let epochsRun = (outcome.steps + stepsPerEpoch - 1) / stepsPerEpoch
            return (String(format: "done: %d epochs (%d steps), selected epoch %d: val accuracy %.4f, test accuracy %.4f, %.2f ms/epoch, %.0f nodes/s, %.1f s",
                           epochsRun, outcome.steps, task.selectedEpoch, validation, test, epochMilliseconds, outcome.unitsPerSecond,
                           outcome.seconds),
                    ["model": .string(model.rawValue), "val_accuracy": .number(validation), "test_accuracy": .number(test),
                     "epoch_ms": .number(epochMilliseconds), "selected_epoch": .integer(task.selectedEpoch),
                     "steps_per_epoch": .integer(stepsPerEpoch), "nodes_per_s": .number(outcome.unitsPerSecond),
                     "step_ms": .number(outcome.secondsPerStep * 1e3), "load_seconds": .number(load.seconds),
                     "batch_size": batchSize.map { .integer($0) } ?? .null])
        }
    }
}

/// How long reading a graph (`--data`, or the embedded Cora) took, and the resident memory it peaked at.
struct LoadedGraph: CustomStringConvertible {
    var seconds: Double
    /// This process's peak resident set once the data set is in memory (nothing else is yet), MiB.
    var peakResidentMegabytes: Double

    /// The data set of `--data` (a folder in the OGB raw layout), else Cora, with its load figures.
    static func load(_ path: String?) throws -> (NodePropertyDataset, LoadedGraph) {
        let started = Date()
        let dataset = try path.map { try NodePropertyDataset.load(directory: URL(fileURLWithPath: $0), name: $0) }
            ?? NodePropertyDataset.cora()
        return (dataset, LoadedGraph(seconds: Date().timeIntervalSince(started), peakResidentMegabytes: ResourceUsage.peakResidentMegabytes))
    }

    var description: String { String(format: "loaded in %.2f s (peak resident %.0f MiB)", seconds, peakResidentMegabytes) }
}
