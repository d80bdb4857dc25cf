import ReplicaCore

/// Tolerance for central differences in float32: with ε = 1e-3 the truncation error is O(ε²) and
/// the rounding error about 1e-7·|L|/ε ≈ 1e-4 relative, so 1e-2 leaves a wide margin while a wrong
/// gradient (a missing term, a transposed product) is off by far more.
public let finiteDifferenceTolerance = 1e-2

/// The outcome of comparing analytic and numerical directional derivatives.
public struct GradientCheckResult: CustomStringConvertible {
    public var analytic: Double
    public var numerical: Double
    public var relativeError: Double { abs(analytic - numerical) / max(abs(analytic), abs(numerical), 1e-6) }
    public var description: String { "analytic \(analytic), numerical \(numerical), relative error \(relativeError)" }
}

/// Checks a layer's backward pass by central differences along random directions.
///
/// `loss()` runs forward on the current parameters and `inputs` and returns a scalar (sum the
/// output against a fixed random tensor, in Double). `gradients()` runs forward and backward
/// once, adding parameter gradients into `arena` (zeroed here first) and returning the
/// gradients of `inputs`, in order. Directions are random over every parameter and input.
public func checkGradients(
    arena: ParameterArena?, inputs: [Tensor], seed: UInt64 = 1, epsilon: Float = 1e-3, directions: Int = 3,
    loss: () -> Double, gradients: () -> [Tensor]
) -> [GradientCheckResult] {
    var generator = SeededGenerator(seed: seed, 0x6664)
    arena?.zeroGradients()
    let inputGradients = gradients()
    precondition(inputGradients.count == inputs.count, "gradients() returned \(inputGradients.count) tensors for \(inputs.count) inputs")
    let parameterGradient = arena.map { $0.allGradients.copy() }
    var results: [GradientCheckResult] = []
    for _ in 0..<directions {
        let parameterDirection = arena.map { a -> Tensor in
            let v = Tensor(zeros: [a.count]); v.fillUniform(bound: 1, using: &generator); return v
        }
        let inputDirections = inputs.map { x -> Tensor in
            let v = Tensor(zeros: x.shape); v.fillUniform(bound: 1, using: &generator); return v
        }
        var analytic = 0.0
        if let parameterGradient, let parameterDirection { analytic += dot(parameterGradient, parameterDirection) }
        for (g, v) in zip(inputGradients, inputDirections) { analytic += dot(g, v) }

        func shift(by amount: Float) {
            if let arena, let parameterDirection { axpy(amount, parameterDirection, arena.allValues) }
            for (x, v) in zip(inputs, inputDirections) { axpy(amount, v, x) }
        }
        shift(by: epsilon)
        let plus = loss()
        shift(by: -2 * epsilon)
        let minus = loss()
        shift(by: epsilon)
        results.append(GradientCheckResult(analytic: analytic, numerical: (plus - minus) / (2 * Double(epsilon))))
    }
    return results
}

/// Σ a·b in Double.
public func dot(_ a: Tensor, _ b: Tensor) -> Double {
    precondition(a.count == b.count, "dot of \(a.shape) and \(b.shape)")
    var sum = 0.0
    for i in 0..<a.count { sum += Double(a[i]) * Double(b[i]) }
    return sum
}

/// y += alpha · x.
public func axpy(_ alpha: Float, _ x: Tensor, _ y: Tensor) {
    precondition(x.count == y.count, "axpy of \(x.shape) into \(y.shape)")
    for i in 0..<x.count { y[i] += alpha * x[i] }
}
