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
    scaleRow(destination, count: count, by: 1 / rowSum(destination, count: count))
}

/// row = exp(row − m) for the first `count` entries, in place, and 0 for the rest of its `width`
/// (≥ count; attention's causal rows, whose entries past the diagonal are not computed); returns
/// the sum. −∞ entries (masked scores) become 0, and so does every entry when m is +∞. m must be
/// at least every entry (each caller's is its row's maximum or log-sum-exp), so row − m ≤ 0 and
/// the exponential's overflow guard is left out (`guardsOverflow: false`, the same bits there).
/// [width]
@inline(__always) @discardableResult
func exponentiateRow(_ row: UnsafeMutablePointer<Float>, count: Int, width: Int, minus m: Float) -> Float {
    // Eight at a time, the sum in the same pass. A last chunk with room for eight in the row is
    // read whole, its lanes past `count` set to −∞ (whatever the row held there) and written
    // whole as zeros; only a last chunk without room is loaded and stored a lane at a time.
    // Attention's causal rows have every length, so nearly every row ends in a short chunk, and
    // nearly always one with room.
    assert(width >= count, "exponentiateRow: width \(width) below count \(count)")
    let shift = SIMD8<Float>(repeating: m)
    var sum = SIMD8<Float>(), i = 0, written = 0
    while i < count {
        let whole = i + 8 <= width, lanes = min(8, count - i)
        let x = whole ? load8(row + i) : loadChunk(row + i, lanes, padding: -.infinity)
        let visible = lanes == 8 || !whole ? x : firstLanes(x, lanes, padding: -.infinity)
        let chunk = exponential(visible - shift, guardsOverflow: false)   // one call site, so that it is inlined
        if whole { store8(chunk, row + i) } else { storeChunk(chunk, row + i, lanes) }
        written = whole ? i + 8 : count
        sum += chunk
        i += 8
    }
    if written < width { (row + written).update(repeating: 0, count: width - written) }
    return sum.sum()
}

/// destination = exp(source − m), eight at a time; returns the sum, added in Double. m must be at
/// least every entry (cross-entropy's row maximum), as for `exponentiateRow(_:count:width:minus:)`. [count]
@inline(__always)
func exponentiateRow(_ source: UnsafePointer<Float>, into destination: UnsafeMutablePointer<Float>, count: Int,
                     minus m: Float) -> Double {
    let shift = SIMD8<Float>(repeating: m)
    var sum = SIMD8<Double>(), i = 0
    while i < count {
        let lanes = min(8, count - i)
        let chunk = exponential(loadChunk(source + i, lanes, padding: -.infinity) - shift, guardsOverflow: false)
        storeChunk(chunk, destination + i, lanes)
        sum += widened(chunk)
        i += 8
    }
    return sum.sum()
}

/// gradient = y ⊙ (gradient − ⟨y, gradient⟩) · inverseTemperature, in place. [count]
@inline(__always)
func softmaxRowBackward(_ gradient: UnsafeMutablePointer<Float>, output: UnsafePointer<Float>, count: Int,
                        inverseTemperature: Float) {
    let projection = rowDot(output, gradient, count: count)
    for i in 0..<count { gradient[i] = output[i] * (gradient[i] - projection) * inverseTemperature }
}
