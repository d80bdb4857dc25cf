import ReplicaCore

/// Relative tolerance for float32 results of different summation orders (BLAS vs naive loops).
public let float32SummationTolerance: Float = 1e-4

/// Relative difference |a − b| / max(|a|, |b|, floor) elementwise maximum; +∞ where exactly one
/// of the two is NaN (`max` would drop a NaN ratio, so a NaN result would pass any tolerance).
public func maximumRelativeDifference(_ a: [Float], _ b: [Float], floor: Float = 1e-6) -> Float {
    precondition(a.count == b.count, "compared arrays differ in length: \(a.count) vs \(b.count)")
    var worst: Float = 0
    for (x, y) in zip(a, b) {
        if x.isNaN || y.isNaN {
            if x.isNaN != y.isNaN { return .infinity }
            continue
        }
        worst = max(worst, abs(x - y) / max(abs(x), abs(y), floor))
    }
    return worst
}

/// A tensor of uniform draws in [-1, 1), seeded.
public func randomTensor(_ shape: [Int], seed: UInt64) -> Tensor {
    var generator = SeededGenerator(seed: seed)
    let tensor = Tensor(zeros: shape)
    tensor.fillUniform(bound: 1, using: &generator)
    return tensor
}
