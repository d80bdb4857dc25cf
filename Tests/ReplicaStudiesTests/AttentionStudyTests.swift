import Foundation
import Testing
import ReplicaCore
import ReplicaData
import ReplicaDistributed
import ReplicaModels
import ReplicaNN
import ReplicaStudies
import ReplicaTrain
import _ReplicaTestSupport

/// Tolerance for closed-form entropies computed in Double.
private let entropyTolerance = 1e-9

@Suite struct EntropyAndDistinctTests {
    @Test func entropyOfConstructedDistributions() {
        #expect(abs(shannonEntropy([Float](repeating: 0.125, count: 8)) - log(8.0)) < 1e-6)
        #expect(shannonEntropy([0.0, 1.0, 0.0]) == 0)
        #expect(abs(shannonEntropy([0.5, 0.25, 0.25]) - 1.5 * log(2.0)) < entropyTolerance)
    }

    @Test func softmaxEntropyAtATemperature() {
        let equal: [Float] = [3, 3, 3, 3, 3]
        for t: Float in [0.2, 1, 5] {
            equal.withUnsafeBufferPointer { #expect(abs(softmaxEntropy($0, temperature: t) - log(5.0)) < 1e-9) }
        }
        // logits (0, log 3) at τ = 1: p = (1/4, 3/4).
        let logits: [Float] = [0, Float(log(3.0))]
        let expected = -(0.25 * log(0.25) + 0.75 * log(0.75))
        logits.withUnsafeBufferPointer { #expect(abs(softmaxEntropy($0, temperature: 1) - expected) < 1e-6) }
        // At τ = 2 the logits halve: p ∝ (1, √3).
        let p = 1 / (1 + 3.0.squareRoot())
        logits.withUnsafeBufferPointer {
            #expect(abs(softmaxEntropy($0, temperature: 2) - (-(p * log(p) + (1 - p) * log(1 - p)))) < 1e-6)
        }
    }

    @Test func wordsAreLowercasedRunsOfLetters() {
        #expect(WordTokenizer.words("To be, or NOT to be -- 'tis the lord's!\nKING:", includingDigits: false)
            == ["to", "be", "or", "not", "to", "be", "tis", "the", "lord's", "king"])
        #expect(WordTokenizer.words(" ,.; 12 ", includingDigits: false).isEmpty)
    }

    @Test func distinctNGramsOnConstructedSequences() {
        let sequence = [["a", "b", "a", "b"]]
        #expect(distinctNGramRatio(sequence, n: 1) == 0.5)
        #expect(abs(distinctNGramRatio(sequence, n: 2) - 2.0 / 3) < entropyTolerance)
        #expect(distinctNGramRatio(sequence, n: 3) == 1)
        // n-grams never span two samples; a repeated sample halves distinct-n.
        #expect(distinctNGramRatio([["a"], ["a"]], n: 2) == 0)
        #expect(distinctNGramRatio([["x", "y", "z"], ["x", "y", "z"]], n: 2) == 0.5)
    }
}

@Suite struct AttentionScalingStudyTests {
    /// Keys all zero: every score is 0, attention is uniform, and no gradient reaches Q.
    @Test func uniformAttentionHasFullEntropyAndNoQueryGradient() {
        let T = 10, hs = 4
        let q = randomTensor([1, T, hs], seed: 31), k = Tensor(zeros: [1, T, hs]), v = randomTensor([1, T, hs], seed: 32)
        let upstream = randomTensor([1, T, hs], seed: 33)
        for scaled in [true, false] {
            let s = measureAttention(q: StridedOperand(q.data, rowStride: hs), k: StridedOperand(k.data, rowStride: hs),
                                     v: StridedOperand(v.data, rowStride: hs), upstream: upstream,
                                     batch: 1, length: T, heads: 1, headSize: hs, causal: false, scaled: scaled)
            #expect(abs(s.entropy - log(Double(T))) < 1e-5)
            #expect(abs(s.entropyFraction - 1) < 1e-5)
            #expect(abs(s.maximumProbability - 1 / Double(T)) < 1e-6)
            #expect(s.queryGradientNorm == 0)
            #expect(s.keyGradientNorm > 0)
            #expect(s.scoreStandardDeviation == 0)
        }
    }

    /// With the factor, scores keep unit spread at every d_k; without it they grow as √d_k, the
    /// softmax saturates and the gradient of most queries collapses.
    @Test func withoutTheFactorLargeHeadsSaturate() {
        var study = AttentionScalingStudy()
        study.headSizes = [16, 256]
        study.randomHeads = 4
        study.sequenceLength = 32
        let rows = study.randomRows()
        #expect(rows.count == 4)
        func row(_ d: Int, _ scaled: Bool) -> AttentionStatistics { rows.first { $0.headSize == d && $0.scaled == scaled }!.statistics }
        for d in [16, 256] {
            #expect(abs(row(d, true).scoreStandardDeviation - 1) < 0.15, "d_k \(d)")
            #expect(abs(row(d, false).scoreStandardDeviation / Double(d).squareRoot() - 1) < 0.15, "d_k \(d)")
            #expect(row(d, true).entropyFraction > 0.8, "d_k \(d)")
        }
        #expect(row(256, false).entropyFraction < 0.2)
        #expect(row(256, false).entropyFraction < row(16, false).entropyFraction)
        // Most rows saturate and their gradient vanishes: the median query's gradient falls although
        // the total (carried by the few unsaturated rows, without the factor's 1/√d_k) grows.
        #expect(row(16, true).saturatedFraction == 0 && row(256, true).saturatedFraction == 0)
        #expect(row(256, false).saturatedFraction > 0.4)
        #expect(row(256, false).medianRowQueryGradient < 0.3 * row(16, false).medianRowQueryGradient)
        #expect(row(256, false).queryGradientNorm > row(16, false).queryGradientNorm)
    }
}

/// A tiny charlm trained briefly in-process and saved as a checkpoint, for the temperature study.
enum TinyCharLM {
    static let text: String = {
        let full = (try? TextCorpus.tinyShakespeare()) ?? ""
        return String(full.prefix(30_000))
    }()

    /// A scratch folder for this test process, removed when it exits.
    static let folder: URL = {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("replica-temperature-\(UUID().uuidString)")
        atexit { try? FileManager.default.removeItem(at: TinyCharLM.folder) }
        return folder
    }()

    static let checkpoint: Result<URL, Error> = Result {
        var config = GPTConfig()
        config.layerCount = 1
        config.headCount = 2
        config.embedding = 32
        config.blockSize = 16
        var options = TrainingOptions()
        options.steps = 150
        options.batchSize = 8
        options.warmupSteps = 10
        options.learningRate = 3e-3
        options.evaluationBatches = 2
        options.evaluationInterval = 0
        options.progress = .none
        options.checkpointDirectory = folder.path
        let task = try CharLMTask(text: text, dataDescription: "tiny", config: config, options: options, rank: 0, ranks: 1)
        _ = try Trainer(task: task, options: options, communicator: LocalCommunicator()).run()
        return folder.appendingPathComponent(Checkpoint.folderName(step: 150))
    }
}

@Suite struct TemperatureStudyTests {
    @Test func measuringEntropyDrawsTheSameTextAsGenerate() throws {
        let generator = try TextGenerator(checkpoint: try TinyCharLM.checkpoint.get())
        for temperature: Float in [0.5, 1.3] {
            let plain = try generator.generate(prompt: "ROMEO:", count: 80, temperature: temperature, topK: nil, seed: 9)
            let (text, entropies) = try generator.generateMeasuringEntropy(prompt: "ROMEO:", count: 80, temperature: temperature, seed: 9)
            #expect(text == plain)
            #expect(entropies.count == 80)
            #expect(entropies.allSatisfy { $0 >= 0 && $0 <= log(Double(generator.vocabulary.count)) + 1e-9 })
        }
    }

    /// Not a tautology: each temperature samples different contexts, so the mean entropy over
    /// them need not follow the per-distribution monotonicity unless the model behaves.
    @Test func entropyRisesWithTemperatureAndRealWordsFall() throws {
        let generator = try TextGenerator(checkpoint: try TinyCharLM.checkpoint.get())
        var study = TemperatureStudy()
        study.temperatures = [0.25, 0.5, 1, 1.5, 2]
        study.samples = 2
        study.characters = 150
        let rows = try study.run(generator: generator, vocabulary: Set(WordTokenizer.words(TinyCharLM.text, includingDigits: false)))
        #expect(rows.count == 5)
        for (a, b) in zip(rows, rows.dropFirst()) {
            #expect(a.meanEntropy < b.meanEntropy, "τ \(a.temperature): \(a.meanEntropy), τ \(b.temperature): \(b.meanEntropy)")
        }
        #expect(rows.first!.knownWordFraction > rows.last!.knownWordFraction)
        for row in rows {
            #expect(row.distinct.allSatisfy { (0...1).contains($0) })
            #expect(row.wordCount > 0)
        }
    }
}
