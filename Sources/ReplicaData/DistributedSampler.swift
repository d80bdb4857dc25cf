import ReplicaCore

/// One global permutation of the examples per epoch, from (seed, epoch), split across ranks.
///
/// Global batch g = per-rank batch × ranks. Step s of an epoch takes positions
/// [s·g, (s+1)·g) of the permutation; rank r takes its slice [r·b, (r+1)·b) of those. So every
/// rank runs the same number of steps, no example is seen twice in an epoch, and the
/// remainder that does not fill a global batch is dropped (DistributedSampler's drop_last):
/// it is seen in other epochs, whose permutations differ. The same global batch is drawn
/// whatever the rank count, which is what makes N ranks equal 1 rank with N× the batch.
public struct DistributedSampler: Sendable {
    public let exampleCount: Int
    public let globalBatch: Int
    public let seed: UInt64

    public init(exampleCount: Int, globalBatch: Int, seed: UInt64) {
        precondition(globalBatch > 0, "global batch must be positive")
        self.exampleCount = exampleCount
        self.globalBatch = globalBatch
        self.seed = seed
    }

    /// Full global batches in one epoch.
    public var stepsPerEpoch: Int { exampleCount / globalBatch }

    /// The permutation of epoch `epoch` (Fisher–Yates keyed by (seed, epoch)).
    public func permutation(forEpoch epoch: Int) -> [Int32] {
        var generator = SeededGenerator(seed: seed, 0x5341_4d50, UInt64(epoch))
        var order = (0..<exampleCount).map { Int32($0) }
        if order.count > 1 {
            for i in stride(from: order.count - 1, to: 0, by: -1) {
                let j = Int(generator.next() % UInt64(i + 1))
                order.swapAt(i, j)
            }
        }
        return order
    }

    /// Example indices of `rank`'s part of global step `step` in an epoch's permutation.
    public func indices(in permutation: [Int32], step: Int, rank: Int, batchSize: Int) -> [Int] {
        let start = step * globalBatch + rank * batchSize
        precondition(start + batchSize <= permutation.count, "step \(step) is beyond the epoch")
        return permutation[start..<(start + batchSize)].map(Int.init)
    }
}
