import Foundation

/// The eigenvalues and eigenvectors of a real symmetric matrix, by cyclic Jacobi rotations in Double.
///
/// Each rotation in the (p, q) plane zeroes the off-diagonal entry a_pq (Numerical Recipes §11.1:
/// θ = (a_qq − a_pp) / 2a_pq, t = sgn θ / (|θ| + √(θ² + 1)), c = 1/√(t² + 1), s = t·c; A ← PᵀAP,
/// V ← VP); sweeps over every p < q repeat until the off-diagonal part is negligible next to the
/// whole matrix. Convergence is quadratic once the off-diagonal entries are small, typically 6–10
/// sweeps; a sweep costs about 6n³ operations, so n ≤ 512 takes at most a few seconds. OpenBLAS
/// ships LAPACK's `dsyev`, but Replica's CBLAS module map exposes only `cblas.h`, hence this.
///
/// ```swift
/// let eigen = SymmetricEigendecomposition(symmetric: [2, 1, 1, 2], dimension: 2)
/// eigen.values    // [3, 1]
/// eigen.vector(0) // [0.707, 0.707] (up to sign)
/// ```
public struct SymmetricEigendecomposition: Sendable {
    /// n, the matrix's order.
    public let dimension: Int
    /// The eigenvalues, largest first. [n]
    public let values: [Double]
    /// The eigenvectors as the columns of an orthogonal matrix, row-major: column j belongs to values[j]. [n, n]
    public let vectors: [Double]
    /// Sweeps the iteration took.
    public let sweeps: Int

    /// Decomposes the symmetric `matrix` [n, n] (row-major; only symmetric input is meaningful).
    public init(symmetric matrix: [Double], dimension n: Int, maximumSweeps: Int = 100) {
        precondition(n >= 1, "SymmetricEigendecomposition: the dimension must be at least 1, got \(n)")
        precondition(matrix.count == n * n, "SymmetricEigendecomposition: \(matrix.count) entries for \(n)×\(n)")
        var a = matrix
        var v = [Double](repeating: 0, count: n * n)
        for i in 0..<n { v[i * n + i] = 1 }
        let total = a.reduce(0) { $0 + $1 * $1 }
        var sweep = 0
        a.withUnsafeMutableBufferPointer { a in
            v.withUnsafeMutableBufferPointer { v in
                while sweep < maximumSweeps {
                    var off = 0.0
                    for p in 0..<n { for q in (p + 1)..<n { off += 2 * a[p * n + q] * a[p * n + q] } }
                    // Relative to the whole matrix: 1e-30 of ‖A‖² is below Double's rounding of the diagonal.
                    if off <= 1e-30 * total || off == 0 { break }
                    sweep += 1
                    for p in 0..<(n - 1) {
                        for q in (p + 1)..<n {
                            let apq = a[p * n + q]
                            if apq == 0 { continue }
                            let theta = (a[q * n + q] - a[p * n + p]) / (2 * apq)
                            let t = (theta >= 0 ? 1.0 : -1.0) / (abs(theta) + (theta * theta + 1).squareRoot())
                            let c = 1 / (t * t + 1).squareRoot(), s = t * c
                            for k in 0..<n {   // columns p, q: A ← AP
                                let akp = a[k * n + p], akq = a[k * n + q]
                                a[k * n + p] = c * akp - s * akq
                                a[k * n + q] = s * akp + c * akq
                            }
                            for k in 0..<n {   // rows p, q: A ← PᵀA
                                let apk = a[p * n + k], aqk = a[q * n + k]
                                a[p * n + k] = c * apk - s * aqk
                                a[q * n + k] = s * apk + c * aqk
                            }
                            a[p * n + q] = 0
                            a[q * n + p] = 0
                            for k in 0..<n {   // V ← VP
                                let vkp = v[k * n + p], vkq = v[k * n + q]
                                v[k * n + p] = c * vkp - s * vkq
                                v[k * n + q] = s * vkp + c * vkq
                            }
                        }
                    }
                }
            }
        }
        let order = (0..<n).sorted { (a[$0 * n + $0], -$0) > (a[$1 * n + $1], -$1) }
        values = order.map { a[$0 * n + $0] }
        var sorted = [Double](repeating: 0, count: n * n)
        for (column, source) in order.enumerated() {
            for row in 0..<n { sorted[row * n + column] = v[row * n + source] }
        }
        vectors = sorted
        dimension = n
        sweeps = sweep
    }

    /// The unit eigenvector of values[j]. [n]
    public func vector(_ j: Int) -> [Double] { (0..<dimension).map { vectors[$0 * dimension + j] } }
}
