import Foundation
import Testing
import ReplicaCore
import ReplicaData
import ReplicaModels
import ReplicaNN
@testable import ReplicaTrain
import _ReplicaTestSupport

/// The bytes of the distinct number buffers reachable from a value through its stored properties
/// (by `Mirror`): tensors by their storage, arrays of numbers by their buffer, each once; the
/// parameter arena is left out. What a task holds, measured rather than counted.
struct RetainedBuffers {
    private var objects = Set<ObjectIdentifier>()
    private var buffers = Set<UnsafeRawPointer>()
    private(set) var bytes = 0

    init(_ root: Any) { visit(root) }

    private mutating func add(_ address: UnsafeRawPointer?, bytes count: Int) {
        if let address, buffers.insert(address).inserted { bytes += count }
    }

    private mutating func addArray<Element>(_ array: [Element]) {
        array.withUnsafeBytes { add($0.baseAddress, bytes: $0.count) }
    }

    private mutating func visit(_ value: Any) {
        switch value {
        case is ParameterArena: return
        case let tensor as Tensor: add(UnsafeRawPointer(tensor.storage.pointer), bytes: 4 * tensor.storage.count)
        case let storage as TensorStorage: add(UnsafeRawPointer(storage.pointer), bytes: 4 * storage.count)
        case let array as [Float]: addArray(array)
        case let array as [Int32]: addArray(array)
        case let array as [Int]: addArray(array)
        case let array as [Double]: addArray(array)
        case let array as [Bool]: addArray(array)
        default:
            var mirror: Mirror? = Mirror(reflecting: value)
            if mirror?.displayStyle == .class, !objects.insert(ObjectIdentifier(value as AnyObject)).inserted { return }
            while let current = mirror {
                for child in current.children { visit(child.value) }
                mirror = current.superclassMirror
            }
        }
    }
}

/// The memory preflight's counts (docs/memory.md): the parameters and buffers every estimate
/// counts from a configuration are those of the model built from it, the activations cover what
/// a training step leaves held, and absurd sizes give absurd estimates rather than overflow traps.
@Suite struct MemoryEstimateTests {
    /// The check compares what is still to be allocated, the estimate less the runtime already
    /// resident, with 90% of what is available: a rank that has loaded 6 GiB of data and needs 3 GiB
    /// more fits in 10 GiB available on 2 ranks (6 GiB still to come), not on 4 (12 GiB).
    @Test func theCheckCountsTheRuntimeAsAlreadyResident() throws {
        let GiB = 1 << 30
        let estimate = MemoryEstimate(parameters: GiB, gradients: GiB, optimizerState: GiB, activations: 0, communication: 0,
                                      runtime: 6 * GiB)
        try estimate.check("this run", localRanks: 2, available: 10 * GiB, advice: "")
        #expect(throws: UserError.self) { try estimate.check("this run", localRanks: 4, available: 10 * GiB, advice: "") }
        #expect(throws: UserError.self) { try estimate.check("this run", localRanks: 2, available: 6 * GiB, advice: "") }
    }

    @Test(arguments: [NormKind.layer, .batch])
    func gptParametersAreTheBuiltModels(norm: NormKind) {
        var config = GPTConfig()
        config.norm = norm
        let model = GPT(config)
        #expect(config.parameterCount == model.arena.count)
        let (estimate, _) = config.memoryEstimate(options: TrainingOptions(), ranks: 1)
        #expect(estimate.parameters == 4 * (model.arena.count + model.arena.bufferCount))
    }

    static let gatConfigs: [GATConfig] = {
        var configs = [GATConfig()]                   // the GAT paper's Cora model, train gat's default
        var batch = GATConfig()
        batch.norm = .batch
        batch.layerCount = 3
        configs.append(batch)
        var layer = GATConfig()
        layer.norm = .layer
        layer.outputHeads = 8
        configs.append(layer)
        var single = GATConfig()
        single.layerCount = 1
        single.outputHeads = 3
        configs.append(single)
        return configs
    }()

    @Test(arguments: gatConfigs)
    func gatParametersAreTheBuiltModels(config: GATConfig) {
        let model = GAT(config)
        #expect(config.parameterCount == model.arena.count)
        #expect(config.bufferCount == model.arena.bufferCount)
    }

    static let graphNetworkConfigs: [GraphNetworkConfig] = {
        var configs = [GraphNetworkConfig()]          // Kipf & Welling's GCN, train gat --model gcn's default
        var deep = GraphNetworkConfig()
        deep.layerCount = 4
        deep.bias = true
        configs.append(deep)
        var single = GraphNetworkConfig()
        single.layerCount = 1
        configs.append(single)
        configs += [GraphNetworkConfig.gat(layers: 1), .gat(layers: 3)]
        for layers in [1, 3] {
            var transformer = GraphNetworkConfig.gat(layers: layers)
            transformer.kind = .transformer
            configs.append(transformer)
        }
        return configs
    }()

    @Test(arguments: graphNetworkConfigs)
    func graphNetworkParametersAreTheBuiltModels(config: GraphNetworkConfig) {
        let model = GraphNetwork(config)
        #expect(config.parameterCount == model.arena.count)
        #expect(model.arena.bufferCount == 0)
    }

    @Test(arguments: [1, 2, 3])
    func graphMAEParametersAreTheBuiltModels(layers: Int) {
        var config = GraphMAEConfig()                 // the authors' Cora model, train graphmae's default
        config.layerCount = layers
        let model = GraphMAE(config)
        #expect(config.parameterCount == model.arena.count)
        #expect(model.arena.bufferCount == 0)
    }

    static let transformerConfigs: [TransformerConfig] = {
        var configs = [TransformerConfig()]           // train translate's default (the small preset's model)
        var batch = TransformerConfig()
        batch.norm = .batch
        batch.scorer = .additive
        batch.encoderLayers = 2
        configs.append(batch)
        return configs
    }()

    @Test(arguments: transformerConfigs)
    func transformerParametersAreTheBuiltModels(config: TransformerConfig) {
        let model = Seq2SeqTransformer(config)
        #expect(config.parameterCount == model.arena.count)
        #expect(config.bufferCount == model.arena.bufferCount)
    }

    static let maskedLanguageModelConfigs: [MaskedLanguageModelConfig] = {
        var configs = [MaskedLanguageModelConfig()]   // train mlm's default
        var variant = MaskedLanguageModelConfig()
        variant.norm = .batch
        variant.scorer = .additive
        variant.positions = .sinusoidal
        configs.append(variant)
        return configs
    }()

    @Test(arguments: maskedLanguageModelConfigs)
    func maskedLanguageModelParametersAreTheBuiltModels(config: MaskedLanguageModelConfig) {
        let model = MaskedLanguageModel(config)
        #expect(config.parameterCount == model.arena.count)
        #expect(config.bufferCount == model.arena.bufferCount)
    }

    @Test func cbowParametersAreTheBuiltModels() {
        let settings = CBOWSettings()                 // train cbow's default on Multi30k: 4,565 words
        var config = CBOWConfig()
        config.vocabularySize = 4565
        config.embedding = settings.embedding
        #expect(settings.parameterCount(vocabulary: 4565) == CBOW(config).arena.count)
    }

    @Test func theGraphSizeBoundsTheGraphTheLayersPropagateOver() throws {
        let cora = try NodePropertyDataset.cora()
        let size = GraphSize(cora), graph = cora.symmetricGraphWithSelfLoops
        #expect(size.nodes == graph.rowCount && size.featureNonzeros == cora.features.nonzeroCount)
        #expect(size.entries >= graph.nonzeroCount && size.entries <= 2 * graph.nonzeroCount)
    }

    /// ogbn-products' sizes (2,449,029 nodes, 61,859,140 edges both ways plus self-loops, 100
    /// dense features): mini-batches of 1,024 seeds with fanout 15,10 need the sampled blocks
    /// (at most 1024 × 16 × 11 nodes and entries) and the whole graph's copies, not a
    /// whole-graph step; without a fanout the bound is the whole graph.
    @Test func miniBatchesNeedTheSampledGraphNotTheWholeOne() {
        let products = GraphSize(nodes: 2_449_029, entries: 2 * 61_859_140 + 2_449_029, features: 100, featureNonzeros: 244_902_900)
        let sampled = products.sampled(batch: 1024, fanout: [15, 10], layers: 2)
        #expect(sampled.nodes == 1024 * 16 * 11 && sampled.entries == 1024 * 16 * 11)
        #expect(sampled.featureNonzeros == 100 * sampled.nodes)
        #expect(products.sampled(batch: 1024, fanout: nil, layers: 2) == products)
        var gat = GATConfig()
        gat.featureCount = 100
        gat.classCount = 47
        let full = gat.memoryEstimate(graph: products, options: TrainingOptions(), fanout: nil, ranks: 2).estimate
        let mini = gat.memoryEstimate(graph: products, options: TrainingOptions(), fanout: [15, 10], batchSize: 1024, ranks: 2).estimate
        #expect(mini.activations < full.activations / 5, "\(mini.activations) against \(full.activations)")
        #expect(mini.activations < 8 << 30, "fits a 24 GiB machine twice over")
    }

    @Test func absurdSizesGiveAbsurdEstimatesNotTraps() {
        let huge = Int.max / 4
        var gat = GATConfig()
        gat.heads = huge
        gat.hidden = huge
        let graph = GraphSize(nodes: huge, entries: huge, features: 1433, featureNonzeros: huge)
        let (estimate, advice) = gat.memoryEstimate(graph: graph, options: TrainingOptions(), fanout: nil, ranks: 1)
        #expect(estimate.activations >= Int(1e18) && estimate.parameters > Int(1e17))
        #expect(advice.contains("--heads (\(huge))"))
        var transformer = TransformerConfig()
        transformer.embedding = huge
        #expect(transformer.activationBytes(tokens: huge, evaluationTokens: 4000) == Int(1e18))
        var options = TrainingOptions()
        options.batchSize = huge
        var mlm = MaskedLanguageModelConfig()
        mlm.layers = huge
        #expect(mlm.memoryEstimate(options: options, rate: 0.15, ranks: 1).estimate.total > Int(1e18))
        #expect(CBOWSettings().activationBytes(vocabulary: huge, trainingWords: 10, sentences: 1, batch: huge, ranks: 1) == Int(1e18))
        var mae = GraphMAEConfig()
        mae.hidden = huge
        #expect(mae.activationBytes(graph: graph) == Int(1e18))
    }

    // MARK: Activations against what a training step leaves held

    /// What one training micro-step leaves held by `task` beyond what it held before: the caches
    /// forward keeps for backward (the buffers backward allocates are freed by then).
    static func cachedBytes<Task: DataParallelTask>(_ task: Task) throws -> Int {
        let before = RetainedBuffers(task).bytes
        _ = try task.trainMicroStep(step: 0, micro: 0, normalizer: Float(max(task.targetCount(step: 0, micro: 0), 1)), reducer: nil)
        return RetainedBuffers(task).bytes - before
    }

    /// The estimate counts the caches and adds backward's buffers and one layer more, each about
    /// the size of the caches at most: it is at least what a step leaves held and, on a
    /// configuration whose bounds are tight, within 3.5× of it (GAT, GCN and MLM 2–2.6×,
    /// translate 1.6×, GraphMAE, whose backward holds three [N, F] gradients, 3×).
    static func expectSane(estimate: Int, cached: Int, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let ratio = Double(estimate) / Double(max(cached, 1))
        #expect(cached > 0 && ratio >= 1 && ratio <= 3.5, "\(what): estimate \(estimate) B for \(cached) B held (×\(ratio))",
                sourceLocation: sourceLocation)
    }

    static func options(batch: Int = 1) -> TrainingOptions {
        var options = TrainingOptions()
        options.batchSize = batch
        options.progress = .none
        return options
    }

    /// The task's copies of the features and graph the graph estimates count (`GraphSize`), which exist before the step.
    static func taskCopies(_ dataset: NodePropertyDataset) -> Int {
        let size = GraphSize(dataset)
        return 4 * (size.featureNonzeros + size.entries + 2 * size.nodes)
    }

    @Test func gatActivationsCoverWhatAStepHolds() throws {
        let cora = try NodePropertyDataset.cora()
        var config = GATConfig()
        config.featureCount = cora.featureCount
        config.classCount = cora.classCount
        let task = try GATTask(dataset: cora, model: GAT(config), options: Self.options(), fanout: nil, patience: 0, rank: 0, ranks: 1)
        Self.expectSane(estimate: config.activationBytes(graph: GraphSize(cora)) - Self.taskCopies(cora), cached: try Self.cachedBytes(task), "GAT")
    }

    @Test func gcnActivationsCoverWhatAStepHolds() throws {
        let cora = try NodePropertyDataset.cora()
        var config = GraphNetworkConfig()
        config.hidden = 64
        let task = try GATTask(dataset: cora, model: GraphNetwork(config), options: Self.options(), fanout: nil, patience: 0, rank: 0, ranks: 1)
        // The normalised edge weights, counted with the activations, exist before the step too.
        let weights = 4 * GraphSize(cora).entries
        Self.expectSane(estimate: config.activationBytes(graph: GraphSize(cora)) - Self.taskCopies(cora) - weights,
                        cached: try Self.cachedBytes(task), "GCN")
    }

    @Test func graphMAEActivationsCoverWhatAStepHolds() throws {
        let cora = try NodePropertyDataset.cora()
        var config = GraphMAEConfig()
        config.hidden = 64
        config.heads = 2
        config.featureCount = cora.featureCount
        let task = try GraphMAETask(dataset: cora, config: config, options: Self.options(), rank: 0, ranks: 1)
        Self.expectSane(estimate: config.activationBytes(graph: GraphSize(cora)) - Self.taskCopies(cora), cached: try Self.cachedBytes(task), "GraphMAE")
    }

    /// Sentences of exactly `words` words from a cycle of 24, so that every batch reaches the longest length.
    static func fixedLengthSentences(count: Int, words: Int) -> [String] {
        let names = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima",
                     "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey", "yankee"]
        return (0..<count).map { start in (0..<words).map { names[(start + $0) % names.count] }.joined(separator: " ") }
    }

    @Test func translateActivationsCoverWhatAStepHolds() throws {
        let sentences = Self.fixedLengthSentences(count: 300, words: 8)
        let corpus = ParallelCorpus(source: sentences, target: sentences)
        let data = TranslationData(train: corpus, validation: corpus, test: corpus)
        var config = TransformerConfig()
        (config.embedding, config.heads, config.feedForward, config.encoderLayers, config.decoderLayers) = (32, 2, 64, 2, 2)
        config.maximumLength = 8                      // every sentence is cut to 8 tokens a side: the bound is reached
        let tokens = 80                               // 10 sentences of 8 padded tokens
        let task = TranslateTask(data: data, vocabularySize: 120, config: config, options: Self.options(batch: tokens),
                                 tokensPerRank: tokens, labelSmoothing: 0.1, rank: 0, ranks: 1)
        config.vocabularySize = task.tokenizer.count
        Self.expectSane(estimate: config.activationBytes(tokens: tokens, evaluationTokens: 0), cached: try Self.cachedBytes(task), "translate")
    }

    @Test func mlmActivationsCoverWhatAStepHolds() throws {
        let splits = SentenceSplits(train: Self.fixedLengthSentences(count: 300, words: 10), validation: Self.fixedLengthSentences(count: 20, words: 10),
                                    description: "fixed length")
        var config = MaskedLanguageModelConfig()
        (config.embedding, config.heads, config.feedForward, config.layers) = (32, 2, 64, 2)
        config.maximumLength = 8                      // every sentence is cut to 8 tokens
        let task = MLMTask(splits: splits, vocabularySize: 120, config: config, options: Self.options(batch: 16), rank: 0, ranks: 1)
        config.vocabularySize = task.tokenizer.count
        Self.expectSane(estimate: config.activationBytes(sentences: 16, evaluationSentences: 0, rate: BERTMasking.defaultRate),
                        cached: try Self.cachedBytes(task), "MLM")
    }
}
