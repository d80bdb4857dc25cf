/// The global batches of a run, epoch after epoch, and each replica's share of one.
///
/// `make(epoch)` gives an epoch's global batches of example indices, the same list on every rank
/// (`makeBatches`). A token budget cuts a different number of batches from each epoch's shuffle,
/// so step s is found by counting the batches of the epochs before it, not as s mod the first
/// epoch's count (which would skip batches of a longer epoch and run past the end of a shorter
/// one). Micro-step m of rank r takes replica m·ranks + r's contiguous share of the batch, so 1 rank
/// × N micro-steps sees what N ranks × 1 see. Everything depends on the step alone: a resumed run
/// continues exactly.
public final class GlobalBatches {
    public let rank: Int
    public let ranks: Int
    public let microSteps: Int
    private let make: (Int) -> [[Int]]
    /// Steps before each epoch began: starts[e] is the first step of epoch e (starts[0] = 0).
    private var starts = [0]
    private var cached: (epoch: Int, batches: [[Int]])?

    public init(rank: Int, ranks: Int, microSteps: Int, make: @escaping (_ epoch: Int) -> [[Int]]) {
        precondition(ranks >= 1 && (0..<ranks).contains(rank) && microSteps >= 1, "GlobalBatches: rank \(rank) of \(ranks), \(microSteps) micro-steps")
        self.rank = rank
        self.ranks = ranks
        self.microSteps = microSteps
        self.make = make
    }

    /// The epoch's global batches.
    public func batches(epoch: Int) -> [[Int]] {
        if let cached, cached.epoch == epoch { return cached.batches }
        let batches = make(epoch)
        precondition(!batches.isEmpty, "GlobalBatches: epoch \(epoch) has no batch")
        cached = (epoch, batches)
        return batches
    }

    /// Steps in the first epoch: the run's nominal epoch length (for `--epochs` and checkpoints).
    public var stepsPerEpoch: Int {
        walk(past: 0)
        return starts[1]
    }

    /// The epoch that step `step` falls in and the batch's index within it.
    public func position(step: Int) -> (epoch: Int, index: Int) {
        precondition(step >= 0, "GlobalBatches: step \(step)")
        walk(past: step)
        let epoch = starts.lastIndex { $0 <= step }!
        return (epoch, step - starts[epoch])
    }

    /// This rank's examples in micro-step `micro` of step `step` (possibly none).
    public func share(step: Int, micro: Int) -> [Int] {
        let (epoch, index) = position(step: step)
        return contiguousShare(of: batches(epoch: epoch)[index], part: micro * ranks + rank, parts: ranks * microSteps)
    }

    /// Extends `starts` with each further epoch's batch count until it reaches past `step`.
    private func walk(past step: Int) {
        while starts.last! <= step { starts.append(starts.last! + batches(epoch: starts.count - 1).count) }
    }
}
