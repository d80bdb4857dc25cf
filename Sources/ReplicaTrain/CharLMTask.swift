import Foundation
import ReplicaCore
import ReplicaData
import ReplicaDistributed
import ReplicaModels
import ReplicaNN

/// Character-level language modelling with a GPT (`replica train charlm`).
///
/// The text is split 90/10 into train and validation (nanoGPT's prepare.py). An example is a
/// block start in the training text; each epoch visits them in a permutation from (seed, epoch).
public final class CharLMTask: DataParallelTask, MatmulCounting {
    public let model: GPT
    public let vocabulary: CharacterVocabulary
    public let train: TokenBlocks
    public let validation: TokenBlocks
    public let sampler: DistributedSampler
    let loss = CrossEntropy()
    let options: TrainingOptions
    let rank: Int
    let ranks: Int
    let dataDescription: String
    private var permutationEpoch = -1
    private var permutation: [Int32] = []

    public var taskName: String { "charlm" }
    public var arena: ParameterArena { model.arena }
    public var throughputUnit: String { "tokens" }
    public var stepsPerEpoch: Int { sampler.stepsPerEpoch }
    public var unitsPerMicroStep: Int { options.batchSize * model.config.blockSize }
    public var globalBatch: Int? { sampler.globalBatch }

    /// Builds the model and data; `text` is the whole corpus. `vocabulary` is `text`'s characters
    /// when the caller has built them already (the commands do, for the memory estimate); nil builds them.
    public init(text: String, vocabulary existing: CharacterVocabulary? = nil, dataDescription: String, config baseConfig: GPTConfig,
                options: TrainingOptions, rank: Int, ranks: Int) throws {
        vocabulary = existing ?? CharacterVocabulary(text: text)
        var config = baseConfig
        config.vocabularySize = vocabulary.count
        let tokens = try vocabulary.encode(text)
        let split = tokens.count * 9 / 10
        train = TokenBlocks(tokens: Array(tokens[..<split]), blockSize: config.blockSize)
        validation = TokenBlocks(tokens: Array(tokens[split...]), blockSize: config.blockSize)
        let globalBatch = options.batchSize * ranks * options.gradientAccumulation
        guard train.exampleCount >= globalBatch, validation.exampleCount >= 1 else {
            throw UserError("\(dataDescription): \(tokens.count) characters are too few for --block-size \(config.blockSize) and a global batch of \(globalBatch) (the 10% validation split needs more than one block); use a longer text or smaller --block-size")
        }
        self.dataDescription = dataDescription
        self.options = options
        self.rank = rank
        self.ranks = ranks
        sampler = DistributedSampler(exampleCount: train.exampleCount, globalBatch: globalBatch, seed: options.seed)
        model = GPT(config)
        model.initialize(seed: options.seed)
    }

    public var batchNorms: [BatchNorm] { model.batchNorms }

    /// The replica that micro-step `micro` of this rank stands for (its slot of the global batch):
    /// micro · ranks + rank. Dropout and augmentation are keyed by it, so 1 rank × N micro-steps
    /// draws exactly what N ranks × 1 draw.
    func replica(micro: Int) -> Int { micro * ranks + rank }

    /// Text augmentation `substitute=P`: each input character becomes a random one with probability P,
    /// drawn from (seed, replica, step), so every rank augments its own shard differently.
    func augment(_ inputs: inout [Int32], step: Int, micro: Int) {
        guard let probability = options.augmentation["substitute"], probability > 0 else { return }
        var generator = SeededGenerator(seed: options.seed, 0x6175_6775, UInt64(replica(micro: micro)), UInt64(step), 0)
        for i in inputs.indices where generator.nextUniform() < probability {
            inputs[i] = Int32(generator.nextInt(below: vocabulary.count))
        }
    }

    public var configuration: [String: String] {
        let c = model.config
        return ["task": "charlm", "layers": "\(c.layerCount)", "heads": "\(c.headCount)", "embedding": "\(c.embedding)",
                "block_size": "\(c.blockSize)", "vocab_size": "\(c.vocabularySize)", "dropout": "\(c.dropout)",
                "norm": c.norm.rawValue, "train_tokens": "\(train.tokens.count)"]
    }

    public var checkpointState: [String: Any] {
        ["vocab": vocabulary.characters.map { String($0) }, "config": Checkpoint.jsonObject(model.config, adding: ["bias": false])]
    }

    /// nanoGPT's `lm_head.weight`: the tied token embedding, saved under its own name too.
    public var extraCheckpointTensors: [(String, Tensor)] {
        guard let wte = arena.slot(named: "transformer.wte.weight") else { return [] }
        return [("lm_head.weight", arena.value(wte))]
    }

    public func targetCount(step: Int, micro: Int) -> Int { unitsPerMicroStep }

    /// Every micro-step is a batch of full blocks: the same count each time.
    public func matmulFLOPs(step: Int, micro: Int) -> Double { model.config.matmulFLOPs(batch: options.batchSize) }

    /// This rank's block starts for micro-step `micro` of global step `step`.
    func starts(step: Int, micro: Int) -> [Int] {
        let epoch = step / sampler.stepsPerEpoch
        if epoch != permutationEpoch {
            permutation = sampler.permutation(forEpoch: epoch)
            permutationEpoch = epoch
        }
        // Micro-step m of rank r: slot (m · ranks + r) of the global batch, so 1 rank × N micro-steps
        // sees the same examples as N ranks × 1.
        return sampler.indices(in: permutation, step: step % sampler.stepsPerEpoch, rank: replica(micro: micro), batchSize: options.batchSize)
    }

    public func trainMicroStep(step: Int, micro: Int, normalizer: Float, reducer: GradientSink?) throws -> Double {
        var (inputs, targets) = train.batch(starts: starts(step: step, micro: micro))
        augment(&inputs, step: step, micro: micro)
        reducer?.phaseEnded("data")
        model.phases = reducer
        model.mode = .training
        model.randomContext = RandomContext(seed: options.seed, rank: replica(micro: micro), step: step)
        let B = options.batchSize, T = model.config.blockSize
        let logits = model.forward(inputs, batch: B, length: T)
        let value = loss.forward(logits: logits, targets: targets, normalizer: normalizer)
        reducer?.phaseEnded("loss")
        try model.backward(loss.backward()) { offset in try reducer?.gradientsReady(downTo: offset) }
        return value
    }

    /// Mean validation loss over `evaluationBatches` fixed, evenly spaced batches, split across ranks.
    public func evaluate(communicator: Communicator) throws -> [String: Double] {
        model.mode = .evaluation
        defer { model.mode = .training }
        let B = options.batchSize, T = model.config.blockSize
        let batches = max(1, options.evaluationBatches)
        let positions = batches * B
        let spacing = max(1, validation.exampleCount / positions)
        var sums = [0.0, 0.0]
        for batch in stride(from: rank, to: batches, by: ranks) {
            let starts = (0..<B).map { min((batch * B + $0) * spacing, validation.exampleCount - 1) }
            let (inputs, targets) = validation.batch(starts: starts)
            let logits = model.forward(inputs, batch: B, length: T)
            sums[0] += loss.forward(logits: logits, targets: targets, normalizer: 1)
            sums[1] += Double(targets.count)
        }
        try communicator.allReduce(&sums, .sum)
        return ["val_loss": sums[0] / sums[1]]
    }
}
