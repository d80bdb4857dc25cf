import Testing
import ReplicaCore
import ReplicaNN
import _ReplicaTestSupport

@Suite struct LinearTests {
    @Test(arguments: [true, false])
    func gradientsMatchFiniteDifferences(bias: Bool) {
        let arena = ParameterArena()
        let layer = Linear("fc", inputs: 5, outputs: 3, bias: bias, arena: arena)
        arena.allocate()
        var generator = SeededGenerator(seed: 1)
        layer.initializeUniform(using: &generator)
        let x = randomTensor([4, 5], seed: 2), r = randomTensor([4, 3], seed: 3)
        let results = checkGradients(arena: arena, inputs: [x],
            loss: { dot(layer.forward(x), r) },
            gradients: { _ = layer.forward(x); return [layer.backward(r)] })
        for result in results { #expect(result.relativeError < finiteDifferenceTolerance, "\(result)") }
    }

    @Test func outputIsInputTimesTransposedWeightPlusBias() {
        let arena = ParameterArena()
        let layer = Linear("fc", inputs: 2, outputs: 2, arena: arena)
        arena.allocate()
        arena.value(layer.weight).assign(Tensor(shape: [2, 2], values: [1, 2, 3, 4]))
        arena.value(layer.bias!).assign(Tensor(shape: [2], values: [10, 20]))
        let y = layer.forward(Tensor(shape: [1, 2], values: [1, 1]))
        #expect(y.scalars == [13, 27])
    }

    /// The residual added in the product (β = 1) gives the output plus the residual, with and
    /// without a bias; the residual is only read. Products of small integers, so every sum is exact.
    @Test(arguments: [true, false])
    func aResidualIsAddedToTheOutput(bias: Bool) {
        let arena = ParameterArena()
        let layer = Linear("fc", inputs: 2, outputs: 2, bias: bias, arena: arena)
        arena.allocate()
        arena.value(layer.weight).assign(Tensor(shape: [2, 2], values: [1, 2, 3, 4]))
        if bias { arena.value(layer.bias!).assign(Tensor(shape: [2], values: [10, 20])) }
        let x = Tensor(shape: [2, 2], values: [1, 1, 2, -1]), residual = Tensor(shape: [2, 2], values: [100, 200, 300, 400])
        let plain = layer.forward(x).scalars
        let summed = layer.forward(x, adding: residual).scalars
        #expect(summed == zip(plain, residual.scalars).map { $0 + $1 })
        #expect(residual.scalars == [100, 200, 300, 400])
    }
}
