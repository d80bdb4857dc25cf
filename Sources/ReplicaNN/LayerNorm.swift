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
    var reciprocalStandardDeviation: [Float] = []

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
        reciprocalStandardDeviation = [Float](repeating: 0, count: N)
        let gamma = arena.value(weight).data
        let beta = bias.map { arena.value($0).data }
        for row in 0..<N {
            let x = input.data + row * C, xhat = normalized.data + row * C, y = output.data + row * C
            var sum: Float = 0
            for j in 0..<C { sum += x[j] }
            let mean = sum / Float(C)
            var squares: Float = 0
            for j in 0..<C { let d = x[j] - mean; squares += d * d }
            let rstd = 1 / (squares / Float(C) + epsilon).squareRoot()
            reciprocalStandardDeviation[row] = rstd
            for j in 0..<C { xhat[j] = (x[j] - mean) * rstd }
            if let beta {
                for j in 0..<C { y[j] = xhat[j] * gamma[j] + beta[j] }
            } else {
                for j in 0..<C { y[j] = xhat[j] * gamma[j] }
            }
        }
        self.normalized = normalized
        return output
    }

    public func backward(_ outputGradient: Tensor) -> Tensor {
        guard let normalized else { preconditionFailure("LayerNorm.backward before forward") }
        let C = featureCount, N = normalized.rowCount
        let inputGradient = Tensor(uninitialized: normalized.shape)
        let gamma = arena.value(weight).data
        let dGamma = arena.gradient(weight).data
        let dBeta = bias.map { arena.gradient($0).data }
        // dx = rstd · (g − mean(g) − x̂ · mean(g·x̂)) with g = dy·γ (llm.c layernorm_backward).
        for row in 0..<N {
            let dy = outputGradient.data + row * C, xhat = normalized.data + row * C, dx = inputGradient.data + row * C
            var meanG: Float = 0, meanGX: Float = 0
            for j in 0..<C {
                let g = dy[j] * gamma[j]
                meanG += g
                meanGX += g * xhat[j]
                dGamma[j] += dy[j] * xhat[j]
            }
            if let dBeta { for j in 0..<C { dBeta[j] += dy[j] } }
            meanG /= Float(C)
            meanGX /= Float(C)
            let rstd = reciprocalStandardDeviation[row]
            for j in 0..<C { dx[j] = rstd * (dy[j] * gamma[j] - meanG - xhat[j] * meanGX) }
        }
        return inputGradient
    }
}
