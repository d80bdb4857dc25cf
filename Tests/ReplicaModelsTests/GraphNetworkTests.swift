import Foundation
import Testing
import ReplicaCore
import ReplicaModels
import ReplicaNN
import _ReplicaTestSupport

@Suite struct GraphNetworkTests {
    static func gcn(_ configure: (inout GraphNetworkConfig) -> Void = { _ in }) -> GraphNetwork {
        var config = GraphNetworkConfig()
        configure(&config)
        return GraphNetwork(config)
    }

    @Test func weightDecayReachesTheFirstLayerOnly() {
        let model = Self.gcn { $0.layerCount = 3 }
        let decaying = model.arena.slots.filter(\.decays).map(\.name)
        #expect(decaying == ["net.layers.0.weight"], "\(decaying)")
    }

    /// Every kind of network, residual paths included, end to end against central differences.
    @Test(arguments: GraphLayerKind.allCases)
    func networkGradientsMatchFiniteDifferences(kind: GraphLayerKind) {
        var config = GraphNetworkConfig()
        config.kind = kind
        config.featureCount = 9
        config.classCount = 3
        config.hidden = 4
        config.heads = kind == .gcn ? 1 : 2
        config.layerCount = 4
        config.residual = true
        config.dropout = 0.3
        config.bias = true
        let model = GraphNetwork(config)
        var generator = SeededGenerator(seed: 51)
        model.arena.allValues.fillUniform(bound: 0.8, using: &generator)
        model.randomContext = RandomContext(seed: 3, rank: 0, step: 1)   // fixed dropout masks
        var offsets = [0], columns: [Int32] = [], values: [Float] = []
        for _ in 0..<7 {
            for f in 0..<9 where generator.nextUniform() < 0.4 { columns.append(Int32(f)); values.append(generator.nextUniform()) }
            offsets.append(columns.count)
        }
        let features = CSRMatrix(rowCount: 7, columnCount: 9, rowOffsets: offsets, columnIndices: columns, values: values)
        let pattern = CSRMatrix.graph(nodeCount: 7, sources: [0, 0, 1, 2, 3, 4, 5], targets: [1, 2, 3, 4, 5, 6, 6],
                                      symmetric: true, selfLoops: true)
        let graph = model.propagationGraph(pattern)
        let r = randomTensor([7, 3], seed: 52)
        let results = checkGradients(arena: model.arena, inputs: [], directions: 4,
            loss: { dot(model.forward(features: features, graph: graph), r) },
            gradients: { model.backward(model.forward(features: features, graph: graph).copyingFrom(r)); return [] })
        for result in results { #expect(result.relativeError < finiteDifferenceTolerance, "\(kind): \(result)") }
        #expect(model.lastHidden?.shape == [7, config.hidden * config.heads])
    }

    /// GAT's first-layer heads drop their own copies of the input by default (the GAT code's), or
    /// share one mask (`inputDropoutPerHead` false, PyG's); evaluation drops nothing either way, and
    /// a checkpoint's configuration without the key is the per-head default.
    @Test func gatHeadsShareOneInputMaskOnRequest() throws {
        var generator = SeededGenerator(seed: 53)
        var offsets = [0], columns: [Int32] = [], values: [Float] = []
        for _ in 0..<7 {
            for f in 0..<9 { columns.append(Int32(f)); values.append(generator.nextUniform()) }
            offsets.append(columns.count)
        }
        let features = CSRMatrix(rowCount: 7, columnCount: 9, rowOffsets: offsets, columnIndices: columns, values: values)
        let graph = CSRMatrix.graph(nodeCount: 7, sources: [0, 0, 1, 2, 3, 4, 5], targets: [1, 2, 3, 4, 5, 6, 6],
                                    symmetric: true, selfLoops: true)
        func logits(perHead: Bool, mode: Mode) -> [Float] {
            var config = GATConfig()
            (config.featureCount, config.classCount, config.hidden, config.heads) = (9, 3, 4, 4)
            config.inputDropoutPerHead = perHead
            let model = GAT(config)
            model.initialize(seed: 7)
            model.randomContext = RandomContext(seed: 3, rank: 0, step: 1)
            model.mode = mode
            return model.forward(features: features, graph: graph).scalars
        }
        #expect(logits(perHead: true, mode: .training) != logits(perHead: false, mode: .training))
        #expect(logits(perHead: false, mode: .training) == logits(perHead: false, mode: .training))
        #expect(logits(perHead: true, mode: .evaluation) == logits(perHead: false, mode: .evaluation))
        var json = String(decoding: try JSONEncoder().encode(GATConfig()), as: UTF8.self)
        json = json.replacingOccurrences(of: "\"input_dropout_per_head\":true,", with: "")
            .replacingOccurrences(of: ",\"input_dropout_per_head\":true", with: "")
        #expect(!json.contains("input_dropout_per_head"))
        #expect(try JSONDecoder().decode(GATConfig.self, from: Data(json.utf8)).inputDropoutPerHead)
    }
}

private extension Tensor {
    /// `other` itself (the loss Σ y·r has gradient r), after checking the shapes agree.
    func copyingFrom(_ other: Tensor) -> Tensor {
        precondition(shape == other.shape, "\(shape) vs \(other.shape)")
        return other
    }
}
