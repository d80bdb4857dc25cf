import Foundation
import Testing
import ReplicaCore
import ReplicaStudies
import ReplicaTrain
import _ReplicaTestSupport

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
        #expect(abs(meanPairwiseCosine([1, 2, 2, 4, 3, 6], count: 3, dimension: 2) - 1) < 1e-12)
        let identity = (0..<16).map { $0 % 5 == 0 ? 1.0 : 0 }
        #expect(abs(meanPairwiseCosine(identity, count: 4, dimension: 4)) < 1e-12)
        #expect(abs(meanPairwiseCosine([1, 0, 0.5, 0.75.squareRoot()], count: 2, dimension: 2) - 0.5) < 1e-12)
        // Opposite vectors: −1.
        #expect(abs(meanPairwiseCosine([1, 1, -2, -2], count: 2, dimension: 2) + 1) < 1e-12)
        var generator = SeededGenerator(seed: 8)
        let random = (0..<(40 * 6)).map { _ in Double(generator.nextNormal()) + 0.7 }
        #expect(abs(meanPairwiseCosine(random, count: 40, dimension: 6) - Self.brute(random, n: 40, d: 6)) < 1e-12)
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
