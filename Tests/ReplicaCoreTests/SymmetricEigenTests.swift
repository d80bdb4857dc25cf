import Foundation
import Testing
import ReplicaCore
import _ReplicaTestSupport

@Suite struct SymmetricEigendecompositionTests {
    /// A random orthogonal matrix [n, n] (Gram–Schmidt of Gaussian columns), row-major.
    static func orthogonal(_ n: Int, seed: UInt64) -> [Double] {
        var generator = SeededGenerator(seed: seed)
        var columns: [[Double]] = []
        while columns.count < n {
            var v = (0..<n).map { _ in Double(generator.nextNormal()) }
            for u in columns {
                let projection = zip(u, v).reduce(0) { $0 + $1.0 * $1.1 }
                for i in 0..<n { v[i] -= projection * u[i] }
            }
            let norm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
            if norm > 1e-6 { columns.append(v.map { $0 / norm }) }
        }
        return (0..<(n * n)).map { columns[$0 % n][$0 / n] }
    }

    /// Q diag(λ) Qᵀ.
    static func matrix(eigenvalues: [Double], seed: UInt64) -> [Double] {
        let n = eigenvalues.count, q = orthogonal(n, seed: seed)
        return (0..<(n * n)).map { index in
            let (a, b) = (index / n, index % n)
            return (0..<n).reduce(0) { $0 + q[a * n + $1] * eigenvalues[$1] * q[b * n + $1] }
        }
    }

    @Test func aTwoByTwoMatrixHasItsTextbookEigenpairs() {
        let eigen = SymmetricEigendecomposition(symmetric: [2, 1, 1, 2], dimension: 2)
        #expect(abs(eigen.values[0] - 3) < 1e-14 && abs(eigen.values[1] - 1) < 1e-14)
        let v = eigen.vector(0)
        #expect(abs(abs(v[0]) - 0.5.squareRoot()) < 1e-14 && abs(v[0] - v[1]) < 1e-14)
    }

    @Test(arguments: [1, 3, 20, 64])
    func knownSpectraAreRecovered(n: Int) {
        // Distinct, repeated and zero eigenvalues.
        let spectrum: [Double] = (0..<n).map { (i: Int) -> Double in i % 5 == 4 ? 0 : 0.7 * Double(n - i / 2) }
        let a = Self.matrix(eigenvalues: spectrum, seed: UInt64(n))
        let eigen = SymmetricEigendecomposition(symmetric: a, dimension: n)
        for (found, expected) in zip(eigen.values, spectrum.sorted(by: >)) {
            #expect(abs(found - expected) < 1e-10 * Double(n), "\(found) vs \(expected)")
        }
        // A v = λ v and VᵀV = I.
        var residual = 0.0, orthogonality = 0.0
        for j in 0..<n {
            let v = eigen.vector(j)
            for row in 0..<n {
                let av = (0..<n).reduce(0) { $0 + a[row * n + $1] * v[$1] }
                residual = max(residual, abs(av - eigen.values[j] * v[row]))
            }
            for k in 0..<n {
                let dot = zip(v, eigen.vector(k)).reduce(0) { $0 + $1.0 * $1.1 }
                orthogonality = max(orthogonality, abs(dot - (j == k ? 1 : 0)))
            }
        }
        #expect(residual < 1e-10 && orthogonality < 1e-10, "residual \(residual), orthogonality \(orthogonality)")
    }
}
