import Foundation
import Testing
import ReplicaCore
import ReplicaNN
import ReplicaAVX512
import _ReplicaTestSupport

/// Known values (PyTorch prints them to 7 digits) compared in float32.
private let activationValueTolerance: Float = 1e-6
/// Absolute error allowed in Φ(x) of GELU(x) = x·Φ(x): two float32 ulps at 0.5–1.
private let normalCDFTolerance = 1.2e-7
/// Relative error allowed in GELU's left tail, where ½·(1 + erf(x/√2)) alone would cancel.
private let geluLeftTailTolerance = 1e-5
/// Absolute error allowed in ELU's α·(eˣ − 1) for α = 1, x ≤ 0: about two ulps of 1.
private let eluTolerance = 1.5e-7

/// Uniform draws in [-1, 1) pushed 0.1 away from 0, so finite differences never cross a kink.
private func inputsAwayFromZero(_ shape: [Int], seed: UInt64) -> Tensor {
    let x = randomTensor(shape, seed: seed)
    for i in 0..<x.count { x[i] += x[i] >= 0 ? 0.1 : -0.1 }
    return x
}

/// The activation named `name` with its default settings.
private func activation(named name: String) -> Layer {
    switch name {
    case "ReLU": return ReLU()
    case "LeakyReLU": return LeakyReLU(slope: 0.2)
    case "ELU": return ELU(alpha: 1)
    case "GELU": return GELU()
    default: preconditionFailure("no activation \(name)")
    }
}

/// One activation applied to `values` as a [values.count] tensor.
private func apply(_ layer: Layer, _ values: [Float]) -> [Float] {
    layer.forward(Tensor(shape: [values.count], values: values)).scalars
}

/// Φ(x) in Double.
private func referenceNormalCDF(_ x: Double) -> Double { 0.5 * erfc(-x / 2.0.squareRoot()) }

@Suite struct ActivationTests {
    @Test(arguments: ["ReLU", "LeakyReLU", "ELU", "GELU"])
    func gradientsMatchFiniteDifferences(name: String) {
        let layer = activation(named: name)
        let x = inputsAwayFromZero([2, 3, 5], seed: 11)
        x[0] = 2.5; x[1] = -3                  // into GELU's and ELU's curved parts
        let r = randomTensor([2, 3, 5], seed: 12)
        let results = checkGradients(arena: nil, inputs: [x], directions: 4,
            loss: { dot(layer.forward(x), r) },
            gradients: { _ = layer.forward(x); return [layer.backward(r)] })
        for result in results { #expect(result.relativeError < finiteDifferenceTolerance, "\(name): \(result)") }
    }

    @Test func reluAndLeakyReLUMatchKnownValues() {
        #expect(apply(ReLU(), [-1, 0, 2.5]) == [0, 0, 2.5])
        #expect(apply(LeakyReLU(slope: 0.2), [-1, 0, 2.5]) == [-0.2, 0, 2.5])
        #expect(apply(LeakyReLU(), [-2]) == [-0.4])
        let relu = ReLU()
        _ = relu.forward(Tensor(shape: [3], values: [-1, 0, 2]))
        #expect(relu.backward(Tensor(shape: [3], values: [5, 5, 5])).scalars == [0, 0, 5])
    }

    @Test func eluMatchesKnownValues() {
        let y = apply(ELU(alpha: 1), [-1, 0, 2])
        #expect(abs(y[0] - Float(exp(-1.0) - 1)) < activationValueTolerance)   // -0.6321206
        #expect(y[1] == 0 && y[2] == 2)
        let half = apply(ELU(alpha: 0.5), [-1])
        #expect(abs(half[0] - Float(0.5 * (exp(-1.0) - 1))) < activationValueTolerance)
    }

    @Test func eluNegativeSideMatchesDoublePrecision() {
        let xs = stride(from: -20.0, through: 0, by: 0.003).map { Float($0) }
        let y = apply(ELU(), xs)
        var worst = 0.0
        for (x, v) in zip(xs, y) { worst = max(worst, abs(Double(v) - expm1(Double(x)))) }
        #expect(worst < eluTolerance, "ELU max absolute error \(worst)")
    }

    @Test func geluMatchesKnownValues() {
        let y = apply(GELU(), [1, -1, 0, 3])
        #expect(abs(y[0] - 0.8413447) < activationValueTolerance)
        #expect(abs(y[1] - -0.1586553) < activationValueTolerance)
        #expect(y[2] == 0)
        #expect(abs(y[3] - 2.9959503) < activationValueTolerance)
    }

    @Test func geluMatchesTheErfDefinitionAcrossItsRange() {
        let xs = stride(from: -12.0, through: 12, by: 0.0007).map { Float($0) }
        let y = apply(GELU(), xs)
        var worstCDF = 0.0, worstTail = 0.0
        for (x, v) in zip(xs, y) where x != 0 {
            let exact = Double(x) * referenceNormalCDF(Double(x))
            // |v − x·Φ| ≤ |x|·(error in Φ) + the rounding of the product.
            let cdfError = max(abs(Double(v) - exact) - Double(Float(exact).ulp) / 2, 0) / abs(Double(x))
            worstCDF = max(worstCDF, cdfError)
            if x <= -1 && exact < -1e-30 { worstTail = max(worstTail, abs(Double(v) - exact) / abs(exact)) }
        }
        #expect(worstCDF < normalCDFTolerance, "Φ max absolute error \(worstCDF)")
        #expect(worstTail < geluLeftTailTolerance, "left tail max relative error \(worstTail)")
    }

    /// GELU's AVX-512 loop (where the processor has it) gives the scalar loop's results bit for
    /// bit, out of place and in place, on a range that starts and ends off a vector's boundary,
    /// including ±0, ±∞, NaN and the far tails: the same operations on each lane. ReplicaAVX512 is
    /// optimised and vectorised in a debug build too (Package.swift), so this compares the
    /// sixteen-lane code that ships.
    @Test(.enabled(if: ProcessorFeatures.avx512, "the processor has no AVX-512"))
    func geluAVX512LoopEqualsTheAVX2LoopBitForBit() {
        var xs = stride(from: -14.0, through: 14, by: 0.0013).map { Float($0) }
        xs += [0, -0, .infinity, -.infinity, .nan, 1e30, -1e30, .leastNonzeroMagnitude, -.leastNormalMagnitude]
        let n = xs.count, range = 3..<(n - 5)
        let x = UnsafeMutablePointer<Float>.allocate(capacity: n), y = UnsafeMutablePointer<Float>.allocate(capacity: n)
        let d = UnsafeMutablePointer<Float>.allocate(capacity: n), y2 = UnsafeMutablePointer<Float>.allocate(capacity: n)
        let d2 = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { [x, y, d, y2, d2].forEach { $0.deallocate() } }
        x.initialize(from: xs, count: n)
        for p in [y, d, y2, d2] { p.initialize(repeating: 7, count: n) }
        geluAndDerivative(x, into: y, derivative: d, range: range)
        geluAndDerivativeAVX512(x, into: y2, derivative: d2, range: range)
        let same = { (a: UnsafeMutablePointer<Float>, b: UnsafeMutablePointer<Float>, indices: Range<Int>) in
            indices.allSatisfy { a[$0].bitPattern == b[$0].bitPattern }
        }
        #expect(same(y, y2, 0..<n) && same(d, d2, 0..<n))
        #expect(y2[0] == 7 && y2[n - 1] == 7, "outside the range untouched")
        geluAndDerivativeAVX512(x, into: x, derivative: d2, range: range)          // in place
        #expect(same(x, y, range) && same(d, d2, 0..<n))
    }

    @Test func geluDerivativeMatchesTheExactFormula() {
        let xs = stride(from: -10.0, through: 10, by: 0.001).map { Float($0) }
        let layer = GELU()
        _ = layer.forward(Tensor(shape: [xs.count], values: xs))
        let dx = layer.backward(Tensor(shape: [xs.count], values: [Float](repeating: 1, count: xs.count))).scalars
        var worst = 0.0
        for (x, d) in zip(xs, dx) {
            let v = Double(x)
            let exact = referenceNormalCDF(v) + v * exp(-v * v / 2) / (2 * Double.pi).squareRoot()
            worst = max(worst, abs(Double(d) - exact) / max(1, abs(v)))
        }
        #expect(worst < 4 * normalCDFTolerance, "GELU′ max scaled error \(worst)")
    }

    @Test func backwardScalesTheOutputGradient() {
        let layer = GELU()
        let x = randomTensor([4, 8], seed: 5)
        _ = layer.forward(x)
        let ones = layer.backward(Tensor(shape: [4, 8], values: [Float](repeating: 1, count: 32))).scalars
        let threes = layer.backward(Tensor(shape: [4, 8], values: [Float](repeating: 3, count: 32))).scalars
        for (a, b) in zip(ones, threes) { #expect(abs(3 * a - b) <= 4 * b.ulp) }
    }
}
