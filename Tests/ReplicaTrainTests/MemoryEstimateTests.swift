import Foundation
import Testing
import ReplicaCore
import ReplicaData
import ReplicaModels
import ReplicaNN
import ReplicaTrain
import _ReplicaTestSupport

/// The memory preflight's counts (docs/memory.md): the parameters and buffers every estimate
/// counts from a configuration are those of the model built from it, and absurd sizes give
/// absurd estimates rather than overflow traps.
@Suite struct MemoryEstimateTests {
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
}
