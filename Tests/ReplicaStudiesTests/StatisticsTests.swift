import Testing
import ReplicaStudies

@Suite struct StatisticsTests {
    @Test func meanAndSampleStandardDeviationOfKnownValues() {
        #expect(arithmeticMean([2, 4, 4, 4, 5, 5, 7, 9]) == 5)
        #expect(arithmeticMean([]).isNaN)
        // Σ(x − 5)² = 32 over n − 1 = 7.
        #expect(abs(sampleStandardDeviation([2, 4, 4, 4, 5, 5, 7, 9]) - (32.0 / 7).squareRoot()) < 1e-12)
        #expect(sampleStandardDeviation([3]) == 0)
    }

    @Test func pearsonCorrelationOfLinearAndConstantValues() {
        #expect(abs(pearsonCorrelation([1, 2, 3, 4], [3, 5, 7, 9])! - 1) < 1e-12)
        #expect(abs(pearsonCorrelation([1, 2, 3, 4], [8, 6, 4, 2])! + 1) < 1e-12)
        #expect(abs(pearsonCorrelation([1, 2, 3], [1, 3, 2])! - 0.5) < 1e-12)
        #expect(pearsonCorrelation([1, 2, 3], [4, 4, 4]) == nil, "no variance")
    }
}
