import Foundation
import ReplicaCore
import ReplicaData
import ReplicaDistributed
import ReplicaModels
import ReplicaNN
import ReplicaTrain

/// Shannon entropy in nats of a probability vector; zero entries contribute nothing.
public func shannonEntropy<S: Sequence>(_ probabilities: S) -> Double where S.Element: BinaryFloatingPoint {
    var entropy = 0.0
    for p in probabilities where p > 0 { entropy -= Double(p) * log(Double(p)) }
    return entropy
}

/// What one application of attention to given queries and keys looks like, with or without 1/√d_k.
///
/// Rows are query positions of every head; a row that sees m keys (m ≥ 2) counts in the means, its
/// entropy also as a fraction of log m, the entropy of uniform attention. Gradient norms are those
/// of ∂L/∂Q and ∂L/∂K for L = ⟨softmax(s)·V, G⟩ with a fixed upstream gradient G, computed by
/// `AttentionKernel.backward`; "per head" is the Frobenius norm of one head's [n, d_k] block,
/// root-mean-square over the heads measured.
public struct AttentionStatistics: Sendable {
    public var entropy = 0.0                  // nats, mean over rows
    public var entropyFraction = 0.0          // mean of H / log m
    public var maximumProbability = 0.0       // mean over rows of the largest weight
    public var saturatedFraction = 0.0        // rows whose largest weight exceeds 0.99
    public var scoreStandardDeviation = 0.0   // of the scores the softmax sees (after the factor, if any)
    public var queryGradientNorm = 0.0
    public var keyGradientNorm = 0.0
    /// Median over rows of ‖∂L/∂q_i‖ (one query's gradient): near 0 when most rows are saturated.
    public var medianRowQueryGradient = 0.0
    public init() {}
}

/// Runs `AttentionKernel` forward and backward on Q, K, V given as strided [B, T, NH·hs] operands.
///
/// B batch, T length, NH heads, hs head size (d_k). `upstream` [B, T, NH·hs] is the output gradient.
public func measureAttention(q: StridedOperand, k: StridedOperand, v: StridedOperand, upstream: Tensor,
                             batch B: Int, length T: Int, heads NH: Int, headSize hs: Int,
                             causal: Bool, scaled: Bool) -> AttentionStatistics {
    precondition(upstream.count == B * T * NH * hs, "upstream gradient must be [\(B), \(T), \(NH * hs)]")
    let kernel = AttentionKernel("study", heads: NH, headSize: hs, scorer: .dot, arena: ParameterArena())
    kernel.scalesScores = scaled
    let width = NH * hs
    let output = Tensor(zeros: [B, T, width])
    kernel.forward(q: q, k: k, v: v, output: StridedOperand(output.data, rowStride: width),
                   batch: B, queryLength: T, keyLength: T, causal: causal, keyMask: nil)
    let dq = Tensor(zeros: [B, T, width]), dk = Tensor(zeros: [B, T, width]), dv = Tensor(zeros: [B, T, width])
    kernel.backward(outputGradient: StridedOperand(upstream.data, rowStride: width), output: StridedOperand(output.data, rowStride: width),
                    q: q, k: k, v: v,
                    qGradient: StridedOperand(dq.data, rowStride: width), kGradient: StridedOperand(dk.data, rowStride: width),
                    vGradient: StridedOperand(dv.data, rowStride: width))
    guard let probabilities = kernel.lastProbabilities else { preconditionFailure("attention kernel kept no probabilities") }
    var result = AttentionStatistics()
    var rows = 0
    var rowGradients: [Double] = []
    var scoreSum = 0.0, scoreSquares = 0.0, scoreCount = 0.0
    let factor = scaled ? 1 / Double(hs).squareRoot() : 1
    for b in 0..<B {
        for h in 0..<NH {
            for i in 0..<T {
                let visible = causal ? i + 1 : T
                guard visible >= 2 else { continue }
                let row = UnsafeBufferPointer(start: probabilities.data + ((b * NH + h) * T + i) * T, count: visible)
                let entropy = shannonEntropy(row)
                result.entropy += entropy
                result.entropyFraction += entropy / log(Double(visible))
                let largest = Double(row.max()!)
                result.maximumProbability += largest
                if largest > 0.99 { result.saturatedFraction += 1 }
                rows += 1
                let dqi = dq.data + (b * T + i) * width + h * hs
                rowGradients.append((0..<hs).reduce(0.0) { $0 + Double(dqi[$1]) * Double(dqi[$1]) }.squareRoot())
                let qi = q.data + b * T * q.rowStride + i * q.rowStride + q.offset + h * hs
                for j in 0..<visible {
                    let kj = k.data + b * T * k.rowStride + j * k.rowStride + k.offset + h * hs
                    var score = 0.0
                    for d in 0..<hs { score += Double(qi[d]) * Double(kj[d]) }
                    score *= factor
                    scoreSum += score
                    scoreSquares += score * score
                    scoreCount += 1
                }
            }
        }
    }
    result.entropy /= Double(max(rows, 1))
    result.entropyFraction /= Double(max(rows, 1))
    result.maximumProbability /= Double(max(rows, 1))
    result.saturatedFraction /= Double(max(rows, 1))
    rowGradients.sort()
    result.medianRowQueryGradient = rowGradients.isEmpty ? 0 : rowGradients[rowGradients.count / 2]
    let meanScore = scoreSum / max(scoreCount, 1)
    result.scoreStandardDeviation = max(scoreSquares / max(scoreCount, 1) - meanScore * meanScore, 0).squareRoot()
    result.queryGradientNorm = (sumOfSquares(dq) / Double(B * NH)).squareRoot()
    result.keyGradientNorm = (sumOfSquares(dk) / Double(B * NH)).squareRoot()
    return result
}

private func sumOfSquares(_ tensor: Tensor) -> Double {
    var sum = 0.0
    for i in 0..<tensor.count { sum += Double(tensor.data[i]) * Double(tensor.data[i]) }
    return sum
}

/// Softmax entropy and gradient flow of dot-product attention with and without 1/√d_k, on random
/// and on trained queries and keys, and char-LM training curves with and without the factor.
public struct AttentionScalingStudy {
    public var headSizes = [16, 32, 64, 128, 256, 512]
    public var sequenceLength = 64
    /// Independent random heads per head size (their statistics are averaged).
    public var randomHeads = 8
    /// Head sizes of the char-LM pairs trained with and without the factor (heads = embedding / size).
    public var curveHeadSizes = [32, 128]
    public var curveSteps = 500
    public var evaluationInterval = 100
    public var evaluationBatches = 40
    public var model = GPTConfig()              // nanoGPT's baby config: 4 layers, 128 wide, block 64
    public var seed: UInt64 = 1337
    /// Validation blocks whose queries and keys the trained rows use.
    public var trainedBlocks = 8
    public init() {}

    public struct RandomRow: Sendable {
        public var headSize: Int
        public var scaled: Bool
        public var statistics: AttentionStatistics
    }

    /// Random inputs: q, k, v entries N(0, 1), upstream gradient entries N(0, 1/d_k) (unit expected
    /// row norm), full (non-causal) attention over `sequenceLength` keys; the same draws with and
    /// without the factor.
    public func randomRows() -> [RandomRow] {
        var rows: [RandomRow] = []
        let T = sequenceLength, NH = randomHeads
        for hs in headSizes {
            var generator = SeededGenerator(seed: seed, 0x7163_6b76, UInt64(hs))
            let width = NH * hs
            let q = Tensor(zeros: [1, T, width]), k = Tensor(zeros: [1, T, width]), v = Tensor(zeros: [1, T, width])
            let upstream = Tensor(zeros: [1, T, width])
            for tensor in [q, k, v] { tensor.fillNormal(standardDeviation: 1, using: &generator) }
            upstream.fillNormal(standardDeviation: 1 / Float(hs).squareRoot(), using: &generator)
            for scaled in [true, false] {
                let statistics = measureAttention(
                    q: StridedOperand(q.data, rowStride: width), k: StridedOperand(k.data, rowStride: width),
                    v: StridedOperand(v.data, rowStride: width), upstream: upstream,
                    batch: 1, length: T, heads: NH, headSize: hs, causal: false, scaled: scaled)
                rows.append(RandomRow(headSize: hs, scaled: scaled, statistics: statistics))
            }
        }
        return rows
    }

    public struct TrainedRow: Sendable {
        /// Where the queries and keys come from ("checkpoint", "trained with 1/√d_k", ...).
        public var source: String
        public var headSize: Int
        /// Whether the model was trained with the factor (nil: unknown).
        public var trainedScaled: Bool?
        /// Whether the factor is applied in this measurement.
        public var scaled: Bool
        /// Mean over layers, and per layer.
        public var statistics: AttentionStatistics
        public var perLayer: [AttentionStatistics]
    }

    /// Trained inputs: each attention layer's own Q, K and V on `trainedBlocks` validation blocks
    /// (causal, as the model uses them), upstream gradient N(0, 1/d_k); with and without the factor.
    public func trainedRows(model: GPT, validation: [Int32], source: String, trainedScaled: Bool?) -> [TrainedRow] {
        let T = model.config.blockSize, B = max(1, min(trainedBlocks, validation.count / T))
        precondition(validation.count > T, "validation text of \(validation.count) tokens is shorter than a block of \(T)")
        let spacing = max(1, (validation.count - T) / B)
        var ids: [Int32] = []
        for b in 0..<B { ids += validation[(b * spacing)..<(b * spacing + T)] }
        let previousMode = model.mode
        model.mode = .evaluation
        defer { model.mode = previousMode }
        _ = model.forward(ids, batch: B, length: T)
        let C = model.config.embedding, NH = model.config.headCount, hs = C / NH
        var generator = SeededGenerator(seed: seed, 0x7472_6e64)
        let upstream = Tensor(zeros: [B, T, C])
        upstream.fillNormal(standardDeviation: 1 / Float(hs).squareRoot(), using: &generator)
        return [true, false].map { scaled in
            let perLayer = model.attentionLayers.map { layer -> AttentionStatistics in
                guard let fused = layer.qkvOutput else { preconditionFailure("attention layer kept no queries and keys") }
                return measureAttention(q: StridedOperand(fused.data, rowStride: 3 * C, offset: 0),
                                        k: StridedOperand(fused.data, rowStride: 3 * C, offset: C),
                                        v: StridedOperand(fused.data, rowStride: 3 * C, offset: 2 * C), upstream: upstream,
                                        batch: B, length: T, heads: NH, headSize: hs, causal: true, scaled: scaled)
            }
            return TrainedRow(source: source, headSize: hs, trainedScaled: trainedScaled, scaled: scaled,
                              statistics: layerMean(perLayer), perLayer: perLayer)
        }
    }

    public struct Curve {
        public var headSize: Int
        public var scaled: Bool
        /// (step, validation loss), step 0 first.
        public var validationLoss: [(step: Int, loss: Double)]
        public var seconds: Double
        /// The trained model, for `trainedRows`.
        public var model: GPT
    }

    /// Trains the char-LM at head size `headSize` (same seed, data order and initialisation either
    /// way) with or without the factor, evaluating every `evaluationInterval` steps.
    public func trainCurve(text: String, headSize: Int, scaled: Bool, progress: (String) -> Void) throws -> Curve {
        var config = model
        precondition(config.embedding % headSize == 0, "embedding \(config.embedding) is not a multiple of head size \(headSize)")
        config.headCount = config.embedding / headSize
        var options = TrainingOptions()
        options.seed = seed
        options.steps = curveSteps
        options.warmupSteps = min(100, curveSteps / 5)
        options.evaluationBatches = evaluationBatches
        options.evaluationInterval = evaluationInterval
        options.progress = .none
        let communicator = LocalCommunicator()
        let task = try CharLMTask(text: text, dataDescription: "study text", config: config, options: options, rank: 0, ranks: 1)
        for layer in task.model.attentionLayers { layer.kernel.scalesScores = scaled }
        let trainer = try Trainer(task: task, options: options, communicator: communicator)
        let started = Date()
        var losses = [(step: 0, loss: try task.evaluate(communicator: communicator)["val_loss"] ?? .nan)]
        let label = "d_k \(headSize) \(scaled ? "with" : "without") 1/√d_k"
        for step in 0..<curveSteps {
            let result = try trainer.trainStep(step)
            if !result.applied { progress("\(label): step \(step + 1) skipped (non-finite loss or gradient)") }
            if (step + 1) % max(1, evaluationInterval) == 0 || step + 1 == curveSteps {
                let loss = try task.evaluate(communicator: communicator)["val_loss"] ?? .nan
                losses.append((step + 1, loss))
                progress(String(format: "%@: step %d val loss %.4f (%.0f s)", label, step + 1, loss, Date().timeIntervalSince(started)))
            }
        }
        return Curve(headSize: headSize, scaled: scaled, validationLoss: losses, seconds: Date().timeIntervalSince(started),
                     model: task.model)
    }
}

/// Field-wise mean of statistics (over layers).
private func layerMean(_ items: [AttentionStatistics]) -> AttentionStatistics {
    var mean = AttentionStatistics()
    let n = Double(max(items.count, 1))
    for s in items {
        mean.entropy += s.entropy / n
        mean.entropyFraction += s.entropyFraction / n
        mean.maximumProbability += s.maximumProbability / n
        mean.scoreStandardDeviation += s.scoreStandardDeviation / n
        mean.queryGradientNorm += s.queryGradientNorm / n
        mean.keyGradientNorm += s.keyGradientNorm / n
        mean.saturatedFraction += s.saturatedFraction / n
        mean.medianRowQueryGradient += s.medianRowQueryGradient / n
    }
    return mean
}
