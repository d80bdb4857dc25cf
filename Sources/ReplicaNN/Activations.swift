import ReplicaCore

// Element-wise activations. Each sees its input as a flat run of elements, so any shape works
// ([N, C] or [B, T, C]); each caches in `forward` what its backward needs (its input; ReLU its
// output, GELU its derivative) and has no parameters.
// Loops are branch-free over raw pointers so the optimiser vectorises them.

/// An element-wise layer that writes into a tensor it is given, its argument included: the
/// `overwriting:` forms save a buffer (and the cache misses of writing a cold one) where the
/// caller no longer needs the argument.
public protocol ElementwiseLayer: Layer {
    /// forward, written into `output` (`input` itself allowed); returns `output`.
    func forward(_ input: Tensor, into output: Tensor) -> Tensor
    /// backward, written into `inputGradient` (`outputGradient` itself allowed); returns `inputGradient`.
    func backward(_ outputGradient: Tensor, into inputGradient: Tensor) -> Tensor
}

extension ElementwiseLayer {
    public func forward(_ input: Tensor) -> Tensor { forward(input, into: Tensor(uninitialized: input.shape)) }

    /// `forward` with the output written over `input`, which the caller must not need again.
    public func forward(overwriting input: Tensor) -> Tensor { forward(input, into: input) }

    public func backward(_ outputGradient: Tensor) -> Tensor {
        backward(outputGradient, into: Tensor(uninitialized: outputGradient.shape))
    }

    /// `backward` with the input's gradient written over `outputGradient`.
    public func backward(overwriting outputGradient: Tensor) -> Tensor { backward(outputGradient, into: outputGradient) }
}

/// An element-wise kernel's destination holds as many elements as its source.
func checkElementwise(_ source: Tensor, _ destination: Tensor) {
    precondition(source.count == destination.count, "element-wise layer: \(source.shape) into \(destination.shape)")
}

/// max(x, 0), with gradient 0 at x ≤ 0 as PyTorch. [...] -> [...]
///
/// Backward needs only where the output is positive (x > 0 exactly when max(x, 0) > 0), so the
/// output is what it keeps, and `forward(overwriting:)` can write it over its input.
public final class ReLU: ElementwiseLayer {
    var output: Tensor?                   // [...], cached by forward

    public init() {}

    public func forward(_ input: Tensor, into output: Tensor) -> Tensor {
        checkElementwise(input, output)
        let x = input.data, y = output.data
        // In place, one pointer: the vectoriser's overlap check would send x == y to its scalar loop.
        if x == y {
            for i in 0..<input.count { x[i] = Swift.max(x[i], 0) }
        } else {
            for i in 0..<input.count { y[i] = Swift.max(x[i], 0) }
        }
        self.output = output
        return output
    }

    public func backward(_ outputGradient: Tensor, into inputGradient: Tensor) -> Tensor {
        checkElementwise(outputGradient, inputGradient)
        let output = cachedInput(output, matching: outputGradient, layer: "ReLU")
        let y = output.data, dy = outputGradient.data, dx = inputGradient.data
        if dx == dy {
            for i in 0..<output.count { dy[i] = y[i] > 0 ? dy[i] : 0 }
        } else {
            for i in 0..<output.count { dx[i] = y[i] > 0 ? dy[i] : 0 }
        }
        return inputGradient
    }
}

/// x for x > 0, slope·x otherwise (GAT uses 0.2; PyTorch's default is 0.01). [...] -> [...]
public final class LeakyReLU: Layer {
    public let slope: Float
    var input: Tensor?                    // [...], cached by forward

    public init(slope: Float = 0.2) { self.slope = slope }

    public func forward(_ input: Tensor) -> Tensor {
        self.input = input
        let output = Tensor(uninitialized: input.shape)
        let x = input.data, y = output.data, slope = slope
        for i in 0..<input.count { let v = x[i]; y[i] = v > 0 ? v : slope * v }
        return output
    }

    public func backward(_ outputGradient: Tensor) -> Tensor {
        let input = cachedInput(input, matching: outputGradient, layer: "LeakyReLU")
        let inputGradient = Tensor(uninitialized: input.shape)
        let x = input.data, dy = outputGradient.data, dx = inputGradient.data, slope = slope
        for i in 0..<input.count { let g = dy[i]; dx[i] = x[i] > 0 ? g : slope * g }
        return inputGradient
    }
}

/// x for x > 0, α·(eˣ − 1) otherwise, as PyTorch's nn.ELU. [...] -> [...]
public final class ELU: Layer {
    public let alpha: Float
    var input: Tensor?                    // [...], cached by forward

    public init(alpha: Float = 1) { self.alpha = alpha }

    public func forward(_ input: Tensor) -> Tensor {
        self.input = input
        let output = Tensor(uninitialized: input.shape)
        let x = input.data, y = output.data, alpha = alpha
        for i in 0..<input.count {
            let v = x[i]
            let negative = alpha * (fastExp(v) - 1)
            y[i] = v > 0 ? v : negative
        }
        return output
    }

    public func backward(_ outputGradient: Tensor) -> Tensor {
        let input = cachedInput(input, matching: outputGradient, layer: "ELU")
        let inputGradient = Tensor(uninitialized: input.shape)
        let x = input.data, dy = outputGradient.data, dx = inputGradient.data, alpha = alpha
        for i in 0..<input.count {
            let v = x[i], g = dy[i]
            let negative = g * alpha * fastExp(v)
            dx[i] = v > 0 ? g : negative
        }
        return inputGradient
    }
}

/// x·Φ(x) with Φ the standard normal CDF: the exact (erf) GELU, PyTorch's default nn.GELU(). [...] -> [...]
///
/// Φ comes from `normalCDF`, a vectorisable approximation with absolute error ≤ 1e-7 (erff's
/// own rounding gives ~6e-8) and relative error ≤ 5e-6 in the left tail, where the textbook
/// ½·(1 + erf(x/√2)) cancels. Forward computes the derivative Φ(x) + x·φ(x) along with the output
/// (one exp(−x²/2) serves Φ, φ and both) and caches it instead of the input, so backward is one
/// multiplication: the derivative costs two multiply-adds in forward, where recomputing it in
/// backward cost as much as the forward itself (an exp and a rational function per element).
/// The `overwriting:` forms write their result over their argument, saving a buffer (a
/// Transformer's [B·T, 4C]) and the cache misses of writing a cold one.
public final class GELU: ElementwiseLayer {
    var derivative: Tensor?               // [...] dy/dx, cached by forward

    public init() {}

    public func forward(_ input: Tensor, into output: Tensor) -> Tensor {
        checkElementwise(input, output)
        let derivative = Tensor(uninitialized: input.shape)
        let x = input.data, y = output.data, d = derivative.data
        ComputePool.forEachRange(count: input.count, grain: elementsPerThread) { range in
            // In place, one pointer: the vectoriser's overlap check would send x == y to its scalar loop.
            if x == y {
                for i in range { (x[i], d[i]) = geluAndDerivative(x[i]) }
            } else {
                for i in range { (y[i], d[i]) = geluAndDerivative(x[i]) }
            }
        }
        self.derivative = derivative
        return output
    }

    public func backward(_ outputGradient: Tensor, into inputGradient: Tensor) -> Tensor {
        checkElementwise(outputGradient, inputGradient)
        let derivative = cachedInput(derivative, matching: outputGradient, layer: "GELU")
        let d = derivative.data, dy = outputGradient.data, dx = inputGradient.data
        ComputePool.forEachRange(count: derivative.count, grain: elementsPerThread) { range in
            if dx == dy {
                for i in range { dy[i] *= d[i] }
            } else {
                for i in range { dx[i] = dy[i] * d[i] }
            }
        }
        return inputGradient
    }
}

/// x·Φ(x) and its derivative Φ(x) + x·φ(x), φ(x) = exp(−x²/2)/√(2π).
@inline(__always)
func geluAndDerivative(_ x: Float) -> (value: Float, derivative: Float) {
    let gaussian = exponential(-0.5 * x * x, guardsOverflow: false)     // −x²/2 ≤ 0
    let phi = normalCDF(x, gaussian: gaussian)
    return (x * phi, phi + x * 0.39894228040143268 * gaussian)
}

/// The cached input, checked against the gradient coming back.
func cachedInput(_ input: Tensor?, matching outputGradient: Tensor, layer: String) -> Tensor {
    guard let input else { preconditionFailure("\(layer).backward before forward") }
    precondition(outputGradient.shape == input.shape,
                 "\(layer).backward expects a gradient of \(input.shape), got \(outputGradient.shape)")
    return input
}

// MARK: - Vectorisable kernels

/// a·b + c rounded once: one FMA instruction, which the loop vectoriser keeps (Swift never fuses
/// `a * b + c` on its own).
@inline(__always)
func multiplyAdd(_ a: Float, _ b: Float, _ c: Float) -> Float { c.addingProduct(a, b) }

/// eˣ in float32 within 1 ulp (measured on [−87.3, 88.3]), branch-free so loops over it vectorise.
///
/// Cephes' expf: x = n·ln2 + r with |r| ≤ ln2/2 (ln2 split in two for an exact product),
/// eʳ by a degree-7 polynomial, 2ⁿ assembled in the exponent bits. Gives 0 below −87.34
/// (where float32 results turn subnormal), +∞ above 88.38, NaN for NaN.
@inline(__always)
func fastExp(_ x: Float) -> Float { exponential(x) }

/// `fastExp` on eight lanes at once, for loops the vectoriser leaves scalar (a row's exponentials
/// and their sum in one pass).
@inline(__always)
func fastExp8(_ x: SIMD8<Float>) -> SIMD8<Float> { exponential(x) }

/// A float or a vector of them, with what `exponential` needs.
protocol ExponentialLanes {
    static func splat(_ value: Float) -> Self
    static func + (a: Self, b: Self) -> Self
    static func - (a: Self, b: Self) -> Self
    static func * (a: Self, b: Self) -> Self
    /// a·b + c rounded once.
    static func fused(_ a: Self, _ b: Self, _ c: Self) -> Self
    /// Within [low, high] (or ≥ low when high is nil); NaN stays.
    func clamped(_ low: Float, _ high: Float?) -> Self
    /// 2ⁿ from n + 1.5·2²³ (n an integer in the low mantissa bits).
    static func twoToThe(shifted: Self) -> Self
    /// 0 where x < low, +∞ where x > high (NaN stays), `value` elsewhere.
    static func saturated(_ value: Self, at x: Self, below low: Float, above high: Float?) -> Self
}

extension Float: ExponentialLanes {
    @inline(__always) static func splat(_ value: Float) -> Float { value }
    @inline(__always) static func fused(_ a: Float, _ b: Float, _ c: Float) -> Float { multiplyAdd(a, b, c) }
    @inline(__always) func clamped(_ low: Float, _ high: Float?) -> Float {
        let atLeastLow = Swift.max(self, low)
        return high.map { Swift.min(atLeastLow, $0) } ?? atLeastLow
    }
    @inline(__always) static func twoToThe(shifted: Float) -> Float {
        Float(bitPattern: ((shifted.bitPattern &- 0x4B40_0000) &+ 127) << 23)
    }
    @inline(__always) static func saturated(_ value: Float, at x: Float, below low: Float, above high: Float?) -> Float {
        x < low ? 0 : (high.map { x > $0 } == true ? .infinity : value)
    }
}

extension SIMD8: ExponentialLanes where Scalar == Float {
    @inline(__always) static func splat(_ value: Float) -> SIMD8<Float> { SIMD8(repeating: value) }
    @inline(__always) static func fused(_ a: SIMD8<Float>, _ b: SIMD8<Float>, _ c: SIMD8<Float>) -> SIMD8<Float> {
        multiplyAdd8(a, b, c)
    }
    /// Comparisons rather than pointwiseMin/Max, which return the other operand for NaN: NaN stays.
    @inline(__always) func clamped(_ low: Float, _ high: Float?) -> SIMD8<Float> {
        let atLeastLow = replacing(with: low, where: self .< SIMD8(repeating: low))
        return high.map { atLeastLow.replacing(with: $0, where: atLeastLow .> SIMD8(repeating: $0)) } ?? atLeastLow
    }
    @inline(__always) static func twoToThe(shifted: SIMD8<Float>) -> SIMD8<Float> {
        let bits = unsafeBitCast(shifted, to: SIMD8<UInt32>.self)
        return unsafeBitCast(((bits &- 0x4B40_0000) &+ 127) &<< 23, to: SIMD8<Float>.self)
    }
    @inline(__always) static func saturated(_ value: SIMD8<Float>, at x: SIMD8<Float>, below low: Float,
                                            above high: Float?) -> SIMD8<Float> {
        let belowLow = value.replacing(with: 0, where: x .< SIMD8(repeating: low))
        return high.map { belowLow.replacing(with: .infinity, where: x .> SIMD8(repeating: $0)) } ?? belowLow
    }
}

/// eˣ (`fastExp`); with `guardsOverflow` false, for x ≤ 0 only (or NaN), without the clamp and
/// the +∞ above 88.38: a comparison and a blend less a vector, 6% of GELU's forward.
@inline(__always)
func exponential<T: ExponentialLanes>(_ x: T, guardsOverflow: Bool = true) -> T {
    let high: Float? = guardsOverflow ? 88.376_26 : nil
    let clamped = x.clamped(-87.336_55, high)
    // Adding 1.5·2²³ rounds to an integer n and leaves n in the low mantissa bits.
    let shifted = clamped * .splat(1.442_695_040_888_963_4) + .splat(12_582_912)
    let n = shifted - .splat(12_582_912)
    let r = T.fused(n, .splat(2.121_944_4e-4), T.fused(n, .splat(-0.693_359_375), clamped))
    var p = T.splat(1.987_569_15e-4)
    p = T.fused(p, r, .splat(1.398_199_950_7e-3))
    p = T.fused(p, r, .splat(8.333_451_907_3e-3))
    p = T.fused(p, r, .splat(4.166_579_589_4e-2))
    p = T.fused(p, r, .splat(1.666_666_545_9e-1))
    p = T.fused(p, r, .splat(5.000_000_120_1e-1))
    let expR = T.fused(p, r * r, r + .splat(1))
    return T.saturated(expR * T.twoToThe(shifted: shifted), at: x, below: -87.336_55, above: high)
}

/// Φ(x), the standard normal CDF, given `gaussian` = exp(−x²/2); absolute error ≤ 1e-7.
///
/// Φ(−|x|) = ½·exp(−z²)·erfcx(|z|), z = x/√2, with erfcx ≈ A(|z|)/B(|z|) of degree (4, 5) (weighted
/// least squares on 8000 Chebyshev nodes of [0, 9.5]; relative error 5e-9 in exact arithmetic),
/// and Φ(|x|) = 1 − Φ(−|x|): the left tail keeps its relative accuracy, and near 0, where
/// Φ(−|x|) ≈ ½, the subtraction loses nothing. One formula for every x: a second fit for
/// |x| < √2 (erf's Taylor-like polynomial) cost the vectorised loop a fifth of its time, since
/// both branches are computed for every lane, and was no more accurate (9.1e-8 without it,
/// 9.2e-8 with it, measured on [−12, 12] every 1.2e-4 against erfc in Double).
@inline(__always)
func normalCDF(_ x: Float, gaussian: Float) -> Float {
    let z = x * 0.707_106_781_186_547_52
    let a = z.magnitude
    var numerator: Float = 0.032_252_701_591_273_32
    numerator = multiplyAdd(numerator, a, 0.226_621_714_158_177_92)
    numerator = multiplyAdd(numerator, a, 0.726_147_441_343_003_8)
    numerator = multiplyAdd(numerator, a, 1.233_190_097_197_067_7)
    numerator = multiplyAdd(numerator, a, 1.000_000_005_074_837_9)
    var denominator: Float = 0.057_165_631_869_905_906
    denominator = multiplyAdd(denominator, a, 0.401_705_587_524_422_04)
    denominator = multiplyAdd(denominator, a, 1.315_183_566_605_149_5)
    denominator = multiplyAdd(denominator, a, 2.390_885_164_153_046)
    denominator = multiplyAdd(denominator, a, 2.361_569_780_685_711_4)
    denominator = multiplyAdd(denominator, a, 1)
    let tail = 0.5 * gaussian * numerator / denominator           // Φ(−|x|)
    return x < 0 ? tail : 1 - tail
}
