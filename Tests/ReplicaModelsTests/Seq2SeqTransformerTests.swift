import Testing
import ReplicaCore
import ReplicaModels
import ReplicaNN
import _ReplicaTestSupport

@Suite struct Seq2SeqTransformerTests {
    static func tiny(norm: NormKind = .layer, scorer: AttentionScorer = .dot) -> Seq2SeqTransformer {
        Fixtures.tinySeq2SeqTransformer(norm: norm, scorer: scorer)
    }

    // Batch of 2: source lengths 4 and 2 (padded to 4), targets 3 and 2 (padded to 3).
    static let source: [Int32] = [5, 6, 7, 8, 9, 10, 0, 0]
    static let sourceMask = [true, true, true, true, true, true, false, false]
    static let targetInput: [Int32] = [1, 5, 6, 1, 7, 0]
    static let targetMask = [true, true, true, true, true, false]
    static let targetOutput: [Int32] = [5, 6, 2, 7, 2]          // the predicted positions' targets (the logits' rows)

    func loss(_ model: Seq2SeqTransformer, _ crossEntropy: CrossEntropy) -> Double {
        let memory = model.encode(Self.source, mask: Self.sourceMask, batch: 2, length: 4)
        let logits = model.decode(Self.targetInput, targetMask: Self.targetMask, memory: memory, memoryMask: Self.sourceMask,
                                  batch: 2, length: 3)
        return crossEntropy.forward(logits: logits, targets: Self.targetOutput, normalizer: 5)
    }

    static let cases: [(NormKind, AttentionScorer)] = [(.layer, .dot), (.batch, .dot), (.layer, .additive)]

    /// Backward reports arena offsets above which every gradient is final (so all-reduce buckets
    /// can start during backward): nothing at or above a reported offset may change afterwards,
    /// and the reports run from the decoder norm down to 0.
    @Test(arguments: [NormKind.layer, .batch])
    func gradientsReportedReadyDoNotChangeAfterwards(norm: NormKind) {
        let model = Self.tiny(norm: norm)
        let crossEntropy = CrossEntropy(labelSmoothing: 0.1, ignoreIndex: -100)
        model.arena.zeroGradients()
        _ = loss(model, crossEntropy)
        let gradients = model.arena.gradients
        var reports: [(offset: Int, values: [Float])] = []
        model.backward(crossEntropy.backward()) { offset in
            reports.append((offset, (offset..<gradients.count).map { gradients.pointer[$0] }))
        }
        #expect(reports.map(\.offset) == reports.map(\.offset).sorted(by: >))
        #expect(reports.count == 2 + 2 + 2 + 1 && reports.last?.offset == 0)
        for report in reports {
            let now = (report.offset..<gradients.count).map { gradients.pointer[$0] }
            #expect(now == report.values, "gradients at offsets ≥ \(report.offset) changed after being reported final")
        }
        #expect(reports.first!.values.contains { $0 != 0 })
    }

    /// Per parameter tensor: a random direction in that tensor alone, central differences.
    /// One direction over all parameters at once would move many ReLU inputs across their kink
    /// in this deep a model; per tensor, the error stays at float rounding: |Δ| ≤ 2% · |g| + 5e-4
    /// (the loss is float32: rounding of ~1e-6 in L over 2ε = 2e-3 is ~5e-4 in the derivative;
    /// the gradients checked are 1e-2 to 1).
    @Test(arguments: cases)
    func gradientsMatchFiniteDifferences(norm: NormKind, scorer: AttentionScorer) {
        let model = Self.tiny(norm: norm, scorer: scorer)
        let crossEntropy = CrossEntropy(labelSmoothing: 0.1, ignoreIndex: -100)
        model.arena.zeroGradients()
        _ = loss(model, crossEntropy)
        model.backward(crossEntropy.backward())
        let gradients = model.arena.allGradients.copy()
        var generator = SeededGenerator(seed: 9)
        let epsilon: Float = 1e-3
        for slot in model.arena.slots {
            let values = model.arena.value(slot)
            let direction = (0..<values.count).map { _ in generator.nextUniform() - 0.5 }
            var analytic = 0.0
            for i in 0..<values.count { analytic += Double(gradients[slot.range.lowerBound + i]) * Double(direction[i]) }
            for i in 0..<values.count { values[i] += epsilon * direction[i] }
            let plus = loss(model, crossEntropy)
            for i in 0..<values.count { values[i] -= 2 * epsilon * direction[i] }
            let minus = loss(model, crossEntropy)
            for i in 0..<values.count { values[i] += epsilon * direction[i] }
            let numerical = (plus - minus) / Double(2 * epsilon)
            #expect(abs(analytic - numerical) <= 0.02 * abs(analytic) + 5e-4,
                    "\(norm) \(scorer) \(slot.name): analytic \(analytic), numerical \(numerical)")
        }
    }

    @Test func sourcePaddingDoesNotChangeTheTranslation() {
        let model = Self.tiny()
        let crossEntropy = CrossEntropy(ignoreIndex: -100)
        let before = loss(model, crossEntropy)
        var padded = Self.source
        padded[6] = 9   // a different token at a padding position
        let memory = model.encode(padded, mask: Self.sourceMask, batch: 2, length: 4)
        let logits = model.decode(Self.targetInput, targetMask: Self.targetMask, memory: memory, memoryMask: Self.sourceMask,
                                  batch: 2, length: 3)
        #expect(abs(crossEntropy.forward(logits: logits, targets: Self.targetOutput, normalizer: 5) - before) < 1e-9)
    }

    @Test func theDecoderDoesNotSeeFutureTargets() {
        let model = Self.tiny()
        let memory = model.encode(Self.source, mask: Self.sourceMask, batch: 2, length: 4)
        let first = model.decode(Self.targetInput, targetMask: Self.targetMask, memory: memory, memoryMask: Self.sourceMask,
                                 batch: 2, length: 3).copy()
        var changed = Self.targetInput
        changed[2] = 9   // position 2 of sentence 0
        let second = model.decode(changed, targetMask: Self.targetMask, memory: memory, memoryMask: Self.sourceMask,
                                  batch: 2, length: 3)
        let V = 11
        #expect(Array(first.scalars[0..<(2 * V)]) == Array(second.scalars[0..<(2 * V)]))
        #expect(Array(first.scalars[(2 * V)..<(3 * V)]) != Array(second.scalars[(2 * V)..<(3 * V)]))
    }

    /// Padding positions get no logits row: the logits are the predicted positions' rows of the
    /// decoder run with every position kept (padding comes last and attention is causal, so the
    /// rows kept see the same keys); only the product's blocking may differ, hence 1e-5.
    @Test func paddingPositionsGetNoLogits() {
        let model = Self.tiny()
        let memory = model.encode(Self.source, mask: Self.sourceMask, batch: 2, length: 4)
        let kept = model.decode(Self.targetInput, targetMask: Self.targetMask, memory: memory, memoryMask: Self.sourceMask,
                                batch: 2, length: 3).copy()
        let all = model.decode(Self.targetInput, targetMask: [Bool](repeating: true, count: 6), memory: memory,
                               memoryMask: Self.sourceMask, batch: 2, length: 3)
        let V = 11
        #expect(kept.shape == [5, V] && all.shape == [6, V])
        let difference = zip(kept.scalars, all.scalars[0..<(5 * V)]).map { abs($0 - $1) }.max()!
        #expect(difference < 1e-5, "\(difference)")
    }

    // MARK: - Incremental decoding (key/value cache)

    /// Logits of the cached decoder agree with the full decoder's to float rounding.
    static let logitTolerance: Float = 1e-5

    /// Step by step with the cache, reordering and duplicating rows midway (as beam search does),
    /// against the full decoder run over each row's whole prefix.
    @Test(arguments: cases)
    func cachedStepsGiveTheFullDecodersLogits(norm: NormKind, scorer: AttentionScorer) {
        let model = Self.tiny(norm: norm, scorer: scorer)
        model.mode = .evaluation
        let memory = model.encode(Self.source, mask: Self.sourceMask, batch: 2, length: 4).copy()
        let cache = model.makeDecoderCache(memory: memory, memoryMask: Self.sourceMask, sentences: 2, sourceLength: 4,
                                           capacity: 6, maximumRows: 3)
        var prefixes: [[Int32]] = [[1], [1]]
        var sentences = [0, 1]
        var worst: Float = 0
        for step in 0..<6 {
            let logits = model.decodeStep(prefixes.map { $0.last! }, cache: cache).copy()
            let B = prefixes.count, T = prefixes[0].count, V = 11
            let rows = sentences.flatMap { sentence in (0..<4).map { Int32(sentence * 4 + $0) } }
            let full = model.decode(prefixes.flatMap { $0 }, targetMask: [Bool](repeating: true, count: B * T),
                                    memory: memory.gatheringRows(rows), memoryMask: rows.map { Self.sourceMask[Int($0)] },
                                    batch: B, length: T)
            for b in 0..<B {
                for v in 0..<V {
                    let expected = full[(b * T + T - 1) * V + v], actual = logits[b * V + v]
                    worst = max(worst, abs(actual - expected) / max(1, abs(expected)))
                }
            }
            if step == 1 {   // row 1 first, then row 0 twice
                cache.select(rows: [1, 0, 0])
                prefixes = [prefixes[1], prefixes[0], prefixes[0]]
                sentences = [sentences[1], sentences[0], sentences[0]]
            }
            for b in prefixes.indices { prefixes[b].append(Int32(3 + (step * 3 + b * 5) % 8)) }
        }
        #expect(worst <= Self.logitTolerance, "\(norm) \(scorer): largest relative logit difference \(worst)")
        #expect(cache.length == 6 && cache.rowCount == 3 && cache.sentence == [1, 0, 0])
    }
}
