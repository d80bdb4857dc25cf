import Testing
import ReplicaCore
import ReplicaModels
import ReplicaNN
import _ReplicaTestSupport

@Suite struct MaskedLanguageModelTests {
    /// Per parameter tensor, a random direction, central differences (as the encoder–decoder's check).
    @Test(arguments: [(NormKind.layer, PositionKind.learned), (.batch, .learned), (.layer, .sinusoidal)])
    func gradientsMatchFiniteDifferences(norm: NormKind, positions: PositionKind) {
        var config = MaskedLanguageModelConfig()
        config.vocabularySize = 13
        config.embedding = 8
        config.heads = 2
        config.layers = 2
        config.feedForward = 16
        config.dropout = 0
        config.maximumLength = 16
        config.norm = norm
        config.positions = positions
        let model = MaskedLanguageModel(config)
        model.initialize(seed: 3)
        var generator = SeededGenerator(seed: 4)
        for slot in model.arena.slots where slot.name.contains("norm") || slot.name.contains("bias") {
            let values = model.arena.value(slot)
            for i in 0..<values.count { values[i] += 0.3 * (generator.nextUniform() - 0.5) }
        }
        let ids: [Int32] = [1, 6, 4, 8, 2, 1, 9, 4, 2, 0]   // two sentences, the second padded
        let mask = [true, true, true, true, true, true, true, true, true, false]
        let rows: [Int32] = [2, 7, 3], targets: [Int32] = [7, 11, 8]
        let crossEntropy = CrossEntropy()
        func loss() -> Double {
            crossEntropy.forward(logits: model.forward(ids, mask: mask, batch: 2, length: 5, predicting: rows), targets: targets,
                                 normalizer: 3)
        }
        model.arena.zeroGradients()
        _ = loss()
        model.backward(crossEntropy.backward()) { _ in }
        let gradients = model.arena.allGradients.copy()
        let epsilon: Float = 1e-3
        for slot in model.arena.slots {
            let values = model.arena.value(slot)
            let direction = (0..<values.count).map { _ in generator.nextUniform() - 0.5 }
            var analytic = 0.0
            for i in 0..<values.count { analytic += Double(gradients[slot.range.lowerBound + i]) * Double(direction[i]) }
            for i in 0..<values.count { values[i] += epsilon * direction[i] }
            let plus = loss()
            for i in 0..<values.count { values[i] -= 2 * epsilon * direction[i] }
            let minus = loss()
            for i in 0..<values.count { values[i] += epsilon * direction[i] }
            let numerical = (plus - minus) / Double(2 * epsilon)
            #expect(abs(analytic - numerical) <= 0.02 * abs(analytic) + 5e-4, "\(norm) \(positions) \(slot.name): analytic \(analytic), numerical \(numerical)")
        }
    }
}
