import Foundation
import Testing
import ReplicaCore
import ReplicaNN
import _ReplicaTestSupport

/// Float32 updates against a Double reference: a few ulps per operation over three steps.
private let referenceTolerance: Float = 1e-5

/// A [3, 3] weight that decays and a [2] bias that does not: 11 elements, so each slot ends in a
/// partial 8-lane chunk.
private func tinyArena() -> (arena: ParameterArena, weight: ParameterSlot, bias: ParameterSlot) {
    let arena = ParameterArena()
    let weight = arena.declare("fc.weight", shape: [3, 3], decays: true)
    let bias = arena.declare("fc.bias", shape: [2], decays: false)
    arena.allocate()
    arena.allValues.assign(Tensor(shape: [11], values: initialValues.map(Float.init)))
    return (arena, weight, bias)
}

private let initialValues: [Double] = [0.5, -1.25, 2, 0.75, -0.3, 1.5, -2.5, 0.1, 1, 0.4, -0.6]
private let decayMask = Array(repeating: true, count: 9) + [false, false]
private let stepGradients: [[Double]] = [
    [0.1, -0.2, 0.3, -0.4, 0.5, -0.6, 0.7, -0.8, 0.9, 1.0, -1.1],
    [-0.05, 0.25, 0.1, 0.4, -0.5, 0.2, 0.0, 0.3, -0.9, 0.6, 0.2],
    [0.3, 0.1, -0.2, 0.05, 0.15, -0.35, 0.45, -0.55, 0.65, -0.75, 0.85],
]
private let stepRates: [Float] = [0.1, 0.05, 0.02]

/// Runs `optimizer` over the three steps of `stepGradients` and `stepRates`.
private func runThreeSteps(_ optimizer: Optimizer, on arena: ParameterArena) {
    for (gradient, rate) in zip(stepGradients, stepRates) {
        arena.allGradients.assign(Tensor(shape: [11], values: gradient.map(Float.init)))
        optimizer.step(arena: arena, learningRate: rate)
    }
}

/// torch.optim.SGD (dampening 0) in Double.
private func referenceSGD(momentum: Double, nesterov: Bool, weightDecay: Double) -> [Double] {
    var theta = initialValues, buffer = Array(repeating: 0.0, count: theta.count)
    for (gradients, rate) in zip(stepGradients, stepRates) {
        for i in theta.indices {
            var g = gradients[i] + (decayMask[i] ? weightDecay : 0) * theta[i]
            if momentum != 0 {
                buffer[i] = momentum * buffer[i] + g
                g = nesterov ? g + momentum * buffer[i] : buffer[i]
            }
            theta[i] -= Double(rate) * g
        }
    }
    return theta
}

/// torch.optim.Adam (L2) or torch.optim.AdamW (decoupled) in Double.
private func referenceAdam(beta1: Double, beta2: Double, epsilon: Double, weightDecay: Double, decoupled: Bool) -> [Double] {
    var theta = initialValues
    var m = Array(repeating: 0.0, count: theta.count), v = m
    for (index, (gradients, rate)) in zip(stepGradients, stepRates).enumerated() {
        let t = Double(index + 1), lr = Double(rate)
        for i in theta.indices {
            let decay = decayMask[i] ? weightDecay : 0
            var g = gradients[i]
            if decoupled { theta[i] *= 1 - lr * decay } else { g += decay * theta[i] }
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            let mHat = m[i] / (1 - pow(beta1, t)), vHat = v[i] / (1 - pow(beta2, t))
            theta[i] -= lr * mHat / (vHat.squareRoot() + epsilon)
        }
    }
    return theta
}

/// The optimisers under test, as test arguments.
enum OptimizerKind: String, CaseIterable, Sendable {
    case sgd, momentum, nesterov, adam, adamW

    func make() -> Optimizer {
        switch self {
        case .sgd: return SGD(weightDecay: 0.1)
        case .momentum: return SGD(momentum: 0.9, weightDecay: 0.1)
        case .nesterov: return SGD(momentum: 0.9, nesterov: true, weightDecay: 0.1)
        case .adam: return Adam(beta1: 0.8, beta2: 0.95, epsilon: 1e-6, weightDecay: 0.1)
        case .adamW: return AdamW(beta1: 0.8, beta2: 0.95, epsilon: 1e-6, weightDecay: 0.1)
        }
    }

    var reference: [Double] {
        switch self {
        case .sgd: return referenceSGD(momentum: 0, nesterov: false, weightDecay: 0.1)
        case .momentum: return referenceSGD(momentum: 0.9, nesterov: false, weightDecay: 0.1)
        case .nesterov: return referenceSGD(momentum: 0.9, nesterov: true, weightDecay: 0.1)
        case .adam: return referenceAdam(beta1: 0.8, beta2: 0.95, epsilon: 1e-6, weightDecay: 0.1, decoupled: false)
        case .adamW: return referenceAdam(beta1: 0.8, beta2: 0.95, epsilon: 1e-6, weightDecay: 0.1, decoupled: true)
        }
    }
}

@Suite struct OptimizerTests {
    @Test(arguments: OptimizerKind.allCases)
    func threeStepsMatchThePyTorchFormulas(kind: OptimizerKind) {
        let (arena, _, _) = tinyArena()
        let optimizer = kind.make()
        runThreeSteps(optimizer, on: arena)
        #expect(optimizer.stepCount == 3)
        let difference = maximumRelativeDifference(arena.allValues.scalars, kind.reference.map(Float.init))
        #expect(difference < referenceTolerance, "\(kind): \(arena.allValues.scalars) vs \(kind.reference)")
    }

    /// ZeRO-1's shards: optimizers that each update only some ranges (here cutting the weight
    /// mid-chunk and spanning into the bias) give, together, exactly the whole update.
    @Test(arguments: OptimizerKind.allCases)
    func shardsOfRangesTogetherGiveTheWholeUpdateBitForBit(kind: OptimizerKind) {
        let (whole, _, _) = tinyArena()
        runThreeSteps(kind.make(), on: whole)
        let (sharded, _, _) = tinyArena()
        let shards: [[Range<Int>]] = [[0..<3, 7..<10], [3..<7, 10..<11]]
        let optimizers = shards.map { _ in kind.make() }
        for (gradient, rate) in zip(stepGradients, stepRates) {
            sharded.allGradients.assign(Tensor(shape: [11], values: gradient.map(Float.init)))
            for (optimizer, ranges) in zip(optimizers, shards) { optimizer.step(arena: sharded, learningRate: rate, ranges: ranges) }
        }
        #expect(sharded.allValues.scalars == whole.allValues.scalars)
        // Each holds the state of its 6 or 5 elements only.
        if kind != .sgd { #expect(optimizers.map { $0.state().values.map(\.count).max()! } == [6, 5]) }
    }

    @Test func adamWDecaysOnlySlotsDeclaredToDecay() {
        let (arena, weight, bias) = tinyArena()
        let before = arena.allValues.copy()
        // Zero gradients: Adam's update is 0, so only the decoupled decay moves parameters.
        AdamW(weightDecay: 0.1).step(arena: arena, learningRate: 0.5)
        let shrink = Float(1 - 0.5 * 0.1)
        for i in weight.range { #expect(arena.allValues[i] == before[i] * shrink) }
        for i in bias.range { #expect(arena.allValues[i] == before[i]) }
    }

    @Test func adamAddsWeightDecayToTheGradientOnlyWhereItDecays() {
        let (arena, weight, bias) = tinyArena()
        let before = arena.allValues.copy()
        Adam(weightDecay: 0.1).step(arena: arena, learningRate: 0.01)
        // First step with g = wd·θ: m̂/√v̂ = sign(θ), so θ moves by lr against its sign.
        for i in weight.range {
            let expected = before[i] - 0.01 * (before[i] > 0 ? 1 : -1)
            #expect(abs(arena.allValues[i] - expected) < 1e-6)
        }
        for i in bias.range { #expect(arena.allValues[i] == before[i]) }
    }

    @Test func nesterovAddsTheMomentumLookAheadToTheStep() {
        let (plainArena, _, _) = tinyArena(), (nesterovArena, _, _) = tinyArena()
        let gradient = Tensor(shape: [11], values: stepGradients[0].map(Float.init))
        plainArena.allGradients.assign(gradient)
        nesterovArena.allGradients.assign(gradient)
        SGD(momentum: 0.5).step(arena: plainArena, learningRate: 0.1)
        SGD(momentum: 0.5, nesterov: true).step(arena: nesterovArena, learningRate: 0.1)
        for i in 0..<11 {
            // Step 1: buf = g; plain θ -= lr·g, Nesterov θ -= lr·(g + μ·g).
            let g = stepGradients[0][i], theta = initialValues[i]
            #expect(abs(Double(plainArena.allValues[i]) - (theta - 0.1 * g)) < 1e-6)
            #expect(abs(Double(nesterovArena.allValues[i]) - (theta - 0.1 * 1.5 * g)) < 1e-6)
        }
        #expect(plainArena.allValues.scalars != nesterovArena.allValues.scalars)
    }

    @Test(arguments: OptimizerKind.allCases)
    func reloadedStateContinuesBitIdentically(kind: OptimizerKind) throws {
        let (arena, _, _) = tinyArena()
        let original = kind.make()
        runThreeSteps(original, on: arena)
        // Through a safetensors file, as a checkpoint stores it.
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("replica-optimizer-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: file) }
        let state = original.state().sorted { $0.key < $1.key }.map { (name: $0.key, tensor: $0.value) }
        try SafeTensors.write(state, metadata: [:], to: file)
        let restored = kind.make()
        try restored.load(state: SafeTensors.read(from: file).tensors, arena: arena)
        #expect(restored.stepCount == 3)

        let (copy, _, _) = tinyArena()
        copy.allValues.assign(arena.allValues)
        for (gradient, rate) in zip(stepGradients.prefix(2), stepRates.prefix(2)) {
            for (target, optimizer) in [(arena, original), (copy, restored)] {
                target.allGradients.assign(Tensor(shape: [11], values: gradient.map(Float.init)))
                optimizer.step(arena: target, learningRate: rate)
            }
        }
        #expect(arena.allValues.scalars.map(\.bitPattern) == copy.allValues.scalars.map(\.bitPattern))
        for (name, tensor) in original.state() {
            #expect(tensor.scalars.map(\.bitPattern) == restored.state()[name]?.scalars.map(\.bitPattern), "\(name)")
        }
    }

    @Test func loadRejectsMissingAndMisSizedState() throws {
        let (arena, _, _) = tinyArena()
        let adam = Adam()
        runThreeSteps(adam, on: arena)
        var state = adam.state()
        #expect(Set(state.keys) == ["exp_avg", "exp_avg_sq", "step"])

        state["exp_avg"] = Tensor(zeros: [5])
        #expect(throws: UserError.self) { try Adam().load(state: state, arena: arena) }
        #expect(throws: UserError.self) { try adam.load(state: state) }
        state["exp_avg"] = nil
        let missing = #expect(throws: UserError.self) { try Adam().load(state: state) }
        #expect(missing?.description.contains("exp_avg") == true)
        #expect(throws: UserError.self) { try SGD(momentum: 0.9).load(state: adam.state()) }
        #expect(throws: UserError.self) { try Adam().load(state: ["step": Tensor(shape: [1], values: [1.5])]) }
    }

    @Test func freshStateLoadsAsAFreshOptimizer() throws {
        let restored = AdamW()
        try restored.load(state: AdamW().state())
        #expect(restored.stepCount == 0)
        let (arena, _, _) = tinyArena(), (reference, _, _) = tinyArena()
        runThreeSteps(restored, on: arena)
        runThreeSteps(AdamW(), on: reference)
        #expect(arena.allValues.scalars == reference.allValues.scalars)
    }

    @Test func clippingScalesGradientsToTheMaximumNorm() {
        let arena = ParameterArena()
        arena.declare("w", shape: [2], decays: true)
        arena.allocate()
        arena.allGradients.assign(Tensor(shape: [2], values: [3, 4]))
        #expect(gradientNorm(arena: arena) == 5)
        #expect(clipGradientNorm(arena: arena, maxNorm: 10) == 5)
        #expect(arena.allGradients.scalars == [3, 4])
        #expect(clipGradientNorm(arena: arena, maxNorm: 1) == 5)
        let scale = Float(1 / (5 + 1e-6))
        #expect(arena.allGradients.scalars == [3 * scale, 4 * scale])
        #expect(abs(gradientNorm(arena: arena) - 1) < 1e-6)
    }

    @Test func gradientNormAccumulatesEveryElement() {
        let arena = ParameterArena()
        arena.declare("w", shape: [37], decays: true)
        arena.declare("b", shape: [5], decays: false)
        arena.allocate()
        arena.allGradients.fill(0.5)
        // 42 elements of 0.5: √(42 · 0.25).
        #expect(abs(gradientNorm(arena: arena) - Float((42 * 0.25).squareRoot())) < 1e-6)
    }
}
