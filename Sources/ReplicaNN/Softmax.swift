import ReplicaCore

// Softmax over the last dimension: rows of C elements, N = product of the leading dimensions.
// Numerically stable (the row maximum is subtracted before exponentiating); −∞ entries (masked
// attention logits) get probability 0, and a row that is entirely −∞ becomes all zeros rather
// than NaN. NaN or +∞ in a row makes that row NaN.

/// softmax(x / temperature) of each row. [..., C] -> [..., C]
public func softmaxRows(_ x: Tensor, temperature: Float = 1) -> Tensor {
    precondition(temperature > 0 && temperature.isFinite, "softmaxRows needs a positive temperature, got \(temperature)")
    let output = Tensor(zeros: x.shape)
    let C = x.columnCount
    guard C > 0 else { return output }
    for row in 0..<x.rowCount {
        softmaxRow(x.data + row * C, into: output.data + row * C, count: C, inverseTemperature: 1 / temperature)
    }
    return output
}

/// The input gradient of `softmaxRows` from its output and output gradient. [..., C] -> [..., C]
///
/// dx = y ⊙ (dy − ⟨y, dy⟩) / temperature, row by row.
public func softmaxRowsBackward(output: Tensor, outputGradient: Tensor, temperature: Float) -> Tensor {
    precondition(output.shape == outputGradient.shape,
                 "softmaxRowsBackward: output \(output.shape) and gradient \(outputGradient.shape) differ")
    precondition(temperature > 0 && temperature.isFinite, "softmaxRowsBackward needs a positive temperature, got \(temperature)")
    let inputGradient = outputGradient.copy()
    let C = output.columnCount
    guard C > 0 else { return inputGradient }
    for row in 0..<output.rowCount {
        softmaxRowBackward(inputGradient.data + row * C, output: output.data + row * C, count: C,
                           inverseTemperature: 1 / temperature)
    }
    return inputGradient
}

/// Replaces `row[0..<count]` by its softmax (temperature 1), for attention code working row by row. [count]
public func softmaxInPlace(_ row: UnsafeMutablePointer<Float>, count: Int) {
    precondition(count >= 0, "softmaxInPlace needs a non-negative count, got \(count)")
    softmaxRow(row, into: row, count: count, inverseTemperature: 1)
}

/// Replaces the output gradient `gradient[0..<count]` by the input gradient of `softmaxInPlace`. [count]
///
/// `output` is the row `softmaxInPlace` produced; dx = y ⊙ (dy − ⟨y, dy⟩).
public func softmaxBackwardInPlace(_ gradient: UnsafeMutablePointer<Float>, output: UnsafePointer<Float>, count: Int) {
    precondition(count >= 0, "softmaxBackwardInPlace needs a non-negative count, got \(count)")
    softmaxRowBackward(gradient, output: output, count: count, inverseTemperature: 1)
}

// MARK: - Row kernels

/// destination = softmax(source · inverseTemperature); source and destination may be the same row. [count]
@inline(__always)
func softmaxRow(_ source: UnsafePointer<Float>, into destination: UnsafeMutablePointer<Float>, count: Int,
                inverseTemperature: Float) {
    let maximum = rowMaximum(source, count: count)
    if maximum == -.infinity {                           // empty, every entry masked, or all NaN
        var isNaN = false
        for i in 0..<count where source[i].isNaN { isNaN = true }
        destination.update(repeating: isNaN ? .nan : 0, count: count)
        return
    }
    for i in 0..<count { destination[i] = fastExp((source[i] - maximum) * inverseTemperature) }
    let scale = 1 / rowSum(destination, count: count)
    for i in 0..<count { destination[i] *= scale }
}

/// gradient = y ⊙ (gradient − ⟨y, gradient⟩) · inverseTemperature, in place. [count]
@inline(__always)
func softmaxRowBackward(_ gradient: UnsafeMutablePointer<Float>, output: UnsafePointer<Float>, count: Int,
                        inverseTemperature: Float) {
    let projection = rowDot(output, gradient, count: count)
    for i in 0..<count { gradient[i] = output[i] * (gradient[i] - projection) * inverseTemperature }
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

@inline(__always)
func rowSum(_ x: UnsafePointer<Float>, count: Int) -> Float {
    var s0: Float = 0, s1: Float = 0, s2: Float = 0, s3: Float = 0, s4: Float = 0, s5: Float = 0, s6: Float = 0, s7: Float = 0
    var i = 0
    while i + 8 <= count {
        s0 += x[i]; s1 += x[i + 1]; s2 += x[i + 2]; s3 += x[i + 3]
        s4 += x[i + 4]; s5 += x[i + 5]; s6 += x[i + 6]; s7 += x[i + 7]
        i += 8
    }
    var s = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
    while i < count { s += x[i]; i += 1 }
    return s
}

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
