import Foundation
import Testing
import ReplicaCore
import ReplicaModels
import ReplicaNN
import _ReplicaTestSupport

/// Known values of the scaled cosine error, computed in Double.
private let lossValueTolerance = 1e-9

/// A random graph over `nodeCount` nodes (symmetric, self-loops) and random sparse features,
/// row-normalised, some rows empty.
private func smallGraph(nodeCount: Int, featureCount: Int, seed: UInt64) -> (graph: CSRGraph, features: CSRMatrix) {
    var generator = SeededGenerator(seed: seed)
    var sources: [Int32] = [], targets: [Int32] = []
    for _ in 0..<(2 * nodeCount) {
        sources.append(Int32(generator.nextInt(below: nodeCount)))
        targets.append(Int32(generator.nextInt(below: nodeCount)))
    }
    let graph = CSRMatrix.graph(nodeCount: nodeCount, sources: sources, targets: targets, symmetric: true, selfLoops: true)
    var offsets = [0], columns: [Int32] = [], values: [Float] = []
    for row in 0..<nodeCount {
        for column in 0..<featureCount where row != 3 && generator.nextUniform() < 0.5 {
            columns.append(Int32(column))
            values.append(0.5 + generator.nextUniform())
        }
        offsets.append(columns.count)
    }
    let features = CSRMatrix(rowCount: nodeCount, columnCount: featureCount, rowOffsets: offsets, columnIndices: columns,
                             values: values).rowNormalized()
    return (graph, features)
}

/// A tiny GraphMAE with random parameters (the mask token included) and the given dropout.
private func tinyModel(dropout: Float, layers: Int = 2) -> GraphMAE {
    var config = GraphMAEConfig()
    config.featureCount = 6
    config.hidden = 4
    config.heads = 2
    config.layerCount = layers
    config.inputDropout = dropout
    config.attentionDropout = dropout
    config.replaceRate = 0.34              // of 6 mask nodes: 3 token nodes, 2 noise nodes, 1 untouched
    let model = GraphMAE(config)
    var generator = SeededGenerator(seed: 77)
    model.arena.allValues.fillUniform(bound: 1, using: &generator)
    model.randomContext = RandomContext(seed: 5, rank: 1, step: 3)
    return model
}

@Suite struct GraphMAETests {
    @Test func theScaledCosineErrorMatchesKnownValues() {
        let loss = ScaledCosineError(gamma: 3)
        // Row 0 parallel to its target (loss 0), row 1 orthogonal (1), row 2 opposite (2³ = 8).
        let reconstruction = Tensor(shape: [3, 2], values: [2, 0, 0, 5, -1, 0])
        let targets = CSRMatrix(rowCount: 3, columnCount: 2, rowOffsets: [0, 1, 2, 3], columnIndices: [0, 0, 0], values: [1, 1, 1])
        let value = loss.forward(reconstruction: reconstruction, targets: targets, rows: [0, 1, 2], normalizer: 3)
        #expect(abs(value - 3) < lossValueTolerance)
        // cos 60°: (1 − 1/2)³ = 1/8, over a normalizer of 2.
        let sixty = Tensor(shape: [1, 2], values: [1, Float(3).squareRoot()])
        let single = CSRMatrix(rowCount: 1, columnCount: 2, rowOffsets: [0, 1], columnIndices: [0], values: [4])
        #expect(abs(loss.forward(reconstruction: sixty, targets: single, rows: [0], normalizer: 2) - 1.0 / 16) < 1e-7)
    }

    @Test(arguments: [Float(1), 2, 3])
    func theScaledCosineErrorGradientMatchesFiniteDifferences(gamma: Float) {
        let (_, features) = smallGraph(nodeCount: 7, featureCount: 5, seed: 3)
        let reconstruction = randomTensor([7, 5], seed: 4)
        let loss = ScaledCosineError(gamma: gamma)
        let rows: [Int32] = [0, 2, 5, 6]
        let results = checkGradients(arena: nil, inputs: [reconstruction], directions: 4,
            loss: { loss.forward(reconstruction: reconstruction, targets: features, rows: rows, normalizer: 3) },
            gradients: {
                _ = loss.forward(reconstruction: reconstruction, targets: features, rows: rows, normalizer: 3)
                return [loss.backward()]
            })
        for result in results { #expect(result.relativeError < finiteDifferenceTolerance, "γ \(gamma): \(result)") }
    }

    @Test func masksFollowTheAuthorsRecipe() {
        var generator = SeededGenerator(seed: 1)
        let mask = GraphMAEMask(nodeCount: 2708, maskRate: 0.5, replaceRate: 0.05, generator: &generator)
        #expect(mask.maskNodes.count == 1354)
        #expect(mask.tokenNodes.count == 1286 && mask.noiseNodes.count == 67 && mask.noiseSources.count == 67)
        #expect(Set(mask.maskNodes).count == 1354)
        #expect(Set(mask.tokenNodes).isDisjoint(with: mask.noiseNodes))
        #expect(Set(mask.tokenNodes).union(mask.noiseNodes).isSubset(of: mask.maskNodes))
        #expect(Set(mask.noiseSources).count == 67)
        #expect(mask.keptNodes.count == 1354 && Set(mask.keptNodes).isDisjoint(with: mask.maskNodes))

        let (_, features) = smallGraph(nodeCount: 10, featureCount: 6, seed: 2)
        let small = GraphMAEMask(nodeCount: 10, maskNodes: [1, 2, 4], tokenNodes: [2], noiseNodes: [4], noiseSources: [7])
        let corrupted = small.corrupting(features)
        #expect(corrupted.range(ofRow: 2).isEmpty)
        #expect(Array(corrupted.columnIndices[corrupted.range(ofRow: 4)]) == Array(features.columnIndices[features.range(ofRow: 7)]))
        #expect(Array(corrupted.values[corrupted.range(ofRow: 1)]) == Array(features.values[features.range(ofRow: 1)]))
    }

    @Test(arguments: [Float(0), 0.3])
    func modelGradientsMatchFiniteDifferences(dropout: Float) {
        let (graph, features) = smallGraph(nodeCount: 12, featureCount: 6, seed: 9)
        var generator = SeededGenerator(seed: 10)
        let mask = GraphMAEMask(nodeCount: 12, maskRate: 0.5, replaceRate: 0.34, generator: &generator)
        #expect(mask.tokenNodes.count == 3 && mask.noiseNodes.count == 2)
        for layers in [1, 2] {
            let model = tinyModel(dropout: dropout, layers: layers)
            let results = checkGradients(arena: model.arena, inputs: [], directions: 4,
                loss: { model.forward(features: features, graph: graph, mask: mask, normalizer: 5) },
                gradients: {
                    _ = model.forward(features: features, graph: graph, mask: mask, normalizer: 5)
                    model.backward()
                    return []
                })
            for result in results { #expect(result.relativeError < finiteDifferenceTolerance, "\(layers) layer(s): \(result)") }
        }
    }

    /// The mask token reaches the loss only through token·W: check its gradient on its own.
    @Test func theMaskTokenGradientMatchesFiniteDifferences() throws {
        let (graph, features) = smallGraph(nodeCount: 12, featureCount: 6, seed: 9)
        var generator = SeededGenerator(seed: 10)
        let mask = GraphMAEMask(nodeCount: 12, maskRate: 0.5, replaceRate: 0.34, generator: &generator)
        let model = tinyModel(dropout: 0)
        let token = try #require(model.arena.slot(named: "mask_token"))
        model.arena.zeroGradients()
        _ = model.forward(features: features, graph: graph, mask: mask, normalizer: 5)
        model.backward()
        let gradient = model.arena.gradient(token).copy(), value = model.arena.value(token)
        let epsilon: Float = 1e-3
        for f in 0..<token.shape[0] {
            let saved = value[f]
            value[f] = saved + epsilon
            let plus = model.forward(features: features, graph: graph, mask: mask, normalizer: 5)
            value[f] = saved - epsilon
            let minus = model.forward(features: features, graph: graph, mask: mask, normalizer: 5)
            value[f] = saved
            let numerical = (plus - minus) / (2 * Double(epsilon))
            #expect(abs(numerical - Double(gradient[f])) < finiteDifferenceTolerance * max(abs(numerical), 1e-2),
                    "token[\(f)]: analytic \(gradient[f]), numerical \(numerical)")
        }
    }

    @Test func theModelFollowsTheAuthorsShapesAndNames() {
        let model = GraphMAE(GraphMAEConfig())
        let arena = model.arena
        let expected: [(String, [Int])] = [
            ("mask_token", [1433]), ("encoder.layers.0.weight", [1433, 512]), ("encoder.layers.0.attention_source", [4, 128]),
            ("encoder.layers.0.bias", [512]), ("encoder.activations.0.weight", [1]), ("encoder.layers.1.weight", [512, 512]),
            ("encoder.activations.1.weight", [1]), ("encoder_to_decoder.weight", [512, 512]),
            ("decoder.layers.0.weight", [512, 1433]), ("decoder.layers.0.attention_target", [1, 1433]), ("decoder.layers.0.bias", [1433]),
        ]
        for (name, shape) in expected { #expect(arena.slot(named: name)?.shape == shape, "\(name)") }
        #expect(arena.slot(named: "encoder_to_decoder.bias") == nil)
        // The authors' PreModel for Cora (no residual, no norm) holds exactly these tensors.
        #expect(model.parameterCount == 1433 + (1433 * 512 + 2 * 512 + 512 + 1) + (512 * 512 + 2 * 512 + 512 + 1)
            + 512 * 512 + (512 * 1433 + 2 * 1433 + 1433))
    }
}
