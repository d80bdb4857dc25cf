import Testing
import ReplicaCore

@Suite struct AliasTableTests {
    /// 200,000 draws: a frequency's standard deviation is at most √(0.25 / 200,000) ≈ 0.0011; 0.006 is over 5 of them.
    static let frequencyTolerance = 0.006

    @Test(arguments: [[1.0, 0, 3, 6], [5.0], [1e-9, 1, 2, 0.5, 0.5, 7, 0]])
    func drawsFollowTheWeights(weights: [Double]) {
        let table = AliasTable(weights: weights)
        var generator = SeededGenerator(seed: 3)
        let draws = 200_000
        var counts = [Int](repeating: 0, count: weights.count)
        for _ in 0..<draws { counts[table.sample(using: &generator)] += 1 }
        let total = weights.reduce(0, +)
        for (index, weight) in weights.enumerated() {
            let frequency = Double(counts[index]) / Double(draws)
            #expect(abs(frequency - weight / total) < Self.frequencyTolerance, "index \(index): \(frequency) vs \(weight / total)")
            if weight == 0 { #expect(counts[index] == 0, "a zero weight is never drawn") }
        }
    }

    @Test func theSameGeneratorDrawsTheSameIndices() {
        let weights = (0..<1000).map { Double(($0 * 7919) % 101) + 0.5 }
        let table = AliasTable(weights: weights), rebuilt = AliasTable(weights: weights)
        var a = SeededGenerator(seed: 11), b = SeededGenerator(seed: 11)
        #expect((0..<1000).map { _ in table.sample(using: &a) } == (0..<1000).map { _ in rebuilt.sample(using: &b) })
    }
}
