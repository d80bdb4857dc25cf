import Testing
import ReplicaCore

@Suite struct TensorTests {
    @Test func viewsShareElementsAndCopiesDoNot() {
        let t = Tensor(shape: [2, 3], values: [1, 2, 3, 4, 5, 6])
        let view = t.reshaped([3, 2])
        view[0] = 10
        #expect(t[0] == 10)
        let copy = t.copy()
        copy[1] = 20
        #expect(t[1] == 2)
        #expect(t.rowCount == 2 && t.columnCount == 3)
    }

    @Test func seededGeneratorsReproduceAndDifferByKey() {
        var a = SeededGenerator(seed: 7, 1, 2), b = SeededGenerator(seed: 7, 1, 2), c = SeededGenerator(seed: 7, 2, 1)
        let x = (0..<5).map { _ in a.next() }, y = (0..<5).map { _ in b.next() }, z = (0..<5).map { _ in c.next() }
        #expect(x == y)
        #expect(x != z)
        var restored = SeededGenerator(state: a.stateWords)
        #expect(restored.next() == a.next())
    }

    @Test func normalDrawsHaveUnitVariance() {
        var g = SeededGenerator(seed: 3)
        let draws = (0..<20_000).map { _ in Double(g.nextNormal()) }
        let mean = draws.reduce(0, +) / Double(draws.count)
        let variance = draws.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(draws.count)
        #expect(abs(mean) < 0.03)
        #expect(abs(variance - 1) < 0.05)
    }
}

@Suite struct ParameterArenaTests {
    @Test func bucketsCoverEveryParameterOnceLastFirst() {
        let arena = ParameterArena()
        for i in 0..<10 { arena.declare("p\(i)", shape: [100 * (i + 1)], decays: true) }
        arena.allocate()
        let buckets = arena.buckets(maxBytes: 4 * 1000)
        #expect(buckets.first?.upperBound == arena.count)
        #expect(buckets.last?.lowerBound == 0)
        for (earlier, later) in zip(buckets, buckets.dropFirst()) { #expect(later.upperBound == earlier.lowerBound) }
        // Every bucket holds whole slots, and none but single-slot ones exceed the limit.
        let boundaries = Set(arena.slots.map(\.range.lowerBound) + [arena.count])
        for bucket in buckets {
            #expect(boundaries.contains(bucket.lowerBound) && boundaries.contains(bucket.upperBound))
            let slotsInside = arena.slots.filter { bucket.contains($0.range.lowerBound) }.count
            #expect(bucket.count * 4 <= 4000 || slotsInside == 1)
        }
    }

    @Test func gradientsAreViewsIntoOneBuffer() {
        let arena = ParameterArena()
        let w = arena.declare("w", shape: [2, 3], decays: true)
        let b = arena.declare("b", shape: [3], decays: false)
        arena.allocate()
        arena.gradient(b)[1] = 5
        arena.value(w)[0] = 1
        #expect(arena.allGradients[7] == 5)
        #expect(arena.allValues[0] == 1)
        arena.zeroGradients()
        #expect(arena.allGradients.scalars.allSatisfy { $0 == 0 })
    }
}
