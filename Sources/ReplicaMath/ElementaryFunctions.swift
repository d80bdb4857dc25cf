#if arch(x86_64)
import _Builtin_intrinsics.intel
#endif

// The elementary functions of the element-wise kernels: exp, the normal CDF, GELU, the fused
// multiply-add. All inlinable, so that each kernel's loop is compiled where it is written, for
// that module's CPU: ReplicaNN's for AVX2, ReplicaAVX512's for AVX-512 (Package.swift).

/// a·b + c rounded once: one FMA instruction, which the loop vectoriser keeps (Swift never fuses
/// `a * b + c` on its own).
@inlinable @inline(__always)
public func multiplyAdd(_ a: Float, _ b: Float, _ c: Float) -> Float { c.addingProduct(a, b) }

/// A float or a vector of them, with what `exponential` needs.
public protocol ExponentialLanes {
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
    @inlinable @inline(__always) public static func splat(_ value: Float) -> Float { value }
    @inlinable @inline(__always) public static func fused(_ a: Float, _ b: Float, _ c: Float) -> Float { multiplyAdd(a, b, c) }
    @inlinable @inline(__always) public func clamped(_ low: Float, _ high: Float?) -> Float {
        let atLeastLow = Swift.max(self, low)
        return high.map { Swift.min(atLeastLow, $0) } ?? atLeastLow
    }
    @inlinable @inline(__always) public static func twoToThe(shifted: Float) -> Float {
        Float(bitPattern: ((shifted.bitPattern &- 0x4B40_0000) &+ 127) << 23)
    }
    @inlinable @inline(__always) public static func saturated(_ value: Float, at x: Float, below low: Float, above high: Float?) -> Float {
        x < low ? 0 : (high.map { x > $0 } == true ? .infinity : value)
    }
}

extension SIMD8: ExponentialLanes where Scalar == Float {
    @inlinable @inline(__always) public static func splat(_ value: Float) -> SIMD8<Float> { SIMD8(repeating: value) }
    @inlinable @inline(__always) public static func fused(_ a: SIMD8<Float>, _ b: SIMD8<Float>, _ c: SIMD8<Float>) -> SIMD8<Float> {
        multiplyAdd8(a, b, c)
    }
    /// Comparisons rather than pointwiseMin/Max, which return the other operand for NaN: NaN stays.
    @inlinable @inline(__always) public func clamped(_ low: Float, _ high: Float?) -> SIMD8<Float> {
        let atLeastLow = replacing(with: low, where: self .< SIMD8(repeating: low))
        return high.map { atLeastLow.replacing(with: $0, where: atLeastLow .> SIMD8(repeating: $0)) } ?? atLeastLow
    }
    @inlinable @inline(__always) public static func twoToThe(shifted: SIMD8<Float>) -> SIMD8<Float> {
        let bits = unsafeBitCast(shifted, to: SIMD8<UInt32>.self)
        return unsafeBitCast(((bits &- 0x4B40_0000) &+ 127) &<< 23, to: SIMD8<Float>.self)
    }
    @inlinable @inline(__always) public static func saturated(_ value: SIMD8<Float>, at x: SIMD8<Float>, below low: Float,
                                            above high: Float?) -> SIMD8<Float> {
        let belowLow = value.replacing(with: 0, where: x .< SIMD8(repeating: low))
        return high.map { belowLow.replacing(with: .infinity, where: x .> SIMD8(repeating: $0)) } ?? belowLow
    }
}

/// eˣ (`fastExp`); with `guardsOverflow` false, for x ≤ 0 only (or NaN), without the clamp and
/// the +∞ above 88.38: a comparison and a blend less a vector, 6% of GELU's forward.
@inlinable @inline(__always)
public func exponential<T: ExponentialLanes>(_ x: T, guardsOverflow: Bool = true) -> T {
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
@inlinable @inline(__always)
public func normalCDF(_ x: Float, gaussian: Float) -> Float {
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

/// x·Φ(x) and its derivative Φ(x) + x·φ(x), φ(x) = exp(−x²/2)/√(2π).
@inlinable @inline(__always)
public func geluAndDerivative(_ x: Float) -> (value: Float, derivative: Float) {
    let gaussian = exponential(-0.5 * x * x, guardsOverflow: false)     // −x²/2 ≤ 0
    let phi = normalCDF(x, gaussian: gaussian)
    return (x * phi, phi + x * 0.39894228040143268 * gaussian)
}

/// x · y + z lane by lane, one fused multiply-add (vfmadd). Swift makes no FMA from `x * y + z`,
/// and SIMD8's `addingProduct` goes lane by lane.
@inlinable @inline(__always)
public func multiplyAdd8(_ x: SIMD8<Float>, _ y: SIMD8<Float>, _ z: SIMD8<Float>) -> SIMD8<Float> {
    #if arch(x86_64)
    return _mm256_fmadd_ps(x, y, z)
    #else
    return z.addingProduct(x, y)
    #endif
}

/// GELU's forward over elements `range`: y = x·Φ(x) and d = Φ(x) + x·φ(x), y == x allowed (in
/// place). The loop that ReplicaNN compiles for AVX2 and ReplicaAVX512 for AVX-512.
@inlinable @inline(__always)
public func geluAndDerivative(_ x: UnsafeMutablePointer<Float>, into y: UnsafeMutablePointer<Float>,
                              derivative d: UnsafeMutablePointer<Float>, range: Range<Int>) {
    // In place, one pointer: the vectoriser's overlap check would send x == y to its scalar loop.
    if x == y {
        for i in range { (x[i], d[i]) = geluAndDerivative(x[i]) }
    } else {
        for i in range { (y[i], d[i]) = geluAndDerivative(x[i]) }
    }
}
