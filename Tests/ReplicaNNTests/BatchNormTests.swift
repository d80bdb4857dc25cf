import Foundation
import Testing
import ReplicaCore
import ReplicaNN
import _ReplicaTestSupport

/// float32 results against Double references: statistics are summed in Double, so a few ulps.
private let batchNormTolerance: Float = 1e-5

/// A BatchNorm over `features` with PyTorch's initial state, or random γ ∈ [0.5, 1.5), β ∈ [-1, 1).
private func makeBatchNorm(features: Int, randomParametersSeed seed: UInt64? = nil) -> (BatchNorm, ParameterArena) {
    let arena = ParameterArena()
    let layer = BatchNorm("bn", features: features, arena: arena)
    arena.allocate()
    layer.initialize()
    if let seed {
        var generator = SeededGenerator(seed: seed)
        arena.value(layer.weight).fillUniform(bound: 0.5, using: &generator)
        for c in 0..<features { arena.value(layer.weight)[c] += 1 }
        arena.value(layer.bias).fillUniform(bound: 1, using: &generator)
    }
    return (layer, arena)
}

/// Per-feature mean and biased variance over the rows `mask` keeps, in Double. x: [N, C]
private func referenceStatistics(_ x: Tensor, mask: [Bool]? = nil) -> (mean: [Double], variance: [Double], count: Int) {
    let C = x.columnCount
    let rows = (0..<x.rowCount).filter { mask?[$0] ?? true }
    let mean = (0..<C).map { c in rows.map { Double(x[$0 * C + c]) }.reduce(0, +) / Double(rows.count) }
    let variance = (0..<C).map { c in
        rows.map { let d = Double(x[$0 * C + c]) - mean[c]; return d * d }.reduce(0, +) / Double(rows.count)
    }
    return (mean, variance, rows.count)
}

private func expectClose(_ a: [Float], _ b: [Double], _ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
    let difference = maximumRelativeDifference(a, b.map { Float($0) }, floor: 1e-3)
    #expect(difference < batchNormTolerance, "\(comment?.description ?? "") \(a) vs \(b)", sourceLocation: sourceLocation)
}

/// Records what a statistics reducer was handed.
private final class ReducerLog {
    var lengths: [Int] = []
    var counts: [Double] = []
}

@Suite struct BatchNormTests {
    @Test func normalisesEachFeatureWithTheBatchStatistics() {
        let (layer, _) = makeBatchNorm(features: 2)
        let x = Tensor(shape: [2, 2, 2], values: [1, 10, 2, 20, 3, 30, 4, 40])   // [B, T, C]: N = 4 rows
        let y = layer.forward(x)
        expectClose(layer.lastBatchMean, [2.5, 25])
        expectClose(layer.lastBatchVariance, [1.25, 125])
        let expected = (0..<8).map { i -> Double in
            let (mean, variance) = i % 2 == 0 ? (2.5, 1.25) : (25.0, 125.0)
            return (Double(x[i]) - mean) / (variance + 1e-5).squareRoot()
        }
        expectClose(y.scalars, expected)
    }

    @Test(arguments: ["training", "masked training", "evaluation"])
    func gradientsMatchFiniteDifferences(setting: String) {
        let (layer, arena) = makeBatchNorm(features: 4, randomParametersSeed: 5)
        let x = randomTensor([6, 4], seed: 2), r = randomTensor([6, 4], seed: 3)
        for i in 0..<x.count { x[i] = 2 * x[i] + 0.5 }
        switch setting {
        case "masked training":
            layer.rowMask = [true, false, true, true, false, true]
        case "evaluation":
            layer.mode = .evaluation
            arena.buffer(layer.runningMean).assign(Tensor(shape: [4], values: [0.3, -0.2, 0.1, 0.5]))
            arena.buffer(layer.runningVariance).assign(Tensor(shape: [4], values: [0.5, 2, 1.5, 0.8]))
        default:
            break
        }
        // Direction seed 7: the default seed's first direction is nearly orthogonal to this gradient
        // (derivative 0.002 against ~2 for the others), leaving float noise as the "error".
        let results = checkGradients(arena: arena, inputs: [x], seed: 7, directions: 4,
            loss: { dot(layer.forward(x), r) },
            gradients: { _ = layer.forward(x); return [layer.backward(r)] })
        for result in results { #expect(result.relativeError < finiteDifferenceTolerance, "\(setting): \(result)") }
    }

    @Test func runningStatisticsAfterOneStepAreMomentumTimesBatchStatistics() {
        let (layer, arena) = makeBatchNorm(features: 3)
        let x = randomTensor([8, 3], seed: 4)
        _ = layer.forward(x)
        let (mean, variance, count) = referenceStatistics(x)
        let unbiased = variance.map { $0 * Double(count) / Double(count - 1) }
        expectClose(arena.buffer(layer.runningMean).scalars, mean.map { 0.1 * $0 })
        expectClose(arena.buffer(layer.runningVariance).scalars, unbiased.map { 0.9 + 0.1 * $0 })

        let before = arena.allBuffers.scalars
        layer.mode = .evaluation
        _ = layer.forward(x)
        #expect(arena.allBuffers.scalars == before, "evaluation leaves the running statistics alone")
    }

    @Test func evaluationModeNormalisesWithTheRunningStatistics() {
        let (layer, arena) = makeBatchNorm(features: 2, randomParametersSeed: 8)
        arena.buffer(layer.runningMean).assign(Tensor(shape: [2], values: [0.5, -1]))
        arena.buffer(layer.runningVariance).assign(Tensor(shape: [2], values: [4, 0.25]))
        layer.mode = .evaluation
        layer.rowMask = [false, false, false]                // ignored outside training
        let x = randomTensor([3, 2], seed: 9)
        let y = layer.forward(x)
        let gamma = arena.value(layer.weight), beta = arena.value(layer.bias)
        let expected = (0..<6).map { i -> Double in
            let c = i % 2, mean = [0.5, -1.0][c], variance = [4.0, 0.25][c]
            return (Double(x[i]) - mean) / (variance + 1e-5).squareRoot() * Double(gamma[c]) + Double(beta[c])
        }
        expectClose(y.scalars, expected)
    }

    @Test func maskedRowsDoNotInfluenceTheStatistics() {
        let mask = [true, false, true, true, false, true]
        let (layer, arena) = makeBatchNorm(features: 3, randomParametersSeed: 1)
        let x = randomTensor([6, 3], seed: 6)
        let y = layer.forward(x, rowMask: mask)
        let (mean, variance, _) = referenceStatistics(x, mask: mask)
        expectClose(layer.lastBatchMean, mean)
        expectClose(layer.lastBatchVariance, variance)
        let running = arena.allBuffers.scalars

        // Wild values in the masked rows change nothing but those rows' outputs.
        let (again, againArena) = makeBatchNorm(features: 3, randomParametersSeed: 1)
        let wild = x.copy()
        for row in [1, 4] { for c in 0..<3 { wild[row * 3 + c] = 1000 * Float(c + 1) } }
        let z = again.forward(wild, rowMask: mask)
        #expect(again.lastBatchMean == layer.lastBatchMean && again.lastBatchVariance == layer.lastBatchVariance)
        #expect(againArena.allBuffers.scalars == running)
        for row in [0, 2, 3, 5] { for c in 0..<3 { #expect(z[row * 3 + c] == y[row * 3 + c]) } }

        // Masked rows are still normalised with the batch statistics.
        let gamma = arena.value(layer.weight), beta = arena.value(layer.bias)
        let maskedOutputs = [1, 4].flatMap { row in (0..<3).map { c in
            (Double(x[row * 3 + c]) - mean[c]) / (variance[c] + 1e-5).squareRoot() * Double(gamma[c]) + Double(beta[c])
        } }
        expectClose([1, 4].flatMap { row in (0..<3).map { y[row * 3 + $0] } }, maskedOutputs)
    }

    @Test func reducerThatDoublesTheDataLeavesTheStatisticsUnchanged() {
        // Two identical ranks: the all-reduced sums and count are twice one rank's.
        let mask = [true, true, false, true, true, true, false, true]
        let (local, localArena) = makeBatchNorm(features: 3, randomParametersSeed: 2)
        let (synced, syncedArena) = makeBatchNorm(features: 3, randomParametersSeed: 2)
        let log = ReducerLog()
        synced.statisticsReducer = { vector in
            log.lengths.append(vector.count)
            if vector.count == 7 { log.counts.append(vector[6]) }
            for i in vector.indices { vector[i] *= 2 }
        }
        let x = randomTensor([8, 3], seed: 7), g = randomTensor([8, 3], seed: 8)
        let y = local.forward(x, rowMask: mask), z = synced.forward(x, rowMask: mask)
        #expect(z.scalars == y.scalars)
        #expect(synced.lastBatchMean == local.lastBatchMean && synced.lastBatchVariance == local.lastBatchVariance)
        localArena.zeroGradients(); syncedArena.zeroGradients()
        #expect(synced.backward(g).scalars == local.backward(g).scalars)
        #expect(syncedArena.allGradients.scalars == localArena.allGradients.scalars, "parameter gradients stay local")
        #expect(log.lengths == [7, 6], "[Σx, Σx², M] in forward, [Σdy, Σdy·x̂] in backward")
        #expect(log.counts == [6], "M counts the unmasked rows")

        // The running variance takes the unbiased variance of all 2·6 rows.
        let variance = local.lastBatchVariance.map(Double.init)
        expectClose(syncedArena.buffer(synced.runningVariance).scalars, variance.map { 0.9 + 0.1 * $0 * 12 / 11 })
        expectClose(localArena.buffer(local.runningVariance).scalars, variance.map { 0.9 + 0.1 * $0 * 6 / 5 })
    }
}
