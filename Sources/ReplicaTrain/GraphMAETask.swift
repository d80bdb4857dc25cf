import Foundation
import ReplicaCore
import ReplicaData
import ReplicaDistributed
import ReplicaModels
import ReplicaNN

/// GraphMAE self-supervised pre-training (`replica train graphmae`), one optimizer step per epoch
/// over the whole graph, then a linear probe on the frozen embeddings.
///
/// Data parallelism: every rank holds the whole graph and draws its own mask from (seed, rank,
/// epoch), so R ranks reconstruct R independent masks per step. A micro-step (`--grad-accum`) is
/// one more such replica: micro-step m of rank r draws its mask, dropout and DropEdge as rank
/// m·R + r would, so 1 rank × 2 micro-steps computes exactly what 2 ranks compute. A rank's loss is the sum over its
/// mask nodes divided by the global number of mask nodes (`targetCount` is this rank's count), so
/// the summed gradient is the mean over all ranks' masks: with one rank, the authors' full-batch
/// step. `evaluate` is cheap (the reconstruction loss of one fixed mask in evaluation mode); the
/// probe (`probe(options:)`) runs once, after training.
public final class GraphMAETask: DataParallelTask {
    /// The data set with row-normalised features (when asked), as the authors' DGL Cora.
    public let dataset: NodePropertyDataset
    /// Symmetric, with one self-loop per node (the authors' `preprocess`). [N, N]
    public let graph: CSRGraph
    public let model: GraphMAE
    let options: TrainingOptions
    let rank: Int
    let ranks: Int
    /// The masks of the step last asked for, by micro-step: the loop asks for each twice (the
    /// global count, then the micro-step), so none is drawn twice.
    private var drawn: (step: Int, masks: [Int: GraphMAEMask]) = (-1, [:])

    public var taskName: String { "graphmae" }
    public var arena: ParameterArena { model.arena }
    public var throughputUnit: String { "nodes" }
    public var stepsPerEpoch: Int { 1 }
    public var unitsPerMicroStep: Int { dataset.nodeCount }
    /// Every step masks and reconstructs the whole graph, however many ranks share it.
    public var globalBatch: Int? { nil }
    public var batchNorms: [BatchNorm] { [] }
    public var extraCheckpointTensors: [(String, Tensor)] { [] }

    /// `normalizeFeatures` divides each node's features by their sum (the authors' Cora, from DGL).
    public init(dataset original: NodePropertyDataset, config baseConfig: GraphMAEConfig, options: TrainingOptions,
                normalizeFeatures: Bool = true, rank: Int, ranks: Int) throws {
        var dataset = original
        if normalizeFeatures { dataset.features = dataset.features.rowNormalized() }
        guard Int(Double(baseConfig.maskRate) * Double(dataset.nodeCount)) >= 1 else {
            throw UserError("\(dataset.name): a mask rate of \(baseConfig.maskRate) masks no node of \(dataset.nodeCount); raise --mask-rate")
        }
        guard !dataset.train.isEmpty, !dataset.validation.isEmpty, !dataset.test.isEmpty else {
            throw UserError("\(dataset.name): the linear probe needs train, validation and test nodes")
        }
        self.dataset = dataset
        self.options = options
        self.rank = rank
        self.ranks = ranks
        var config = baseConfig
        config.featureCount = dataset.featureCount
        graph = dataset.symmetricGraphWithSelfLoops
        model = GraphMAE(config)
        model.initialize(seed: options.seed)
    }

    public var configuration: [String: String] {
        let c = model.config
        return ["task": "graphmae", "data": dataset.name, "nodes": "\(dataset.nodeCount)", "features": "\(c.featureCount)",
                "hidden": "\(c.hidden)", "heads": "\(c.heads)", "layers": "\(c.layerCount)", "dropout": "\(c.inputDropout)",
                "attention_dropout": "\(c.attentionDropout)", "mask_rate": "\(c.maskRate)", "replace_rate": "\(c.replaceRate)",
                "gamma": "\(c.gamma)"]
    }

    public var checkpointState: [String: Any] {
        ["config": Checkpoint.jsonObject(model.config)]
    }

    /// The replica that micro-step `micro` of this rank stands for: micro · ranks + rank.
    func replica(micro: Int) -> Int { micro * ranks + rank }

    /// This rank's mask in micro-step `micro` of epoch `step`, drawn from (seed, replica, step).
    public func mask(step: Int, micro: Int = 0) -> GraphMAEMask {
        if drawn.step == step, let mask = drawn.masks[micro] { return mask }
        var generator = SeededGenerator(seed: options.seed, 0x6d61_736b, UInt64(replica(micro: micro)), UInt64(step))
        let c = model.config
        let mask = GraphMAEMask(nodeCount: dataset.nodeCount, maskRate: c.maskRate, replaceRate: c.replaceRate,
                                generator: &generator)
        if drawn.step != step { drawn = (step, [:]) }
        drawn.masks[micro] = mask
        return mask
    }

    public func targetCount(step: Int, micro: Int) -> Int { mask(step: step, micro: micro).maskNodes.count }

    public func trainMicroStep(step: Int, micro: Int, normalizer: Float, reducer: GradientSink?) throws -> Double {
        let mask = mask(step: step, micro: micro)
        model.mode = .training
        model.randomContext = RandomContext(seed: options.seed, rank: replica(micro: micro), step: step)
        var encoderGraph = graph
        if let q = options.augmentation["drop-edge"], q > 0 {
            // The encoder sees the graph after DropEdge, the decoder the whole graph (edcoder.py).
            var generator = SeededGenerator(seed: options.seed, 0x6475_6467, UInt64(replica(micro: micro)), UInt64(step))
            encoderGraph = graph.dropEdges(probability: q, generator: &generator)
        }
        reducer?.phaseEnded("data")
        model.phases = reducer
        let value = model.forward(features: dataset.features, graph: encoderGraph, mask: mask, normalizer: normalizer,
                                  decoderGraph: graph)
        reducer?.phaseEnded("loss")
        try model.backward { offset in try reducer?.gradientsReady(downTo: offset) }
        return value
    }

    /// The reconstruction loss of one fixed mask (from the seed alone) in evaluation mode: cheap,
    /// and the same on every rank.
    public func evaluate(communicator: Communicator) throws -> [String: Double] {
        model.mode = .evaluation
        defer { model.mode = .training }
        var generator = SeededGenerator(seed: options.seed, 0x6576_616c)
        let c = model.config
        let mask = GraphMAEMask(nodeCount: dataset.nodeCount, maskRate: c.maskRate, replaceRate: c.replaceRate,
                                generator: &generator)
        let value = model.forward(features: dataset.features, graph: graph, mask: mask,
                                  normalizer: Float(max(mask.maskNodes.count, 1)))
        return ["reconstruction_loss": value]
    }

    /// The linear probe on the current encoder's embeddings (deterministic from `options.seed`).
    public func probe(options probeOptions: LinearProbeOptions) -> LinearProbeResult {
        let embeddings = model.embed(features: dataset.features, graph: graph)
        return LinearProbe(options: probeOptions).run(embeddings: embeddings, labels: dataset.labels,
                                                      classCount: dataset.classCount, train: dataset.train,
                                                      validation: dataset.validation, test: dataset.test)
    }
}

/// The linear probe's settings. Defaults: GraphMAE's Cora configuration (lr_f, weight_decay_f, max_epoch_f).
public struct LinearProbeOptions: Sendable, Equatable {
    public var epochs = 300
    public var learningRate: Float = 0.01
    public var weightDecay: Float = 1e-4       // Adam's L2 term, on the weight
    public var seed: UInt64 = 0
    public init() {}
}

/// What the probe found.
public struct LinearProbeResult: Sendable, Equatable {
    /// Test accuracy after the epoch with the best validation accuracy (the last of ties): GraphMAE's `estp_test_acc`.
    public var testAccuracy: Double
    /// The best validation accuracy.
    public var validationAccuracy: Double
    /// Test accuracy after the last epoch (GraphMAE's `final_acc`).
    public var finalTestAccuracy: Double
    /// The epoch (1-based) of the best validation accuracy.
    public var bestEpoch: Int
}

/// Logistic regression on frozen embeddings, as GraphMAE's `linear_probing_for_transductive_node_classiifcation`.
///
/// A `Linear(D, classes)` with bias, PyTorch's default initialisation, trained full-batch on the
/// training nodes with Adam and cross-entropy; after each step, the accuracy on the validation
/// and test nodes. Deterministic from `options.seed` (so the same on every rank).
public struct LinearProbe {
    public let options: LinearProbeOptions

    public init(options: LinearProbeOptions) { self.options = options }

    /// embeddings [N, D], labels [N]
    public func run(embeddings: Tensor, labels: [Int32], classCount: Int, train: [Int32], validation: [Int32],
                    test: [Int32]) -> LinearProbeResult {
        let D = embeddings.columnCount
        let arena = ParameterArena()
        let linear = Linear("probe", inputs: D, outputs: classCount, arena: arena)
        arena.allocate()
        var generator = SeededGenerator(seed: options.seed, 0x7072_6f62)
        linear.initializeUniform(using: &generator)
        let optimizer = Adam(beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: options.weightDecay)
        let loss = CrossEntropy()
        let trainInputs = embeddings.gatheringRows(train), trainTargets = train.map { labels[Int($0)] }
        let evaluated = validation + test
        let evaluationInputs = embeddings.gatheringRows(evaluated)
        var result = LinearProbeResult(testAccuracy: 0, validationAccuracy: 0, finalTestAccuracy: 0, bestEpoch: 0)
        var bestValidation = -1.0
        for epoch in 1...max(options.epochs, 1) {
            arena.zeroGradients()
            let logits = linear.forward(trainInputs)
            _ = loss.forward(logits: logits, targets: trainTargets, normalizer: Float(train.count))
            _ = linear.backward(loss.backward())
            optimizer.step(arena: arena, learningRate: options.learningRate)
            let predictions = argmaxRows(linear.forward(evaluationInputs))
            func accuracy(_ range: Range<Int>) -> Double {
                let correct = range.filter { predictions[$0] == labels[Int(evaluated[$0])] }.count
                return Double(correct) / Double(max(range.count, 1))
            }
            let validationAccuracy = accuracy(0..<validation.count)
            let testAccuracy = accuracy(validation.count..<evaluated.count)
            if validationAccuracy >= bestValidation {
                bestValidation = validationAccuracy
                result.validationAccuracy = validationAccuracy
                result.testAccuracy = testAccuracy
                result.bestEpoch = epoch
            }
            result.finalTestAccuracy = testAccuracy
        }
        return result
    }
}

/// The index of each row's largest entry (the first of ties). [N, K] -> [N]
func argmaxRows(_ logits: Tensor) -> [Int32] {
    let K = logits.columnCount
    return (0..<logits.rowCount).map { row in
        let z = logits.data + row * K
        var best = 0
        for k in 1..<K where z[k] > z[best] { best = k }
        return Int32(best)
    }
}

