import Foundation
import ReplicaCore
import ReplicaDistributed
import ReplicaNN

/// ZeRO stage 1 (Rajbhandari et al. 2020; PyTorch's ZeroRedundancyOptimizer, DeepSpeed's stage 1):
/// each rank keeps the optimizer state of, and updates, only its shard of the parameters.
///
/// Every gradient bucket is split into one contiguous piece per rank (the remainder to the first
/// ranks); rank r owns piece r of every bucket, so each bucket's reduce-scatter leaves every rank
/// the summed gradients of exactly what it updates, and the shard is 1/p of every bucket (3 ranks
/// give pieces that differ by one element). After backward, `GradientReducer` reduce-scatters
/// the buckets, overlapped with backward as the all-reduce is; then the global gradient norm is
/// one all-reduce of each shard's sum of squares, clipping scales the shard, the optimizer updates
/// the shard, and the buckets' parameters are all-gathered, so every replica holds the same values
/// again. Checkpoints keep today's format (whole tensors in one `optimizer.safetensors`): the
/// state is gathered one bucket at a time and rank 0 streams it to the file (`checkpointStream`).
public final class OptimizerSharding {
    public let communicator: Communicator
    public let arena: ParameterArena
    /// The gradient buckets, in the order they are reduced (`GradientReducer.buckets`).
    public let buckets: [Range<Int>]
    /// `pieceCounts[b][r]`: the elements of bucket `b` that rank `r` owns.
    public let pieceCounts: [[Int]]
    /// This rank's pieces as ascending arena ranges: the parameters it updates, whose optimizer
    /// state it holds back to back in this order.
    public let shard: [Range<Int>]
    public var shardCount: Int { shard.reduce(0) { $0 + $1.count } }

    public init(communicator: Communicator, arena: ParameterArena, buckets: [Range<Int>]) {
        self.communicator = communicator
        self.arena = arena
        self.buckets = buckets
        let ranks = communicator.size, rank = communicator.rank
        pieceCounts = buckets.map { Self.pieces(of: $0.count, ranks: ranks) }
        shard = zip(buckets, pieceCounts).map { bucket, counts in
            let start = bucket.lowerBound + pieceOffset(of: rank, in: counts)
            return start..<(start + counts[rank])
        }.filter { !$0.isEmpty }.sorted { $0.lowerBound < $1.lowerBound }
    }

    /// Reduce-scatters in flight at once. Open MPI 4.1's non-blocking reduce-scatter (libnbc's
    /// binomial reduce to rank 0, then a linear scatter) holds two temporaries the size of its
    /// bucket on every rank that receives, until it completes; unbounded, a backward whose
    /// buckets outrun the link would hold them for every bucket, more than the moments ZeRO saves.
    public static let reductionsInFlight = 2

    /// `count` elements split over `ranks`: ⌊count/ranks⌋ each, one more for the first count mod ranks.
    public static func pieces(of count: Int, ranks: Int) -> [Int] {
        (0..<ranks).map { count / ranks + ($0 < count % ranks ? 1 : 0) }
    }

    /// This rank's piece of bucket `index`, as an arena range.
    func piece(ofBucket index: Int, rank: Int) -> Range<Int> {
        let start = buckets[index].lowerBound + pieceOffset(of: rank, in: pieceCounts[index])
        return start..<(start + pieceCounts[index][rank])
    }

    // MARK: - The step

    /// The global L2 norm of the reduced gradients: every rank sums the squares of its shard in
    /// Double, and one all-reduce adds the ranks' sums (the same value on every rank).
    public func gradientNorm() throws -> Float {
        var sum = [gradientSquaredSum(arena: arena, ranges: shard)]
        try communicator.allReduce(&sum, .sum)
        return Float(sum[0].squareRoot())
    }

    /// Clips the shard's gradients to `maxNorm` given the global `norm`, as torch's clip_grad_norm_.
    public func clip(norm: Float, maxNorm: Float) {
        clipGradients(arena: arena, ranges: shard, norm: norm, maxNorm: maxNorm)
    }

    /// Updates this rank's shard, then all-gathers every bucket's parameters (all started at once,
    /// then waited for), so that every rank holds the updated values of the whole arena.
    public func step(_ optimizer: Optimizer, learningRate: Float) throws {
        optimizer.step(arena: arena, learningRate: learningRate, ranges: shard)
        guard communicator.size > 1 else { return }
        let values = arena.values.pointer
        let pending = try buckets.indices.map { index in
            try communicator.startAllGather(UnsafeMutableBufferPointer(start: values + buckets[index].lowerBound, count: buckets[index].count),
                                            counts: pieceCounts[index])
        }
        for collective in pending { try collective.wait() }
    }

    // MARK: - Checkpoints

    /// This sharded optimizer state as a checkpoint's `optimizer.safetensors`, in today's format
    /// (whole, arena-sized tensors), gathered one bucket at a time as it is produced: rank 0
    /// writes it, every other rank runs the same gathers with `finish()` (`TensorStream`). No rank
    /// holds more than its shard and one bucket.
    public func checkpointStream(_ optimizer: Optimizer) -> TensorStream {
        let state = optimizer.stateBuffers()
        let entries = state.keys.sorted().map { (name: $0, shape: $0 == "step" ? [1] : [arena.count]) }
        return TensorStream(entries: entries) { index, write in
            try self.gather(entries[index].name, of: state, write: write)
        }
    }

    /// Hands `write` (rank 0's file; a no-op elsewhere) tensor `name` of the sharded `state` as a whole
    /// arena-sized tensor, bucket by bucket in arena order; "step" is the same everywhere and
    /// goes as it is. Every bucket's gather runs even after `write` threw; its error comes after.
    func gather(_ name: String, of state: [String: Tensor], write: (UnsafeRawBufferPointer) throws -> Void) throws {
        let tensor = state[name]!
        if name == "step" {
            try write(UnsafeRawBufferPointer(tensor.buffer))
            return
        }
        precondition(tensor.count == shardCount, "sharded optimizer state \(name) has \(tensor.count) elements, the shard \(shardCount)")
        var failure: Error?
        let scratch = Tensor(zeros: [buckets.map(\.count).max() ?? 0])
        for bucket in buckets.indices.sorted(by: { buckets[$0].lowerBound < buckets[$1].lowerBound }) {
            let range = buckets[bucket], mine = piece(ofBucket: bucket, rank: communicator.rank)
            let buffer = UnsafeMutableBufferPointer(start: scratch.data, count: range.count)
            if !mine.isEmpty {
                (scratch.data + (mine.lowerBound - range.lowerBound)).update(from: tensor.data + stateOffset(of: mine.lowerBound), count: mine.count)
            }
            try communicator.startAllGather(buffer, counts: pieceCounts[bucket]).wait()
            if failure == nil {
                do { try write(UnsafeRawBufferPointer(buffer)) } catch { failure = error }
            }
        }
        if let failure { throw failure }
    }

    /// Where arena offset `offset` (inside the shard) lives in the shard's back-to-back state.
    func stateOffset(of offset: Int) -> Int {
        var start = 0
        for range in shard {
            if range.contains(offset) { return start + offset - range.lowerBound }
            start += range.count
        }
        preconditionFailure("offset \(offset) is not in this rank's shard")
    }

    /// Loads this rank's shard of a whole-arena `optimizer.safetensors` (written with or without
    /// ZeRO, on any rank count) without reading the rest of it.
    public func loadState(from url: URL, into optimizer: Optimizer) throws {
        let file = try SafeTensors.Mapped(url)
        var state: [String: Tensor] = [:]
        for name in file.order {
            if name == "step" { state[name] = file.tensor(name); continue }
            let count = Tensor.elementCount(file.shapes[name]!)
            guard count == arena.count else {
                throw UserError("\(url.path): optimizer state \"\(name)\" has \(count) elements but the model has "
                    + "\(arena.count) parameters; the checkpoint belongs to a different model configuration.")
            }
            state[name] = file.elements(of: name, at: shard)
        }
        do {
            try optimizer.load(state: state)
        } catch {
            throw UserError("\(url.path): \(error)")
        }
    }
}
