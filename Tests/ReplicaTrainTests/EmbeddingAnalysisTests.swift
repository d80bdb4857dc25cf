import Foundation
import Testing
import ReplicaCore
import ReplicaTrain
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

@Suite struct EmbeddingStatisticsTests {
    static func brute(_ x: [Double], n: Int, d: Int) -> Double {
        var sum = 0.0
        for i in 0..<n {
            for j in 0..<n where j != i {
                var dot = 0.0, a = 0.0, b = 0.0
                for k in 0..<d {
                    dot += x[i * d + k] * x[j * d + k]
                    a += x[i * d + k] * x[i * d + k]
                    b += x[j * d + k] * x[j * d + k]
                }
                sum += dot / (a * b).squareRoot()
            }
        }
        return sum / Double(n * (n - 1))
    }

    @Test func meanCosineOfConstructedVectors() {
        // Equal directions (any lengths): 1. An orthonormal basis: 0. Two vectors 60° apart: 0.5.
        #expect(abs(EmbeddingStatistics.meanPairwiseCosine([1, 2, 2, 4, 3, 6], count: 3, dimension: 2) - 1) < 1e-12)
        let identity = (0..<16).map { $0 % 5 == 0 ? 1.0 : 0 }
        #expect(abs(EmbeddingStatistics.meanPairwiseCosine(identity, count: 4, dimension: 4)) < 1e-12)
        #expect(abs(EmbeddingStatistics.meanPairwiseCosine([1, 0, 0.5, 0.75.squareRoot()], count: 2, dimension: 2) - 0.5) < 1e-12)
        // Opposite vectors: −1.
        #expect(abs(EmbeddingStatistics.meanPairwiseCosine([1, 1, -2, -2], count: 2, dimension: 2) + 1) < 1e-12)
        var generator = SeededGenerator(seed: 8)
        let random = (0..<(40 * 6)).map { _ in Double(generator.nextNormal()) + 0.7 }
        #expect(abs(EmbeddingStatistics.meanPairwiseCosine(random, count: 40, dimension: 6) - Self.brute(random, n: 40, d: 6)) < 1e-12)
    }

    /// Anisotropic vectors: a common offset, and one direction with most of the variance.
    static func anisotropic(n: Int, d: Int, seed: UInt64) -> [Double] {
        var generator = SeededGenerator(seed: seed)
        return (0..<(n * d)).map { index in
            let j = index % d
            return Double(generator.nextNormal()) * (j == 0 ? 10 : 1 + 0.2 * Double(j)) + 3 + Double(j)
        }
    }

    @Test func whiteningGivesIdentityCovarianceAndMeanCosineNearZero() {
        let (n, d) = (2000, 8)
        let x = Self.anisotropic(n: n, d: d, seed: 9)
        let (mean, covariance) = EmbeddingStatistics.covariance(x, count: n, dimension: d)
        let eigen = SymmetricEigendecomposition(symmetric: covariance, dimension: d)
        let z = EmbeddingStatistics.whiten(x, count: n, dimension: d, mean: mean, eigen: eigen)
        let (whiteMean, whiteCovariance) = EmbeddingStatistics.covariance(z, count: n, dimension: d)
        #expect(whiteMean.allSatisfy { abs($0) < 1e-10 })
        for a in 0..<d {
            for b in 0..<d { #expect(abs(whiteCovariance[a * d + b] - (a == b ? 1 : 0)) < 1e-4, "C[\(a),\(b)]") }
        }
        let statistics = EmbeddingStatistics(vectors: x, count: n, dimension: d, k: 2)
        #expect(statistics.before.meanCosine > 0.5, "\(statistics.before)")
        #expect(abs(statistics.after.meanCosine) < 0.01, "\(statistics.after)")
        #expect(statistics.before.topVariance > 0.8)
        #expect(abs(statistics.after.topVariance - 1.0 / Double(d)) < 1e-4)
        #expect(abs(statistics.after.topKVariance - 2.0 / Double(d)) < 1e-4)
        #expect(statistics.rank == d)
    }

    @Test func fewerRowsThanDimensionsWhitenWithinTheirSpan() {
        // 10 rows in 16 dimensions (charlm: 65 characters, 128 wide): covariance rank 9.
        let x = Self.anisotropic(n: 10, d: 16, seed: 3)
        let statistics = EmbeddingStatistics(vectors: x, count: 10, dimension: 16, k: 3)
        #expect(statistics.rank == 9)
        #expect(abs(statistics.after.topVariance - 1.0 / 9) < 1e-4, "\(statistics.after)")
        #expect(statistics.after.meanCosine.isFinite)
    }

    @Test func normsThatGrowWithLogFrequencyCorrelateFully() {
        let counts = [1, 10, 100, 1000, 0, 50]
        let x: [Double] = counts.flatMap { count -> [Double] in [count > 0 ? log(Double(count)) + 1 : 7, 0] }   // norm = log count + 1
        let r = EmbeddingStatistics.normLogFrequencyCorrelation(x, dimension: 2, frequencies: counts)
        #expect(r != nil && abs(r! - 1) < 1e-12, "r = \(String(describing: r))")
    }
}
