import Testing
import ReplicaCore
import ReplicaNN
import _ReplicaTestSupport

/// Known values are exact in float32 (products of small binary fractions).
private let preluValueTolerance: Float = 0

@Suite struct PReLUTests {
    /// A PReLU on a fresh arena with slope `slope`.
    static func prelu(slope: Float = 0.25) -> (PReLU, ParameterArena) {
        let arena = ParameterArena()
        let layer = PReLU("act", arena: arena)
        arena.allocate()
        layer.initialize(slope: slope)
        return (layer, arena)
    }

    @Test(arguments: [Float(0.25), -0.7])
    func gradientsMatchFiniteDifferences(slope: Float) {
        let (layer, arena) = Self.prelu(slope: slope)
        let x = randomTensor([3, 7], seed: 31)
        for i in 0..<x.count { x[i] += x[i] >= 0 ? 0.1 : -0.1 }   // no finite difference crosses the kink
        let r = randomTensor([3, 7], seed: 32)
        let results = checkGradients(arena: arena, inputs: [x], directions: 4,
            loss: { dot(layer.forward(x), r) },
            gradients: { _ = layer.forward(x); return [layer.backward(r)] })
        for result in results { #expect(result.relativeError < finiteDifferenceTolerance, "\(result)") }
    }

    @Test func theSlopeGradientIsTheSumOverNegativeInputs() {
        let (layer, arena) = Self.prelu()
        arena.zeroGradients()
        _ = layer.forward(Tensor(shape: [4], values: [-2, 3, -0.5, 0]))
        let dx = layer.backward(Tensor(shape: [4], values: [1, 10, 4, 7]))
        #expect(dx.scalars == [0.25, 10, 1, 1.75])
        #expect(arena.gradient(layer.weight)[0] == -2 * 1 + -0.5 * 4)
    }

    @Test func itMatchesPyTorchsDefaultPReLU() {
        let (layer, arena) = Self.prelu()
        #expect(layer.slope == 0.25)
        let slot = arena.slot(named: "act.weight")
        #expect(slot?.shape == [1] && slot?.decays == false)
        let y = layer.forward(Tensor(shape: [2, 2], values: [-1, 2, -4, 0])).scalars
        for (value, expected) in zip(y, [Float(-0.25), 2, -1, 0]) { #expect(abs(value - expected) <= preluValueTolerance) }
    }
}
