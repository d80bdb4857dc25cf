import ReplicaCore

/// Normalises each row to zero mean and unit variance, then scales (and shifts). [N, C] -> [N, C]
public final class LayerNorm: Layer {
    public let weight: ParameterSlot      // [C]
    public let bias: ParameterSlot?       // [C]
    public let featureCount: Int
    public let epsilon: Float
    let arena: ParameterArena
    // Cached by forward: normalised rows x̂ [N, C] and 1/σ per row [N].
    var normalized: Tensor?
    var reciprocalStandardDeviation: Tensor?

    public init(_ name: String, features: Int, bias: Bool = true, epsilon: Float = 1e-5, arena: ParameterArena) {
        self.arena = arena
        featureCount = features
        self.epsilon = epsilon
        weight = arena.declare("\(name).weight", shape: [features], decays: false)
        self.bias = bias ? arena.declare("\(name).bias", shape: [features], decays: false) : nil
    }

    /// γ = 1, β = 0.
    public func initialize() {
        arena.value(weight).fill(1)
        if let bias { arena.value(bias).zero() }
    }

    public func forward(_ input: Tensor) -> Tensor {
        let C = featureCount
        precondition(input.columnCount == C, "LayerNorm expects [..., \(C)], got \(input.shape)")
        let N = input.rowCount
        let output = Tensor(uninitialized: input.shape)
        let normalized = Tensor(uninitialized: input.shape)
        let reciprocal = Tensor(uninitialized: [N])
        let rstds = reciprocal.data
        let gamma = arena.value(weight).data
        let beta = bias.map { arena.value($0).data }
        ComputePool.forEachRange(count: N, grain: rowsPerThread(width: featureCount)) { rows in
            for row in rows {
                let x = input.data + row * C, xhat = normalized.data + row * C, y = output.data + row * C
                let mean = rowSum(x, count: C) / Float(C)
                let rstd = 1 / (rowSquaredDeviations(x, count: C, from: mean) / Float(C) + epsilon).squareRoot()
                rstds[row] = rstd
                // x̂ and y in one loop: x̂ is not read back
                if let beta {
                    for j in 0..<C { let h = (x[j] - mean) * rstd; xhat[j] = h; y[j] = multiplyAdd(h, gamma[j], beta[j]) }
                } else {
                    for j in 0..<C { let h = (x[j] - mean) * rstd; xhat[j] = h; y[j] = h * gamma[j] }
                }
            }
        }
        reciprocalStandardDeviation = reciprocal
        self.normalized = normalized
        return output
    }

    public func backward(_ outputGradient: Tensor) -> Tensor { backward(outputGradient, residual: nil) }

    /// The input's gradient plus `residualGradient` (a pre-norm block's skip connection, [N, C]),
    /// added in the same pass: a separate addition had read and written the rows once more.
    public func backward(_ outputGradient: Tensor, adding residualGradient: Tensor) -> Tensor {
        precondition(residualGradient.count == outputGradient.count,
                     "LayerNorm: a residual gradient of \(residualGradient.shape) for \(outputGradient.shape)")
        return backward(outputGradient, residual: residualGradient)
    }

    private func backward(_ outputGradient: Tensor, residual: Tensor?) -> Tensor {
        guard let normalized, let reciprocalStandardDeviation else { preconditionFailure("LayerNorm.backward before forward") }
        let C = featureCount, N = normalized.rowCount
        let inputGradient = Tensor(uninitialized: normalized.shape)
        let dGamma = arena.gradient(weight).data
        let dBeta = bias.map { arena.gradient($0).data }
        let rstds = reciprocalStandardDeviation.data
        // Rows split across the rank's threads; the first range adds its dγ and dβ straight into
        // the arena, each other one into a buffer of its own, added after in order.
        let parts = ComputePool.parts(count: N, grain: rowsPerThread(width: featureCount))
        let partials = Tensor(zeros: [max(parts - 1, 0), 2 * C])
        ComputePool.run(parts: parts) { part in
            let dGamma = part == 0 ? dGamma : partials.data + (part - 1) * 2 * C
            let dBeta = part == 0 ? dBeta : dBeta.map { _ in partials.data + (part - 1) * 2 * C + C }
            backwardRows(ComputePool.range(part, of: parts, count: N), outputGradient: outputGradient, normalized: normalized,
                         rstds: rstds, residual: residual, inputGradient: inputGradient, dGamma: dGamma, dBeta: dBeta)
        }
        for part in 1..<max(parts, 1) {
            let partial = partials.data + (part - 1) * 2 * C
            for j in 0..<C { dGamma[j] += partial[j] }
            if let dBeta { for j in 0..<C { dBeta[j] += partial[C + j] } }
        }
        return inputGradient
    }

    /// Backward of `rows`: their input gradient (plus `residual`'s rows), and their dγ (and dβ)
    /// added into the buffers given.
    private func backwardRows(_ rows: Range<Int>, outputGradient: Tensor, normalized: Tensor, rstds: UnsafeMutablePointer<Float>,
                              residual: Tensor?, inputGradient: Tensor, dGamma: UnsafeMutablePointer<Float>, dBeta: UnsafeMutablePointer<Float>?) {
        let C = featureCount
        let gamma = arena.value(weight).data
        // dx = rstd · (g − mean(g) − x̂ · mean(g·x̂)) with g = dy·γ (llm.c layernorm_backward).
        for row in rows {
            let dy = outputGradient.data + row * C, xhat = normalized.data + row * C, dx = inputGradient.data + row * C
            // Σ g and Σ g·x̂ in eight partial sums each; dγ += dy·x̂ alongside.
            var sumG = SIMD8<Float>(), sumGX = SIMD8<Float>()
            var j = 0
            while j + 8 <= C {
                let dyj = load8(dy + j), xj = load8(xhat + j), g = dyj * load8(gamma + j)
                sumG += g
                sumGX += g * xj
                store8(load8(dGamma + j) + dyj * xj, dGamma + j)
                j += 8
            }
            var meanG = sumG.sum(), meanGX = sumGX.sum()
            while j < C {
                let g = dy[j] * gamma[j]
                meanG += g
                meanGX += g * xhat[j]
                dGamma[j] += dy[j] * xhat[j]
                j += 1
            }
            if let dBeta { for j in 0..<C { dBeta[j] += dy[j] } }
            meanG /= Float(C)
            meanGX /= Float(C)
            let rstd = rstds[row]
            if let residual {
                let r = residual.data + row * C
                for j in 0..<C { dx[j] = multiplyAdd(rstd, dy[j] * gamma[j] - meanG - xhat[j] * meanGX, r[j]) }
            } else {
                for j in 0..<C { dx[j] = rstd * (dy[j] * gamma[j] - meanG - xhat[j] * meanGX) }
            }
        }
    }
}
