import Foundation
import Testing
import ReplicaCore
import ReplicaModels
import ReplicaNN
import _ReplicaTestSupport

@Suite struct CBOWModelTests {
    /// Four windows over 7 words, d = 5, k = 3; window 2's second negative is its own centre.
    static let centres: [Int32] = [0, 3, 6, 2]
    static let contextOffsets: [Int32] = [0, 2, 5, 6, 10]
    static let contexts: [Int32] = [1, 2, 0, 4, 5, 3, 1, 1, 5, 6]
    static let negatives: [Int32] = [4, 5, 1, 0, 2, 6, 1, 6, 0, 3, 4, 5]

    static func model(seed: UInt64) -> CBOW {
        var config = CBOWConfig()
        config.vocabularySize = 7
        config.embedding = 5
        let model = CBOW(config)
        var generator = SeededGenerator(seed: seed)
        model.arena.allValues.fillUniform(bound: 1, using: &generator)
        return model
    }

    func forward(_ model: CBOW) -> CBOW.Cache {
        model.forward(centres: Self.centres, contextOffsets: Self.contextOffsets, contexts: Self.contexts, negatives: Self.negatives)
    }

    @Test func gradientsMatchFiniteDifferences() {
        let model = Self.model(seed: 11)
        let normalizer: Float = 3
        let results = checkGradients(arena: model.arena, inputs: [], directions: 5, loss: {
            model.loss(forward(model)) / Double(normalizer)
        }, gradients: {
            model.backward(forward(model), normalizer: normalizer)
            return []
        })
        for result in results { #expect(result.relativeError < finiteDifferenceTolerance, "\(result)") }
        // Element-wise on a few entries of each table, including a row only a negative touches.
        let base = model.arena.allGradients.copy()
        for index in [0, 7, 22, 34, 35 + 4, 35 + 22, 35 + 31, 69] {
            let epsilon: Float = 1e-2
            let original = model.arena.allValues[index]
            model.arena.allValues[index] = original + epsilon
            let plus = model.loss(forward(model)) / Double(normalizer)
            model.arena.allValues[index] = original - epsilon
            let minus = model.loss(forward(model)) / Double(normalizer)
            model.arena.allValues[index] = original
            let numerical = (plus - minus) / (2 * Double(epsilon))
            let analytic = Double(base[index])
            #expect(abs(numerical - analytic) <= 1e-2 * max(abs(numerical), abs(analytic), 1e-2), "element \(index): \(analytic) vs \(numerical)")
        }
    }

    @Test func theLossIsTheNegativeSamplingObjectiveAndSkipsANegativeEqualToTheCentre() {
        let model = Self.model(seed: 5)
        let cache = forward(model)
        let d = 5
        let values = model.arena.allValues.scalars
        func row(_ table: Int, _ word: Int32) -> [Double] {
            (0..<d).map { Double(values[table * 35 + Int(word) * d + $0]) }
        }
        var expected = 0.0
        for b in 0..<4 {
            let words = Self.contexts[Int(Self.contextOffsets[b])..<Int(Self.contextOffsets[b + 1])]
            var h = [Double](repeating: 0, count: d)
            for w in words { for j in 0..<d { h[j] += row(0, w)[j] / Double(words.count) } }
            func score(_ o: Int32) -> Double { zip(h, row(1, o)).reduce(0) { $0 + $1.0 * $1.1 } }
            expected += log(1 + exp(-score(Self.centres[b])))
            for j in 0..<3 where Self.negatives[b * 3 + j] != Self.centres[b] {
                expected += log(1 + exp(score(Self.negatives[b * 3 + j])))
            }
        }
        #expect(abs(model.loss(cache) - expected) < 1e-4 * expected)
        #expect(!cache.counts(2, 2) && cache.counts(2, 1) && cache.counts(2, 0))
        // With word2vec's start (output vectors zero) every term is log 2: 4 centres + 11 negatives.
        model.initialize(seed: 1)
        #expect(abs(model.loss(forward(model)) - 15 * log(2.0)) < 1e-9)
    }
}
