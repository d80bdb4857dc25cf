import ReplicaCore

// The numbers several studies share: a mean, a spread, a correlation, and the geometry of a
// set of vectors. Legend: n rows of d values each, held row-major in one [Double] array [n, d].

/// The arithmetic mean (nan of nothing).
public func arithmeticMean(_ values: [Double]) -> Double { values.isEmpty ? .nan : values.reduce(0, +) / Double(values.count) }

/// The sample standard deviation (n − 1), 0 for fewer than two values.
public func sampleStandardDeviation(_ values: [Double]) -> Double {
    guard values.count > 1 else { return 0 }
    let mean = values.reduce(0, +) / Double(values.count)
    return (values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count - 1)).squareRoot()
}

/// Pearson's r of the pairs (aᵢ, bᵢ); nil when either has no variance.
public func pearsonCorrelation(_ a: [Double], _ b: [Double]) -> Double? {
    precondition(a.count == b.count, "pearsonCorrelation: \(a.count) values against \(b.count)")
    guard !a.isEmpty else { return nil }
    let m = Double(a.count)
    let meanA = a.reduce(0, +) / m, meanB = b.reduce(0, +) / m
    var covariance = 0.0, varianceA = 0.0, varianceB = 0.0
    for (x, y) in zip(a, b) {
        covariance += (x - meanA) * (y - meanB)
        varianceA += (x - meanA) * (x - meanA)
        varianceB += (y - meanB) * (y - meanB)
    }
    guard varianceA > 0, varianceB > 0 else { return nil }
    return covariance / (varianceA * varianceB).squareRoot()
}

/// ‖xᵢ‖, the Euclidean norm of row i of x [n, d].
func rowNorm(_ x: [Double], row i: Int, dimension d: Int) -> Double {
    var sum = 0.0
    for j in 0..<d { sum += x[i * d + j] * x[i * d + j] }
    return sum.squareRoot()
}

/// The rows scaled to unit length (a zero row stays zero). [n, d] -> [n, d]
func normalizedRows(_ x: [Double], count n: Int, dimension d: Int) -> [Double] {
    var unit = x
    for i in 0..<n {
        let norm = rowNorm(x, row: i, dimension: d)
        let scale = norm > 0 ? 1 / norm : 0
        for j in 0..<d { unit[i * d + j] *= scale }
    }
    return unit
}

/// The mean cosine similarity over all pairs of distinct rows of x [n, d], exact in O(n·d):
/// with uᵢ = xᵢ/‖xᵢ‖ over the m rows of nonzero norm, Σ_{i≠j} uᵢ·uⱼ = ‖Σ uᵢ‖² − m, so the mean is
/// (‖Σ uᵢ‖² − m) / m(m − 1). Zero rows (no direction) are left out; 1 when all rows point the
/// same way, −1 for two opposite rows, nan for m < 2.
public func meanPairwiseCosine(_ x: [Double], count n: Int, dimension d: Int) -> Double {
    let unit = normalizedRows(x, count: n, dimension: d)
    var sum = [Double](repeating: 0, count: d)
    var nonzero = 0
    for i in 0..<n {
        var norm = 0.0
        for j in 0..<d {
            sum[j] += unit[i * d + j]
            norm += unit[i * d + j] * unit[i * d + j]
        }
        if norm > 0 { nonzero += 1 }
    }
    guard nonzero >= 2 else { return .nan }
    let m = Double(nonzero)
    let squared = sum.reduce(0) { $0 + $1 * $1 }
    return (squared - m) / (m * (m - 1))
}

/// `meanPairwiseCosine` of the rows of a [N, W] tensor (node representations), in Double.
public func meanPairwiseCosine(_ x: Tensor) -> Double {
    meanPairwiseCosine(x.scalars.map(Double.init), count: x.rowCount, dimension: x.columnCount)
}
