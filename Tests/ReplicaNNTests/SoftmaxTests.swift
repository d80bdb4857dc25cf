import Foundation
import Testing
import ReplicaCore
import ReplicaNN
import _ReplicaTestSupport

/// Relative error allowed against a softmax computed in Double: a few float32 ulps.
private let softmaxRelativeTolerance: Float = 1e-6

/// Softmax of `row / temperature` in Double.
private func referenceSoftmax(_ row: [Float], temperature: Double = 1) -> [Double] {
    let maximum = Double(row.max()!)
    let exponentials = row.map { exp((Double($0) - maximum) / temperature) }
    let total = exponentials.reduce(0, +)
    return exponentials.map { $0 / total }
}

@Suite struct SoftmaxTests {
    @Test func softmaxOfOneTwoThreeMatchesKnownValues() {
        let y = softmaxRows(Tensor(shape: [1, 3], values: [1, 2, 3])).scalars
        let expected: [Float] = [0.09003057, 0.24472847, 0.66524096]
        #expect(maximumRelativeDifference(y, expected) < softmaxRelativeTolerance, "\(y)")
    }

    @Test(arguments: [0.5, 1, 2] as [Float])
    func rowsMatchDoublePrecision(temperature: Float) {
        // 37: not a multiple of the 8-wide loops. Multiples of 2⁻¹⁰ in [-20, 20], so that x − max is
        // exact in float32 and only exp and the normalisation are measured.
        let x = randomTensor([7, 37], seed: 3)
        for i in 0..<x.count { x[i] = (x[i] * 20 * 1024).rounded() / 1024 }
        let y = softmaxRows(x, temperature: temperature)
        for row in 0..<7 {
            let values = Array(x.scalars[row * 37..<(row + 1) * 37])
            let expected = referenceSoftmax(values, temperature: Double(temperature)).map { Float($0) }
            let got = Array(y.scalars[row * 37..<(row + 1) * 37])
            #expect(maximumRelativeDifference(got, expected, floor: 1e-30) < softmaxRelativeTolerance)
            #expect(abs(got.reduce(0, +) - 1) < 1e-5)
        }
    }

    @Test func largeLogitsDoNotOverflow() {
        let y = softmaxRows(Tensor(shape: [2, 3], values: [1000, 1001, 1002, -1000, 0, -2000])).scalars
        let small = softmaxRows(Tensor(shape: [1, 3], values: [1, 2, 3])).scalars
        #expect(Array(y[0..<3]) == small)
        #expect(y[3] == 0 && y[4] == 1 && y[5] == 0)
    }

    @Test func maskedEntriesGetZeroAndFullyMaskedRowsBecomeZero() {
        let y = softmaxRows(Tensor(shape: [2, 3], values: [-.infinity, 0, 0, -.infinity, -.infinity, -.infinity]))
        #expect(y.scalars == [0, 0.5, 0.5, 0, 0, 0])
        let poisoned = softmaxRows(Tensor(shape: [1, 3], values: [.nan, 0, 1])).scalars
        #expect(poisoned.allSatisfy { $0.isNaN })
    }

    @Test func inPlaceVariantMatchesRows() {
        let x = randomTensor([5, 19], seed: 8)
        let y = softmaxRows(x)
        let z = x.copy()
        for row in 0..<5 { softmaxInPlace(z.data + row * 19, count: 19) }
        #expect(z.scalars == y.scalars)
    }

    @Test(arguments: [0.5, 1, 2] as [Float])
    func gradientsMatchFiniteDifferences(temperature: Float) {
        let x = randomTensor([4, 11], seed: 21), r = randomTensor([4, 11], seed: 22)
        for i in 0..<x.count { x[i] *= 3 }
        let results = checkGradients(arena: nil, inputs: [x], directions: 4,
            loss: { dot(softmaxRows(x, temperature: temperature), r) },
            gradients: {
                let y = softmaxRows(x, temperature: temperature)
                return [softmaxRowsBackward(output: y, outputGradient: r, temperature: temperature)]
            })
        for result in results { #expect(result.relativeError < finiteDifferenceTolerance, "T=\(temperature): \(result)") }
    }

    @Test func inPlaceBackwardMatchesRowsBackward() {
        let x = randomTensor([3, 13], seed: 30), r = randomTensor([3, 13], seed: 31)
        let y = softmaxRows(x)
        let expected = softmaxRowsBackward(output: y, outputGradient: r, temperature: 1)
        let gradient = r.copy()
        for row in 0..<3 { softmaxBackwardInPlace(gradient.data + row * 13, output: y.data + row * 13, count: 13) }
        #expect(gradient.scalars == expected.scalars)
    }
}
