import ReplicaCore

// Legend: N rows (the product of the leading dimensions), C features (the last dimension),
// M rows counted in the statistics (the unmasked rows, summed over ranks when reduced).

/// Batch normalisation of each feature over the rows, as PyTorch's BatchNorm1d. [N, C] -> [N, C]
///
/// Training mode normalises with the batch mean and biased variance and updates the running
/// statistics with `momentum` (the running variance takes the unbiased batch variance);
/// evaluation mode normalises with the running statistics. The running statistics are arena
/// buffers and stay rank-local: the engine decides which rank's (or which average) evaluation
/// and checkpoints use.
///
/// Row mask: rows whose `rowMask` entry is false (padding) are left out of the statistics, but
/// their outputs are still computed with the batch statistics, so the layer stays shape-preserving
/// and the gradient stays exact: a masked row's input receives only the direct term γ·dy/σ (it
/// did not shape the statistics), while the statistics' backward sums Σ dy and Σ dy·x̂ run over
/// every row whose output depends on them, masked or not. When the loss ignores padding (its
/// dy is 0) these are the sums over the unmasked rows alone.
///
/// SyncBN hook: when `statisticsReducer` is set, forward hands it the per-feature vector
/// [Σx (C), Σx² (C), M (1)] and backward the vector [Σdy (C), Σdy·x̂ (C)], each to be summed
/// in place across ranks (an all-reduce); the parameter gradients are added from the local sums
/// before that, since the engine all-reduces gradients anyway. Every rank must call it equally
/// often (same mode on all ranks). Nil keeps the statistics rank-local.
public final class BatchNorm: Layer {
    public let weight: ParameterSlot              // γ [C]
    public let bias: ParameterSlot                // β [C]
    public let runningMean: ParameterSlot         // buffer [C]
    public let runningVariance: ParameterSlot     // buffer [C]
    public let featureCount: Int
    public let momentum: Float
    public let epsilon: Float
    public var mode: Mode = .training
    /// Per row of the next forwards: false leaves the row out of the statistics. [N]
    public var rowMask: [Bool]?
    /// Sums its argument across ranks in place (SyncBN); nil keeps the statistics rank-local.
    public var statisticsReducer: ((inout [Double]) -> Void)?
    /// Mean of the last training forward's statistics. [C]
    public private(set) var lastBatchMean: [Float] = []
    /// Biased variance (the one used to normalise) of the last training forward. [C]
    public private(set) var lastBatchVariance: [Float] = []

    let arena: ParameterArena
    /// What `backward` needs: input [N, C]; mean, reciprocalStandardDeviation [C] (batch or running).
    struct Cache {
        var input: Tensor
        var mean: Tensor
        var reciprocalStandardDeviation: Tensor   // 1/√(variance + ε)
        var rowMask: [Bool]?                      // [N], nil: every row counts
        var statisticsCount: Double               // M
        var mode: Mode
    }
    var cache: Cache?

    public init(_ name: String, features: Int, momentum: Float = 0.1, epsilon: Float = 1e-5,
                arena: ParameterArena) {
        precondition(features > 0, "BatchNorm needs at least one feature, got \(features)")
        self.arena = arena
        featureCount = features
        self.momentum = momentum
        self.epsilon = epsilon
        weight = arena.declare("\(name).weight", shape: [features], decays: false)
        bias = arena.declare("\(name).bias", shape: [features], decays: false)
        runningMean = arena.declareBuffer("\(name).running_mean", shape: [features])
        runningVariance = arena.declareBuffer("\(name).running_var", shape: [features])
    }

    /// PyTorch's defaults: γ = 1, β = 0, running mean 0, running variance 1.
    public func initialize() {
        arena.value(weight).fill(1)
        arena.value(bias).zero()
        arena.buffer(runningMean).zero()
        arena.buffer(runningVariance).fill(1)
    }

    /// Sets `rowMask` and runs forward. [N, C] -> [N, C]
    public func forward(_ input: Tensor, rowMask: [Bool]?) -> Tensor {
        self.rowMask = rowMask
        return forward(input)
    }

    public func forward(_ input: Tensor) -> Tensor {
        let C = featureCount, N = input.rowCount
        precondition(input.columnCount == C, "BatchNorm expects [..., \(C)], got \(input.shape)")
        let mask = mode == .training ? rowMask : nil
        if let mask { precondition(mask.count == N, "BatchNorm rowMask has \(mask.count) entries for \(N) rows") }
        let mean = Tensor(zeros: [C]), reciprocalStandardDeviation = Tensor(zeros: [C])
        let runningMean = arena.buffer(runningMean).data, runningVariance = arena.buffer(runningVariance).data
        var statisticsCount = 0.0

        switch mode {
        case .training:
            var statistics = [Double](repeating: 0, count: 2 * C + 1)   // [Σx (C), Σx² (C), M]
            statistics.withUnsafeMutableBufferPointer { s in
                let sums = s.baseAddress!, squares = sums + C
                var rows = 0
                for n in 0..<N where mask?[n] ?? true {
                    let x = input.data + n * C
                    for c in 0..<C { let v = Double(x[c]); sums[c] += v; squares[c] += v * v }
                    rows += 1
                }
                s[2 * C] = Double(rows)
            }
            statisticsReducer?(&statistics)
            precondition(statistics.count == 2 * C + 1, "BatchNorm statisticsReducer changed the vector's length")
            statisticsCount = statistics[2 * C]
            precondition(statisticsCount > 1, "BatchNorm needs more than one unmasked row in training, got \(statisticsCount)")
            let momentum = Double(momentum)
            var variance = [Float](repeating: 0, count: C)
            for c in 0..<C {
                let m = statistics[c] / statisticsCount
                let v = Swift.max(statistics[C + c] / statisticsCount - m * m, 0)   // biased
                mean[c] = Float(m)
                variance[c] = Float(v)
                reciprocalStandardDeviation[c] = Float(1 / (v + Double(epsilon)).squareRoot())
                let unbiased = v * statisticsCount / (statisticsCount - 1)
                runningMean[c] = Float((1 - momentum) * Double(runningMean[c]) + momentum * m)
                runningVariance[c] = Float((1 - momentum) * Double(runningVariance[c]) + momentum * unbiased)
            }
            lastBatchMean = mean.scalars
            lastBatchVariance = variance
        case .evaluation:
            for c in 0..<C {
                mean[c] = runningMean[c]
                reciprocalStandardDeviation[c] = 1 / (runningVariance[c] + epsilon).squareRoot()
            }
        }

        // y = (x − μ)·γ/σ + β
        let scale = Tensor(zeros: [C])                            // γ/σ
        let gamma = arena.value(weight).data, beta = arena.value(bias).data
        for c in 0..<C { scale[c] = gamma[c] * reciprocalStandardDeviation[c] }
        let output = Tensor(zeros: input.shape)
        let mu = mean.data, g = scale.data
        for n in 0..<N {
            let x = input.data + n * C, y = output.data + n * C
            for c in 0..<C { y[c] = (x[c] - mu[c]) * g[c] + beta[c] }
        }
        cache = Cache(input: input, mean: mean, reciprocalStandardDeviation: reciprocalStandardDeviation,
                      rowMask: mask, statisticsCount: statisticsCount, mode: mode)
        return output
    }

    public func backward(_ outputGradient: Tensor) -> Tensor {
        guard let cache else { preconditionFailure("BatchNorm.backward before forward") }
        let input = cache.input
        precondition(outputGradient.shape == input.shape,
                     "BatchNorm.backward expects a gradient of \(input.shape), got \(outputGradient.shape)")
        let C = featureCount, N = input.rowCount
        let mu = cache.mean.data, reciprocal = cache.reciprocalStandardDeviation.data

        // Σdy and Σdy·x̂ over every row: dβ and dγ, and the statistics' backward terms.
        var sums = [Double](repeating: 0, count: 2 * C)        // [Σdy (C), Σdy·x̂ (C)]
        sums.withUnsafeMutableBufferPointer { s in
            let gradientSums = s.baseAddress!, projectionSums = gradientSums + C
            for n in 0..<N {
                let x = input.data + n * C, dy = outputGradient.data + n * C
                for c in 0..<C {
                    gradientSums[c] += Double(dy[c])
                    projectionSums[c] += Double(dy[c] * ((x[c] - mu[c]) * reciprocal[c]))
                }
            }
        }
        let gammaGradient = arena.gradient(weight).data, betaGradient = arena.gradient(bias).data
        for c in 0..<C {
            betaGradient[c] += Float(sums[c])
            gammaGradient[c] += Float(sums[C + c])
        }

        let scale = Tensor(zeros: [C])                            // γ/σ
        let gamma = arena.value(weight).data
        for c in 0..<C { scale[c] = gamma[c] * reciprocal[c] }
        let g = scale.data
        let inputGradient = Tensor(zeros: input.shape)
        guard cache.mode == .training else {
            // The running statistics are constants: dx = γ/σ · dy.
            for n in 0..<N {
                let dy = outputGradient.data + n * C, dx = inputGradient.data + n * C
                for c in 0..<C { dx[c] = g[c] * dy[c] }
            }
            return inputGradient
        }

        statisticsReducer?(&sums)
        precondition(sums.count == 2 * C, "BatchNorm statisticsReducer changed the vector's length")
        let meanGradient = Tensor(zeros: [C]), meanProjection = Tensor(zeros: [C])   // Σdy/M, Σdy·x̂/M
        for c in 0..<C {
            meanGradient[c] = Float(sums[c] / cache.statisticsCount)
            meanProjection[c] = Float(sums[C + c] / cache.statisticsCount)
        }
        // dx = γ/σ · (dy − Σdy/M − x̂·Σdy·x̂/M) for rows in the statistics, γ/σ · dy for masked rows.
        let a = meanGradient.data, b = meanProjection.data
        for n in 0..<N {
            let x = input.data + n * C, dy = outputGradient.data + n * C, dx = inputGradient.data + n * C
            if cache.rowMask?[n] ?? true {
                for c in 0..<C { dx[c] = g[c] * (dy[c] - a[c] - (x[c] - mu[c]) * reciprocal[c] * b[c]) }
            } else {
                for c in 0..<C { dx[c] = g[c] * dy[c] }
            }
        }
        return inputGradient
    }
}
