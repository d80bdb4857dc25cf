import ReplicaCore
@_exported import ReplicaMath      // the elementary functions, for every file here and the tests
#if arch(x86_64)
import _Builtin_intrinsics.intel
#endif

// Eight lanes at a time: loads and stores, reductions over rows (softmax, attention, LayerNorm),
// chunked loops (the optimizers).

/// The fewest elements worth a thread of their own in an element-wise kernel (tens of µs).
let elementsPerThread = 1 << 14

/// The fewest rows of `width` elements worth a thread of their own.
func rowsPerThread(width: Int) -> Int { max(1, elementsPerThread / max(width, 1)) }

/// target += source, elementwise, on the rank's threads (the residual connections: at 2 threads
/// these ran on one while the other waited).
public func add(_ source: Tensor, into target: Tensor) {
    precondition(source.count == target.count, "add: \(source.shape) into \(target.shape)")
    let s = source.data, t = target.data
    ComputePool.forEachRange(count: source.count, grain: elementsPerThread) { range in
        for i in range { t[i] += s[i] }
    }
}

@inline(__always)
func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> { UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self) }

@inline(__always)
func store8(_ value: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: value, as: SIMD8<Float>.self) }

/// Σ x[i] added in Double, eight lanes at a time. [count]
@inline(__always)
func rowSumInDouble(_ x: UnsafePointer<Float>, count: Int) -> Double {
    var lanes = SIMD8<Double>()
    var i = 0
    while i + 8 <= count { lanes += SIMD8<Double>(load8(x + i)); i += 8 }
    var sum = lanes.sum()
    while i < count { sum += Double(x[i]); i += 1 }
    return sum
}

/// Σ (x[i] − c)². [count]
@inline(__always)
func rowSquaredDeviations(_ x: UnsafePointer<Float>, count: Int, from c: Float) -> Float {
    // Four independent sums of eight lanes: one would make a chain of a multiply-add per 8 floats.
    var s0 = SIMD8<Float>(), s1 = SIMD8<Float>(), s2 = SIMD8<Float>(), s3 = SIMD8<Float>()
    let center = SIMD8<Float>(repeating: c)
    var i = 0
    while i + 32 <= count {
        let d0 = load8(x + i) - center, d1 = load8(x + i + 8) - center
        let d2 = load8(x + i + 16) - center, d3 = load8(x + i + 24) - center
        s0 = multiplyAdd8(d0, d0, s0); s1 = multiplyAdd8(d1, d1, s1)
        s2 = multiplyAdd8(d2, d2, s2); s3 = multiplyAdd8(d3, d3, s3)
        i += 32
    }
    while i + 8 <= count { let d = load8(x + i) - center; s0 = multiplyAdd8(d, d, s0); i += 8 }
    var sum = ((s0 + s1) + (s2 + s3)).sum()
    while i < count { let d = x[i] - c; sum += d * d; i += 1 }
    return sum
}

/// Calls `body(offset, lanes)` for consecutive chunks of at most 8 elements of [0, count): full
/// chunks in one loop, where `lanes` is the constant 8 once inlined (so loadChunk and storeChunk
/// are single vector moves), then the shorter last chunk.
@inline(__always)
func forEachChunk(count: Int, _ body: (Int, Int) -> Void) {
    var offset = 0
    while offset + 8 <= count {
        body(offset, 8)
        offset += 8
    }
    if offset < count { body(offset, count - offset) }
}

/// `lanes` floats from `pointer`, padded to 8 with `padding`.
@inline(__always)
func loadChunk(_ pointer: UnsafePointer<Float>, _ lanes: Int, padding: Float = 0) -> SIMD8<Float> {
    if lanes == 8 { return load8(pointer) }
    var chunk = SIMD8<Float>(repeating: padding)
    for lane in 0..<lanes { chunk[lane] = pointer[lane] }
    return chunk
}

/// `chunk`'s first `lanes` lanes, the others set to `padding`: a mask from integer lane
/// arithmetic and two bitwise operations (SIMD8's comparisons and `replacing` compiled to a loop
/// through the stack, lane by lane).
@inline(__always)
func firstLanes(_ chunk: SIMD8<Float>, _ lanes: Int, padding: Float) -> SIMD8<Float> {
    // lane − lanes is negative, so its sign bit shifted down arithmetically is all ones, exactly
    // for the lanes below `lanes`.
    let keep = unsafeBitCast((SIMD8<Int32>(0, 1, 2, 3, 4, 5, 6, 7) &- Int32(truncatingIfNeeded: lanes)) &>> 31, to: SIMD8<UInt32>.self)
    let bits = unsafeBitCast(chunk, to: SIMD8<UInt32>.self) & keep | SIMD8(repeating: padding.bitPattern) & ~keep
    return unsafeBitCast(bits, to: SIMD8<Float>.self)
}

/// Stores the first `lanes` floats of `chunk` at `pointer`.
@inline(__always)
func storeChunk(_ chunk: SIMD8<Float>, _ pointer: UnsafeMutablePointer<Float>, _ lanes: Int) {
    if lanes == 8 { store8(chunk, pointer); return }
    for lane in 0..<lanes { pointer[lane] = chunk[lane] }
}

/// The eight lanes widened to Double (two vcvtps2pd; SIMD8<Double>'s generic initializer was left
/// as a call in a loop).
@inline(__always)
func widened(_ x: SIMD8<Float>) -> SIMD8<Double> {
    #if arch(x86_64)
    return SIMD8(lowHalf: _mm256_cvtps_pd(x.lowHalf), highHalf: _mm256_cvtps_pd(x.highHalf))
    #else
    return SIMD8<Double>(x)
    #endif
}

/// x *= factor, eight at a time with no scalar tail. [count]
@inline(__always)
func scaleRow(_ x: UnsafeMutablePointer<Float>, count: Int, by factor: Float) {
    let scale = SIMD8<Float>(repeating: factor)
    forEachChunk(count: count) { offset, lanes in storeChunk(loadChunk(x + offset, lanes) * scale, x + offset, lanes) }
}

/// √x lane by lane in one instruction (vsqrtps), correctly rounded as each scalar √ is. SIMD8's own
/// `squareRoot()` compiles to eight scalar roots, each checked for a negative argument on its way
/// to libm's sqrtf: AdamW spent two thirds of its time there (1.33 against 0.39 ms over the baby
/// model's 0.8 M parameters, in cache).
@inline(__always)
func squareRoot8(_ x: SIMD8<Float>) -> SIMD8<Float> {
    #if arch(x86_64)
    return _mm256_sqrt_ps(x)
    #else
    return x.squareRoot()
    #endif
}

// Float reductions do not vectorise on their own (the optimiser may not reassociate), so these
// keep eight partial results.

/// The largest entry, −∞ for an empty row; NaN entries are skipped (they still poison the sum).
@inline(__always)
func rowMaximum(_ x: UnsafePointer<Float>, count: Int) -> Float {
    var m0 = -Float.infinity, m1 = m0, m2 = m0, m3 = m0, m4 = m0, m5 = m0, m6 = m0, m7 = m0
    var i = 0
    while i + 8 <= count {
        m0 = Swift.max(m0, x[i]); m1 = Swift.max(m1, x[i + 1]); m2 = Swift.max(m2, x[i + 2]); m3 = Swift.max(m3, x[i + 3])
        m4 = Swift.max(m4, x[i + 4]); m5 = Swift.max(m5, x[i + 5]); m6 = Swift.max(m6, x[i + 6]); m7 = Swift.max(m7, x[i + 7])
        i += 8
    }
    var m = Swift.max(Swift.max(Swift.max(m0, m1), Swift.max(m2, m3)), Swift.max(Swift.max(m4, m5), Swift.max(m6, m7)))
    while i < count { m = Swift.max(m, x[i]); i += 1 }
    return m
}

/// Σ x[i]. [count]
@inline(__always)
func rowSum(_ x: UnsafePointer<Float>, count: Int) -> Float {
    // Four independent sums of eight lanes, so the additions do not wait on each other.
    var s0 = SIMD8<Float>(), s1 = SIMD8<Float>(), s2 = SIMD8<Float>(), s3 = SIMD8<Float>()
    var i = 0
    while i + 32 <= count {
        s0 += load8(x + i); s1 += load8(x + i + 8); s2 += load8(x + i + 16); s3 += load8(x + i + 24)
        i += 32
    }
    while i + 8 <= count { s0 += load8(x + i); i += 8 }
    var s = ((s0 + s1) + (s2 + s3)).sum()
    while i < count { s += x[i]; i += 1 }
    return s
}

/// Σ a[i]·b[i]. [count]
@inline(__always)
func rowDot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
    var s0: Float = 0, s1: Float = 0, s2: Float = 0, s3: Float = 0, s4: Float = 0, s5: Float = 0, s6: Float = 0, s7: Float = 0
    var i = 0
    while i + 8 <= count {
        s0 += a[i] * b[i]; s1 += a[i + 1] * b[i + 1]; s2 += a[i + 2] * b[i + 2]; s3 += a[i + 3] * b[i + 3]
        s4 += a[i + 4] * b[i + 4]; s5 += a[i + 5] * b[i + 5]; s6 += a[i + 6] * b[i + 6]; s7 += a[i + 7] * b[i + 7]
        i += 8
    }
    var s = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
    while i < count { s += a[i] * b[i]; i += 1 }
    return s
}
