import Foundation
import ReplicaCore
import ReplicaData
import ReplicaDistributed
import ReplicaModels
import ReplicaNN

/// Node classification with a GAT or another `NodeClassifier` such as GCN (`replica train gat
/// --model gcn`): one optimizer step per epoch (full batch), or neighbour-sampled mini-batches
/// (`batchSize`, `replica train gat --batch-size N`).
///
/// Full batch (no `batchSize`). Data parallelism: each epoch the training nodes are permuted from (seed, epoch) and split into
/// contiguous, nearly equal slices, one per rank and micro-step (`--grad-accum`; sizes differ by at
/// most one; nothing is dropped). A micro-step is one more replica: micro-step m of rank r draws
/// its dropout and augmentation as rank m·R + r would, so 1 rank × 2 micro-steps computes exactly
/// what 2 ranks compute.
/// A rank computes the loss of its nodes on their k-hop in-neighbourhood (k = layers; all
/// neighbours, or `--fanout` samples), with its own dropout, augmentation and BatchNorm batch.
/// The loss is divided by the global number of training nodes, so summed gradients are the
/// full-batch gradient. One rank without fanout or micro-steps trains on the whole graph: full-batch training.
///
/// The gradients are all-reduced after backward (in `--bucket-mb` buckets): a model of two layers
/// leaves nothing to overlap, so `--no-overlap` is refused rather than silently ignored.
///
/// Early stopping as the GAT paper's code: an epoch whose validation accuracy is at least the best
/// so far, or whose validation loss is at most the lowest, resets the patience counter; one that
/// is both selects the model, whose test accuracy is reported (and whose parameters are kept,
/// `restoreSelectedParameters()`).
///
/// A model whose propagation weights depend on degrees (GCN) gets them from the whole graph, and
/// its k-hop subgraphs carry those weights, so ranks still compute exactly the full-batch outputs;
/// with DropEdge its graph is edited first and normalised afterwards.
///
/// Mini-batches (`batchSize` B, GraphSAGE's training as PyG's NeighborLoader and DGL's sampler
/// users run it). Each epoch the training nodes are permuted from (seed, epoch) and cut into
/// global batches of B × ranks × `--grad-accum` seeds (`DistributedSampler`: the remainder that
/// does not fill one is dropped, so every replica has exactly B seeds a step; it is under one
/// global batch an epoch, different nodes each epoch); micro-step m of rank r takes slice
/// m·ranks + r. From its seeds a replica samples one block per layer (`BlockSampler`: `fanout`
/// in-neighbours per node and hop, all without a fanout), drawn from (seed, replica, step), the
/// stream its DropEdge and feature masks come from too; the step fixes the epoch. So 1 rank ×
/// 2 micro-steps computes what 2 ranks compute, and a resumed run continues exactly. The last
/// layer computes the seeds alone; GCN's weights are the whole graph's (sampled neighbours'
/// scaled by degree over fanout). GCN refuses DropEdge here: it would renormalise the whole
/// graph every step.
///
/// Evaluation, in both modes, is layer-wise inference over the whole graph
/// (`NodeClassifier.layerwiseLogits`, `entriesPerChunk` entries at a time): the values of a
/// whole-graph forward, bit for bit, without a whole-graph attention tensor.
public final class GATTask: DataParallelTask {
    public let dataset: NodePropertyDataset
    /// The symmetric graph with self-loops, as a pattern.
    public let patternGraph: CSRGraph
    /// What the model propagates over: `model.propagationGraph(patternGraph)`.
    public let graph: CSRGraph
    public let model: NodeClassifier
    let loss = CrossEntropy(ignoreIndex: -100)
    let options: TrainingOptions
    let rank: Int
    let ranks: Int
    let fanout: [Int]?
    /// Seed nodes per rank and micro-step, or nil: full batch.
    public let batchSize: Int?
    /// Mini-batches: the epochs' permutations of the training nodes, cut into global batches.
    let seedSampler: DistributedSampler?
    private var permutation: (epoch: Int, order: [Int32])?
    /// Mini-batches: each step's blocks.
    let blockSampler: BlockSampler?
    let patience: Int
    private var bestAccuracy = -Double.infinity
    private var lowestLoss = Double.infinity
    private var epochsWithoutImprovement = 0
    /// The evaluation of the selected (best-validation) epoch.
    public private(set) var selected: [String: Double] = [:]
    public private(set) var selectedEpoch = 0
    /// The parameters of the selected epoch. [parameterCount]
    public private(set) var selectedParameters: Tensor?

    public var taskName: String { "gat" }
    public var arena: ParameterArena { model.arena }
    public var throughputUnit: String { "nodes" }
    /// One full batch, or the global batches of mini-batches that fit in the training nodes.
    public var stepsPerEpoch: Int { seedSampler?.stepsPerEpoch ?? 1 }
    /// Training (seed) nodes a rank computes the loss of per micro-step.
    public var unitsPerMicroStep: Int { batchSize ?? dataset.train.count / (ranks * options.gradientAccumulation) }
    /// Mini-batches: B × ranks × `--grad-accum` seeds. Full batch: nil, every step trains on all
    /// the training nodes, however many ranks share them.
    public var globalBatch: Int? { batchSize.map { $0 * ranks * options.gradientAccumulation } }
    /// Graph entries per chunk of layer-wise inference: per-edge tensors of at most 2²⁰ × heads floats.
    public static let entriesPerChunk = 1 << 20

    /// `normalizeFeatures` divides each node's features by their sum (GAT's and PyG's preprocessing).
    public convenience init(dataset: NodePropertyDataset, config baseConfig: GATConfig, options: TrainingOptions, fanout: [Int]?,
                            batchSize: Int? = nil, patience: Int, normalizeFeatures: Bool = true, rank: Int, ranks: Int) throws {
        var config = baseConfig
        config.featureCount = dataset.featureCount
        config.classCount = dataset.classCount
        try self.init(dataset: dataset, model: GAT(config), options: options, fanout: fanout, batchSize: batchSize,
                      patience: patience, normalizeFeatures: normalizeFeatures, rank: rank, ranks: ranks)
    }

    /// Trains `model`, built for `dataset`'s feature and class counts; initialises it from `options.seed`.
    /// `batchSize`: seed nodes per rank and micro-step (mini-batches), or nil (full batch).
    public init(dataset original: NodePropertyDataset, model: NodeClassifier, options: TrainingOptions, fanout: [Int]?,
                batchSize: Int? = nil, patience: Int, normalizeFeatures: Bool = true, rank: Int, ranks: Int) throws {
        var dataset = original
        if normalizeFeatures { dataset.features = dataset.features.rowNormalized() }
        guard dataset.train.count >= ranks else {
            throw UserError("\(dataset.name): \(dataset.train.count) training nodes cannot be split over \(ranks) ranks")
        }
        guard options.overlap else {
            throw UserError("--no-overlap: node classification all-reduces its gradients after backward already (its layers report no gradients early); leave the flag out")
        }
        if let fanout, fanout.count != model.layerCount {
            throw UserError("--fanout gives \(fanout.count) hop(s) for a \(model.layerCount)-layer model; give one per layer, such as 10,10")
        }
        if let batchSize {
            let globalBatch = batchSize * ranks * options.gradientAccumulation
            guard batchSize >= 1, globalBatch <= dataset.train.count else {
                throw UserError("--batch-size \(batchSize): \(ranks) rank(s) × \(batchSize) × --grad-accum \(options.gradientAccumulation) = \(globalBatch) seeds a step, more than the \(dataset.train.count) training nodes of \(dataset.name); use --batch-size \(max(1, dataset.train.count / (ranks * options.gradientAccumulation))) or less")
            }
            guard model.acceptsBlocks else {
                throw UserError("--batch-size: this model attends over every node, so it cannot train on sampled blocks; leave --batch-size out")
            }
            if batchSize == 1 && !model.batchNorms.isEmpty {
                throw UserError("--batch-size 1 with --norm batch: BatchNorm needs two rows or more, and a seed without neighbours would give it one; use --batch-size 2 or more")
            }
            if model.normalizesGraph && (options.augmentation["drop-edge"] ?? 0) > 0 {
                throw UserError("--augment drop-edge with --batch-size: GCN's DropEdge renormalises the whole graph every step; leave it out (neighbour sampling with --fanout already drops edges) or train full batch")
            }
        }
        self.dataset = dataset
        self.options = options
        self.rank = rank
        self.ranks = ranks
        self.fanout = fanout
        self.batchSize = batchSize
        self.patience = patience
        patternGraph = dataset.symmetricGraphWithSelfLoops
        graph = model.propagationGraph(patternGraph)
        seedSampler = batchSize.map {
            DistributedSampler(exampleCount: dataset.train.count, globalBatch: $0 * ranks * options.gradientAccumulation, seed: options.seed)
        }
        blockSampler = batchSize == nil ? nil : BlockSampler(graph: graph)
        self.model = model
        model.initialize(seed: options.seed)
    }

    /// With mini-batches also "sampling": a full-batch checkpoint does not resume as one (nor the reverse).
    public var configuration: [String: String] {
        var fields = ["task": "gat", "data": dataset.name, "nodes": "\(dataset.nodeCount)",
                      "fanout": fanout.map { $0.map(String.init).joined(separator: ",") } ?? "full", "patience": "\(patience)"]
        if batchSize != nil { fields["sampling"] = "blocks" }
        return fields.merging(model.configurationFields) { task, _ in task }
    }

    public var checkpointState: [String: Any] {
        ["config": Checkpoint.jsonObject(model.encodableConfig), "selected_epoch": selectedEpoch]
    }

    public var extraCheckpointTensors: [(String, Tensor)] { [] }
    public var batchNorms: [BatchNorm] { model.batchNorms }

    /// The replica that micro-step `micro` of this rank stands for: micro · ranks + rank.
    func replica(micro: Int) -> Int { micro * ranks + rank }

    /// This rank's training nodes in micro-step `micro` of step `step`: its seeds (mini-batches),
    /// or, full batch, a contiguous slice of the epoch's permutation, part micro·ranks + rank of
    /// ranks × `--grad-accum`.
    func trainingNodes(step: Int, micro: Int) -> [Int32] {
        if let seedSampler, let batchSize {
            let epoch = step / seedSampler.stepsPerEpoch
            if permutation?.epoch != epoch { permutation = (epoch, seedSampler.permutation(forEpoch: epoch)) }
            return seedSampler.indices(in: permutation!.order, step: step % seedSampler.stepsPerEpoch, rank: replica(micro: micro),
                                       batchSize: batchSize).map { dataset.train[$0] }
        }
        var generator = SeededGenerator(seed: options.seed, 0x6761_7470, UInt64(step))
        var order = dataset.train
        order.shuffle(using: &generator)
        return contiguousShare(of: order, part: replica(micro: micro), parts: ranks * options.gradientAccumulation)
    }

    public func targetCount(step: Int, micro: Int) -> Int { trainingNodes(step: step, micro: micro).count }

    /// The graphs (one per layer), node ids and features this rank trains on in micro-step `micro`
    /// of step `step`, augmented. `nodes`: the global id of each local node (nil: the whole graph);
    /// the logits' rows are the seeds' when mini-batching, else `nodes`'.
    func trainingInput(seeds: [Int32], step: Int, micro: Int) -> (blocks: [CSRGraph], nodes: [Int32]?, features: CSRMatrix) {
        var generator = SeededGenerator(seed: options.seed, 0x6175_6767, UInt64(replica(micro: micro)), UInt64(step))
        let dropEdge = options.augmentation["drop-edge"] ?? 0
        if let blockSampler {
            let sampled = blockSampler.sample(seeds: seeds, layers: model.layerCount, fanout: fanout, generator: &generator)
            let blocks = dropEdge > 0 ? sampled.blocks.map { $0.dropEdges(probability: dropEdge, generator: &generator) } : sampled.blocks
            return (blocks, sampled.nodes, maskingFeatures(dataset.features.gatheringRows(sampled.nodes), generator: &generator))
        }
        var local: CSRGraph
        var nodes: [Int32]? = nil
        var features: CSRMatrix
        // Degree-normalised weights are computed after DropEdge, on the whole graph.
        let base = dropEdge > 0 && model.normalizesGraph
            ? model.propagationGraph(patternGraph.dropEdges(probability: dropEdge, generator: &generator))
            : graph
        if ranks == 1 && fanout == nil && options.gradientAccumulation == 1 {
            local = base
            features = dataset.features
        } else {
            let sub = base.subgraph(rows: seeds, hops: model.layerCount, fanout: fanout, generator: &generator)
            local = sub.graph
            nodes = sub.nodes
            features = dataset.features.gatheringRows(sub.nodes)
        }
        if dropEdge > 0 && !model.normalizesGraph {
            local = local.dropEdges(probability: dropEdge, generator: &generator)
        }
        return ([CSRGraph](repeating: local, count: model.layerCount), nodes, maskingFeatures(features, generator: &generator))
    }

    /// `features` with `--augment feature-mask=P`'s columns dropped, each with probability P.
    func maskingFeatures(_ features: CSRMatrix, generator: inout SeededGenerator) -> CSRMatrix {
        guard let p = options.augmentation["feature-mask"], p > 0 else { return features }
        return features.maskingColumns((0..<features.columnCount).map { _ in generator.nextUniform() >= p })
    }

    public func trainMicroStep(step: Int, micro: Int, normalizer: Float, reducer: GradientSink?) throws -> Double {
        let seeds = trainingNodes(step: step, micro: micro)
        guard !seeds.isEmpty else { return 0 }   // more replicas than training nodes: this one adds nothing
        let input = trainingInput(seeds: seeds, step: step, micro: micro)
        reducer?.phaseEnded("data")
        model.phases = reducer
        model.mode = .training
        model.randomContext = RandomContext(seed: options.seed, rank: replica(micro: micro), step: step)
        let logits = model.forward(features: input.features, blocks: input.blocks)
        var targets = [Int32](repeating: -100, count: logits.rowCount)
        for (index, node) in seeds.enumerated() {
            targets[input.nodes == nil ? Int(node) : index] = dataset.labels[Int(node)]
        }
        let value = loss.forward(logits: logits, targets: targets, normalizer: normalizer)
        reducer?.phaseEnded("loss")
        model.backward(loss.backward())
        reducer?.phaseEnded("backward")
        return value
    }

    /// Loss and accuracy of every split on the whole graph in evaluation mode (the same on every rank).
    public func evaluate(communicator: Communicator) throws -> [String: Double] {
        evaluate(onGraph: graph)
    }

    /// Loss and accuracy of every split with the model propagating over `propagation` (a graph made
    /// by `model.propagationGraph`, such as a rewired one), in evaluation mode, by layer-wise inference.
    public func evaluate(onGraph propagation: CSRGraph) -> [String: Double] {
        model.mode = .evaluation
        defer { model.mode = .training }
        let logits = model.layerwiseLogits(features: dataset.features, graph: propagation, entriesPerChunk: Self.entriesPerChunk)
        var result: [String: Double] = [:]
        for (name, nodes) in [("train", dataset.train), ("val", dataset.validation), ("test", dataset.test)] {
            var targets = [Int32](repeating: -100, count: logits.rowCount)
            for node in nodes { targets[Int(node)] = dataset.labels[Int(node)] }
            result["\(name)_loss"] = loss.forward(logits: logits, targets: targets, normalizer: Float(max(nodes.count, 1)))
            let K = logits.columnCount
            var correct = 0
            for node in nodes {
                let row = logits.data + Int(node) * K
                let predicted = (0..<K).max { row[$0] < row[$1] }!
                if predicted == Int(dataset.labels[Int(node)]) { correct += 1 }
            }
            result["\(name)_accuracy"] = Double(correct) / Double(max(nodes.count, 1))
        }
        return result
    }

    /// Puts the selected epoch's parameters back (no-op before any selection).
    public func restoreSelectedParameters() {
        if let selectedParameters { arena.allValues.assign(selectedParameters) }
    }

    /// Counts evaluations, one an epoch (`replica train gat` evaluates at the end of each); the
    /// selected epoch is the one `step` ends (or falls in, for a last, partial epoch).
    public func shouldStop(after evaluation: [String: Double], step: Int) -> Bool {
        let accuracy = evaluation["val_accuracy"] ?? 0, validationLoss = evaluation["val_loss"] ?? .infinity
        if accuracy >= bestAccuracy || validationLoss <= lowestLoss {
            if accuracy >= bestAccuracy && validationLoss <= lowestLoss {
                selected = evaluation
                selectedEpoch = (step + stepsPerEpoch - 1) / stepsPerEpoch
                if let kept = selectedParameters { kept.assign(arena.allValues) } else { selectedParameters = arena.allValues.copy() }
            }
            bestAccuracy = max(bestAccuracy, accuracy)
            lowestLoss = min(lowestLoss, validationLoss)
            epochsWithoutImprovement = 0
            return false
        }
        epochsWithoutImprovement += 1
        return patience > 0 && epochsWithoutImprovement >= patience
    }
}
