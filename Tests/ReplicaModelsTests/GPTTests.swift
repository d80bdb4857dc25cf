import Foundation
import Testing
import ReplicaCore
import ReplicaNN
import ReplicaModels
import _ReplicaTestSupport

/// A GPT small enough for finite differences in a debug build: 2 layers, 2 heads, C 16, block 8.
func tinyGPTConfig(norm: NormKind = .layer, vocabulary: Int = 11, layers: Int = 2, blockSize: Int = 8) -> GPTConfig {
    var config = GPTConfig()
    config.layerCount = layers
    config.headCount = 2
    config.embedding = 16
    config.blockSize = blockSize
    config.vocabularySize = vocabulary
    config.norm = norm
    return config
}

/// `count` token ids below `vocabulary`, seeded.
func randomIds(_ count: Int, vocabulary: Int, seed: UInt64) -> [Int32] {
    var generator = SeededGenerator(seed: seed)
    return (0..<count).map { _ in Int32(generator.nextInt(below: vocabulary)) }
}

/// Logits of `ids` differ from `reference` by at most this (relative to the largest logit): the
/// rows compared are computed from identical inputs, so only BLAS blocking could differ.
private let unchangedLogitsTolerance: Float = 1e-6

@Suite struct GPTTests {
    @Test(arguments: [NormKind.layer, .batch])
    func gradientsOfTheCrossEntropyMatchFiniteDifferences(norm: NormKind) {
        let config = tinyGPTConfig(norm: norm)
        let model = GPT(config)
        model.initialize(seed: 3)
        // Move every parameter off GPT-2's tiny initial values (norm weights off 1) so each term matters.
        var generator = SeededGenerator(seed: 4)
        let noise = Tensor(zeros: [model.arena.count])
        noise.fillUniform(bound: 0.2, using: &generator)
        axpy(1, noise, model.arena.allValues)
        let B = 2, T = config.blockSize
        let ids = randomIds(B * T, vocabulary: config.vocabularySize, seed: 5)
        let targets = randomIds(B * T, vocabulary: config.vocabularySize, seed: 6)
        let loss = CrossEntropy()
        let results = checkGradients(arena: model.arena, inputs: [], directions: 4,
            loss: { loss.forward(logits: model.forward(ids, batch: B, length: T), targets: targets, normalizer: Float(B * T)) },
            gradients: {
                let logits = model.forward(ids, batch: B, length: T)
                _ = loss.forward(logits: logits, targets: targets, normalizer: Float(B * T))
                model.backward(loss.backward()) { _ in }
                return []
            })
        for result in results {
            #expect(result.relativeError < finiteDifferenceTolerance, "norm \(norm): \(result)")
            #expect(abs(result.analytic) > 1e-3, "a direction with a vanishing derivative checks nothing: \(result)")
        }
    }

    /// BatchNorm in training mode mixes statistics of all positions, so only its evaluation mode is causal.
    static let causalCases: [(NormKind, Mode)] = [(.layer, .training), (.layer, .evaluation), (.batch, .evaluation)]

    @Test(arguments: causalCases)
    func logitsAtAPositionDoNotDependOnLaterTokens(norm: NormKind, mode: Mode) {
        let config = tinyGPTConfig(norm: norm)
        let model = GPT(config)
        model.initialize(seed: 8)
        model.mode = mode
        let B = 2, T = config.blockSize, V = config.vocabularySize
        let ids = randomIds(B * T, vocabulary: V, seed: 9)
        let reference = model.forward(ids, batch: B, length: T).scalars
        let scale = reference.map(abs).max() ?? 1
        for t in 0..<(T - 1) {
            var changed = ids
            for b in 0..<B { changed[b * T + t + 1] = (ids[b * T + t + 1] + 1) % Int32(V) }
            let logits = model.forward(changed, batch: B, length: T).scalars
            for b in 0..<B {
                let row = { (p: Int) in Array(logits[((b * T + p) * V)..<((b * T + p + 1) * V)]) }
                let referenceRow = { (p: Int) in Array(reference[((b * T + p) * V)..<((b * T + p + 1) * V)]) }
                for p in 0...t {
                    let difference = zip(row(p), referenceRow(p)).map { abs($0 - $1) }.max()!
                    #expect(difference <= unchangedLogitsTolerance * scale,
                            "changing position \(t + 1) moved the logits of position \(p) (batch \(b)) by \(difference)")
                }
                #expect(row(t + 1) != referenceRow(t + 1), "the changed token must change its own logits")
            }
        }
    }

    @Test func aPrefixGivesTheLogitsOfTheFullSequencesFirstPositions() {
        let config = tinyGPTConfig(norm: .layer)
        let model = GPT(config)
        model.initialize(seed: 10)
        model.mode = .evaluation
        let T = config.blockSize, V = config.vocabularySize
        let ids = randomIds(T, vocabulary: V, seed: 11)
        let full = model.forward(ids, batch: 1, length: T).scalars
        let scale = full.map(abs).max() ?? 1
        for length in 1..<T {
            let prefix = model.forward(Array(ids[..<length]), batch: 1, length: length).scalars
            let difference = zip(prefix, full[..<(length * V)]).map { abs($0 - $1) }.max()!
            #expect(difference <= unchangedLogitsTolerance * scale, "prefix of \(length): \(difference)")
        }
    }

    @Test(arguments: [NormKind.layer, .batch])
    func gradientsReadyOffsetsDescendToZeroAndTheirGradientsAreFinal(norm: NormKind) {
        let config = tinyGPTConfig(norm: norm)
        let model = GPT(config)
        model.initialize(seed: 12)
        let B = 2, T = config.blockSize
        let ids = randomIds(B * T, vocabulary: config.vocabularySize, seed: 13)
        let targets = randomIds(B * T, vocabulary: config.vocabularySize, seed: 14)
        let loss = CrossEntropy()
        model.arena.zeroGradients()
        _ = loss.forward(logits: model.forward(ids, batch: B, length: T), targets: targets, normalizer: Float(B * T))
        var reports: [(offset: Int, gradients: [Float])] = []
        model.backward(loss.backward()) { offset in
            reports.append((offset, Array(model.arena.allGradients.scalars[offset...])))
        }
        let offsets = reports.map(\.offset)
        #expect(offsets.last == 0)
        #expect(zip(offsets, offsets.dropFirst()).allSatisfy { $0 >= $1 }, "offsets \(offsets) must not increase")
        #expect(offsets.allSatisfy { (0..<model.arena.count).contains($0) })
        // One report after ln_f; nine per block (after mlp.c_proj's weight and input gradients, c_fc's
        // two, ln_2, attn.c_proj, the attention kernel, attn.c_attn, ln_1), so that communication
        // progresses after nearly every GEMM; one after the embeddings.
        #expect(offsets.count == 9 * config.layerCount + 2, "\(offsets)")
        #expect(Set(offsets).count >= 6 * config.layerCount + 2, "reports should mostly move down: \(offsets)")
        let final = model.arena.allGradients.scalars
        for report in reports {
            #expect(report.gradients == Array(final[report.offset...]),
                    "gradients above offset \(report.offset) changed after they were reported ready")
        }
        // Every parameter got a gradient.
        for slot in model.arena.slots {
            #expect(model.arena.gradient(slot).scalars.contains { $0 != 0 }, "\(slot.name) has no gradient")
        }
    }

    @Test func parametersHaveNanoGPTsNamesAndLayoutsWithLayerNorm() {
        let config = tinyGPTConfig(norm: .layer, vocabulary: 11, layers: 2, blockSize: 8)
        let model = GPT(config)
        let V = 11, C = 16, block = 8
        var expected: [(String, [Int])] = [("transformer.wte.weight", [V, C]), ("transformer.wpe.weight", [block, C])]
        for i in 0..<2 {
            let h = "transformer.h.\(i)"
            expected += [
                ("\(h).ln_1.weight", [C]), ("\(h).attn.c_attn.weight", [3 * C, C]), ("\(h).attn.c_proj.weight", [C, C]),
                ("\(h).ln_2.weight", [C]), ("\(h).mlp.c_fc.weight", [4 * C, C]), ("\(h).mlp.c_proj.weight", [C, 4 * C]),
            ]
        }
        expected.append(("transformer.ln_f.weight", [C]))
        #expect(model.arena.slots.map(\.name) == expected.map(\.0))
        #expect(model.arena.slots.map(\.shape) == expected.map(\.1))
        #expect(model.arena.bufferSlots.isEmpty)
        // nanoGPT's count without the tied lm_head: V·C + block·C + L·(12C² + 2C) + C.
        #expect(model.parameterCount == V * C + block * C + 2 * (12 * C * C + 2 * C) + C)
        #expect(model.parameterCount == expected.map { $0.1.reduce(1, *) }.reduce(0, +))
    }

    @Test func batchNormBlocksHaveAWeightABiasAndRunningStatistics() {
        let model = GPT(tinyGPTConfig(norm: .batch))
        let names = Set(model.arena.slots.map(\.name))
        for norm in ["transformer.h.0.ln_1", "transformer.h.1.ln_2", "transformer.ln_f"] {
            #expect(names.contains("\(norm).weight") && names.contains("\(norm).bias"), "\(norm)")
        }
        #expect(model.arena.bufferSlots.count == 2 * (2 * 2 + 1))
        #expect(model.batchNorms.count == 2 * 2 + 1)
        let C = 16
        #expect(model.parameterCount == GPT(tinyGPTConfig(norm: .layer)).parameterCount + (2 * 2 + 1) * C)
    }

    @Test func initialisationIsSeededAndFollowsGPT2() {
        let a = GPT(tinyGPTConfig()), b = GPT(tinyGPTConfig()), c = GPT(tinyGPTConfig())
        a.initialize(seed: 1)
        b.initialize(seed: 1)
        c.initialize(seed: 2)
        #expect(a.arena.allValues.scalars == b.arena.allValues.scalars)
        #expect(a.arena.allValues.scalars != c.arena.allValues.scalars)
        let arena = a.arena
        #expect(arena.value(arena.slot(named: "transformer.ln_f.weight")!).scalars.allSatisfy { $0 == 1 })
        let wte = arena.value(arena.slot(named: "transformer.wte.weight")!).scalars
        let deviation = (wte.map { Double($0 * $0) }.reduce(0, +) / Double(wte.count)).squareRoot()
        #expect(abs(deviation - 0.02) < 0.005, "wte standard deviation \(deviation)")
    }

    @Test func theHeadIsTiedToTheTokenEmbedding() {
        // logits = ln_f(h) · wteᵀ, so token v's embedding row is also column v of the output head.
        let config = tinyGPTConfig(norm: .layer)
        let model = GPT(config)
        model.initialize(seed: 15)
        model.mode = .evaluation
        let ids = randomIds(config.blockSize, vocabulary: config.vocabularySize, seed: 16)
        let before = model.forward(ids, batch: 1, length: config.blockSize).scalars
        // Change the embedding row of a token not in the input: only its output column moves.
        let unused = (0..<Int32(config.vocabularySize)).first { !ids.contains($0) }!
        let wte = model.arena.value(model.arena.slot(named: "transformer.wte.weight")!)
        for c in 0..<config.embedding { wte[Int(unused) * config.embedding + c] += 0.5 }
        let after = model.forward(ids, batch: 1, length: config.blockSize).scalars
        let V = config.vocabularySize
        for index in 0..<before.count {
            if index % V == Int(unused) {
                #expect(before[index] != after[index])
            } else {
                #expect(before[index] == after[index])
            }
        }
    }
}
