import Foundation
import Testing
import ReplicaCore
import ReplicaStudies
import _ReplicaTestSupport

@Suite struct NormFrequencyReportTests {
    @Test func bucketsByCountDecadeHoldTheirWordsMeanNorms() throws {
        // 40 words in 4 dimensions: word i seen counts[i] times, its vector a random direction of length 1 + log10(count).
        var generator = SeededGenerator(seed: 9)
        let counts = (0..<40).map { [2, 5, 30, 70, 400, 3000][$0 % 6] }
        var vectors: [Double] = []
        for count in counts {
            let direction = (0..<4).map { _ in Double(generator.nextNormal()) }
            let norm = direction.reduce(0) { $0 + $1 * $1 }.squareRoot()
            vectors += direction.map { $0 / norm * (1 + log10(Double(count))) }
        }
        let report = try #require(NormFrequencyReport(vectors: vectors, count: 40, dimension: 4, frequencies: counts))
        #expect(report.buckets.map(\.label) == ["1–9", "10–99", "100–999", "1000–9999"])
        #expect(report.buckets.map(\.wordCount) == [14, 14, 6, 6])
        let expected = [(1 + log10(2.0)) * 7 / 14 + (1 + log10(5.0)) * 7 / 14, (1 + log10(30.0)) * 7 / 14 + (1 + log10(70.0)) * 7 / 14,
                        1 + log10(400.0), 1 + log10(3000.0)]
        for (bucket, mean) in zip(report.buckets, expected) { #expect(abs(bucket.meanNorm - mean) < 1e-9, "\(bucket)") }
        #expect(try #require(report.correlation) > 0.95)
        #expect(report.whitenedCorrelation != nil)
        #expect(report.lines.count == 6)
        #expect(NormFrequencyReport(vectors: vectors, count: 40, dimension: 4, frequencies: [Int](repeating: 0, count: 40)) == nil)
    }
}
