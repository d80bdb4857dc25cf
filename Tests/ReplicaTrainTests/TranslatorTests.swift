import Foundation
import Testing
import ReplicaCore
import ReplicaData
import ReplicaDistributed
import ReplicaModels
import ReplicaNN
import ReplicaTrain
import _ReplicaTestSupport

/// Greedy and beam decoding with and without the decoder's key/value cache.
@Suite struct TranslatorTests {
    static func tiny(norm: NormKind = .layer, scorer: AttentionScorer = .dot) -> Seq2SeqTransformer {
        Fixtures.tinySeq2SeqTransformer(norm: norm, scorer: scorer)
    }

    static let cases: [(NormKind, AttentionScorer)] = [(.layer, .dot), (.batch, .dot), (.layer, .additive)]

    static let sources: [[Int32]] = [[5, 6, 7, 2], [8, 2], [9, 10, 5, 6, 7, 2], [10, 9, 2]]

    static func translator(_ model: Seq2SeqTransformer) -> Translator {
        var translator = Translator(model: model, tokenizer: BPETokenizer.learn(from: ["ein Hund", "a dog"], vocabularySize: 30))
        translator.maximumLength = 14
        return translator
    }

    /// The same greedy and beam outputs with and without the cache.
    static func expectSameOutputs(_ model: Seq2SeqTransformer, sources: [[Int32]]) -> [[Int32]] {
        var translator = translator(model)
        var outputs: [[[Int32]]] = []
        for beam in [1, 3] {
            translator.usesCache = true
            let cached = translator.decode(sources, beam: beam)
            translator.usesCache = false
            let reference = translator.decode(sources, beam: beam)
            #expect(cached == reference, "beam \(beam): cached \(cached), reference \(reference)")
            outputs.append(cached)
        }
        return outputs[0]
    }

    @Test(arguments: cases)
    func cachedDecodingOfARandomModelMatchesTheReference(norm: NormKind, scorer: AttentionScorer) {
        let outputs = Self.expectSameOutputs(Self.tiny(norm: norm, scorer: scorer), sources: Self.sources)
        #expect(outputs.contains { !$0.isEmpty })
    }

    /// A model trained for a short while to copy its source: outputs of several lengths that end
    /// with `</s>`, so beams finish at different steps and rows leave the cache.
    @Test func cachedDecodingOfATrainedModelMatchesTheReference() {
        var config = TransformerConfig()
        config.vocabularySize = 11
        config.embedding = 16
        config.heads = 2
        config.encoderLayers = 1
        config.decoderLayers = 1
        config.feedForward = 32
        config.dropout = 0
        let model = Seq2SeqTransformer(config)
        model.initialize(seed: 5)
        let optimizer = Adam(beta2: 0.98)
        let crossEntropy = CrossEntropy(ignoreIndex: -100)
        var generator = SeededGenerator(seed: 6)
        func randomSentence() -> [Int32] { (0..<(1 + generator.nextInt(below: 4))).map { _ in Int32(5 + generator.nextInt(below: 6)) } }
        for _ in 0..<300 {
            let examples = (0..<16).map { _ in
                let sentence = randomSentence()
                return TranslationExample(source: sentence + [2], target: [1] + sentence + [2])
            }
            let batch = PaddedBatch.make(examples: examples, indices: Array(examples.indices))
            model.mode = .training
            model.arena.zeroGradients()
            let memory = model.encode(batch.sourceIds, mask: batch.sourceMask, batch: 16, length: batch.sourceLength)
            let logits = model.decode(batch.targetInput, targetMask: batch.targetOutput.map { $0 != -100 }, memory: memory,
                                      memoryMask: batch.sourceMask, batch: 16, length: batch.targetLength)
            _ = crossEntropy.forward(logits: logits, targets: batch.predictedTargets, normalizer: Float(batch.targetTokenCount))
            model.backward(crossEntropy.backward())
            optimizer.step(arena: model.arena, learningRate: 1e-2)
        }
        let sources = (0..<12).map { _ in randomSentence() + [2] }
        let outputs = Self.expectSameOutputs(model, sources: sources)
        let copied = zip(outputs, sources).filter { $0 == Array($1.dropLast()) }.count
        #expect(copied >= 6, "the model copies \(copied) of 12 sources: \(outputs)")
        #expect(Set(outputs.map(\.count)).count >= 3)
    }

    @Test func topIndicesAreAStableDescendingSortsPrefix() {
        var generator = SeededGenerator(seed: 8)
        for _ in 0..<50 {
            let row = (0..<40).map { _ in Float(generator.nextInt(below: 12)) }   // many ties
            let sorted = Array(row.indices.sorted { row[$0] > row[$1] || (row[$0] == row[$1] && $0 < $1) }.prefix(5))
            #expect(Translator.topIndices(row, count: 5) == sorted)
        }
    }
}
