import Foundation
import ReplicaCore
import ReplicaDistributed
import ReplicaNN

/// Where a task's backward reports how far down the arena its gradients are final, so that
/// communication can start while backward goes on (the task knows nothing more of the reducer).
public protocol GradientSink: PhaseMarker {
    func gradientsReady(downTo offset: Int) throws
}

/// Sums the flat gradient buffer across ranks in buckets, overlapped with backward.
///
/// Buckets are contiguous ranges of `--bucket-mb`, last parameter first (PyTorch DDP's order).
/// Backward reports how far down the arena its gradients are final (`gradientsReady(downTo:)`);
/// every bucket wholly above that offset starts its non-blocking all-reduce at once, in the same
/// order on every rank, and the outstanding ones are polled so MPI makes progress while backward
/// computes (DESIGN-NOTES: Open MPI advances only inside MPI calls). `finish()` waits for all.
/// Losses are normalised by the global count before backward, so a sum is the global mean.
/// Under ZeRO-1 (`shardCounts`) each bucket is reduce-scattered instead: every rank ends with the
/// sum of only its piece of the bucket, the part of the arena whose update it owns.
/// With `compression` (`--grad-compression fp16|bf16`) a bucket travels in 16 bits: rounded into
/// a buffer of its own when it starts, summed in float32 addition by addition, and widened back
/// into the gradients when it completes. With `powerSGD` (`--grad-compression powersgd`), from its
/// start step on, each bucket is two all-reduces of its low-rank factors (`PowerSGD`): the
/// first overlapped with backward as above, the second started after backward in bucket order.
public final class GradientReducer: GradientSink {
    public let communicator: Communicator
    public let arena: ParameterArena
    public let buckets: [Range<Int>]
    public let overlap: Bool
    /// ZeRO-1: each bucket's split into one piece per rank (`OptimizerSharding.pieceCounts`); nil
    /// for an all-reduce of every bucket.
    public var shardCounts: [[Int]]?
    /// At most this many buckets in flight at once (nil: no limit); the rest wait for a poll
    /// that sees one finish. Open MPI's non-blocking reduce-scatter holds two temporaries the
    /// size of its bucket on the receiving rank until it completes, so ZeRO bounds them.
    public var inFlightLimit: Int?
    /// The 16-bit format buckets travel in (nil: float32); with `shardCounts`, their reduce-scatter.
    public var compression: HalfPrecision?
    /// Each bucket's schedule (`--allreduce`, `--hierarchical`), by its size in bytes.
    public var planner = CollectivePlanner.library
    /// `--timeline`: the buckets' spans and the step's compute segments (data, forward per
    /// block, loss, backward between its reports).
    public var timeline: Timeline?
    private var segmentStart = 0.0
    /// Between `beginBackward` and `finish`: marks cut segments (not those of evaluation).
    private var marking = false
    /// PowerSGD's state and its two all-reduces a bucket (nil: the buckets travel whole).
    public var powerSGD: PowerSGD?
    /// Whether this backward's buckets go through `powerSGD` (its start step reached).
    private var compressing = false
    /// The buckets' 16-bit copies, at the arena's offsets (allocated on first use).
    private var halves: UnsafeMutableBufferPointer<UInt16>?
    private var pending: [PendingCollective] = []
    private var startTimes: [Double] = []
    private var completionTimes: [Double?] = []
    private var nextBucket = 0
    /// Buckets whose gradients are final (they may start), counted from the first.
    private var readyBuckets = 0

    /// Totals since the last `takeStatistics()`.
    private var communicationSeconds = 0.0
    private var hiddenSeconds = 0.0

    public init(communicator: Communicator, arena: ParameterArena, bucketBytes: Int, overlap: Bool) {
        self.communicator = communicator
        self.arena = arena
        self.buckets = arena.buckets(maxBytes: max(bucketBytes, 4))
        self.overlap = overlap
    }

    deinit { halves?.deallocate() }

    /// Call before the backward pass whose gradients are to be reduced, that of optimizer step `step`
    /// (counted from 0).
    public func beginBackward(step: Int) {
        compressing = powerSGD.map { step >= $0.startStep } ?? false
        segmentStart = now()
        marking = true
        pending = []
        startTimes = []
        completionTimes = []
        nextBucket = 0
        readyBuckets = 0
    }

    /// The step's compute since the previous mark was `name`: a segment on the timeline.
    public func phaseEnded(_ name: @autoclosure () -> String) {
        guard marking, let timeline, timeline.isRecording else { return }
        let time = now()
        timeline.record(name(), .compute, from: segmentStart, to: time)
        segmentStart = time
    }

    /// Backward has finished every gradient at offsets ≥ `offset`: start the buckets above it.
    public func gradientsReady(downTo offset: Int) throws {
        phaseEnded("backward to \(self.arena.slots.last { $0.range.lowerBound <= offset }?.name ?? "\(offset)")")
        guard overlap, communicator.size > 1 else { return }
        while readyBuckets < buckets.count && buckets[readyBuckets].lowerBound >= offset { readyBuckets += 1 }
        try poll()
        try startReady()
    }

    /// Starts what is left, waits for every bucket, and records how much communication was hidden.
    public func finish() throws {
        marking = false
        guard communicator.size > 1 else { return }
        let finishEntered = now()
        readyBuckets = buckets.count
        try startReady()
        while nextBucket < buckets.count {
            // The limit holds the rest back: wait for the oldest in flight, then start more.
            if let oldest = completionTimes.firstIndex(where: { $0 == nil }) {
                try pending[oldest].wait()
                completionTimes[oldest] = now()
            }
            try startReady()
        }
        for index in pending.indices {
            if completionTimes[index] == nil {
                try pending[index].wait()
                completionTimes[index] = now()
            }
        }
        if compressing, let powerSGD {
            // PowerSGD's second all-reduce of every bucket, in bucket order on every rank.
            for index in buckets.indices {
                startTimes.append(now())
                completionTimes.append(nil)
                pending.append(try powerSGD.startSecondPhase(bucket: index, planner: planner))
            }
            for index in buckets.count..<pending.count {
                try pending[index].wait()
                completionTimes[index] = now()
            }
        }
        if let timeline {
            timeline.record("wait for the buckets", .communication, from: finishEntered, to: now())
            for index in pending.indices {
                let bucket = index % buckets.count, second = index >= buckets.count
                let name = compressing ? "bucket \(bucket) PowerSGD \(second ? "Q" : "P")" : "bucket \(bucket) (\(buckets[bucket].count * 4 / 1024) KiB)"
                timeline.recordCollective(name, from: startTimes[index], to: completionTimes[index]!)
            }
        }
        for index in pending.indices {
            let duration = completionTimes[index]! - startTimes[index]
            communicationSeconds += duration
            hiddenSeconds += max(0, min(completionTimes[index]!, finishEntered) - startTimes[index])
        }
        pending = []
    }

    /// Communication seconds and the fraction of it hidden behind backward since the last call.
    public func takeStatistics() -> (seconds: Double, overlapFraction: Double) {
        defer { communicationSeconds = 0; hiddenSeconds = 0 }
        return (communicationSeconds, communicationSeconds > 0 ? hiddenSeconds / communicationSeconds : 0)
    }

    private func start(_ index: Int) throws {
        let range = buckets[index]
        let buffer = UnsafeMutableBufferPointer(start: arena.gradients.pointer + range.lowerBound, count: range.count)
        startTimes.append(now())
        completionTimes.append(nil)
        let schedule = self.schedule(ofBucket: index)
        if compressing, let powerSGD {
            pending.append(try powerSGD.startFirstPhase(bucket: index, planner: planner))
        } else if let compression {
            pending.append(try startCompressed(buffer, range: range, format: compression, counts: shardCounts?[index], schedule: schedule))
        } else if let shardCounts {
            pending.append(try communicator.startReduceScatter(buffer, counts: shardCounts[index], schedule: schedule))
        } else {
            pending.append(try communicator.startAllReduce(buffer, .sum, schedule: schedule))
        }
        nextBucket += 1
    }

    /// How bucket `index` travels: the planner's schedule for its bytes on the wire (2 a value in 16 bits).
    public func schedule(ofBucket index: Int) -> CollectiveSchedule {
        planner.schedule(bytes: buckets[index].count * (compression == nil ? 4 : 2))
    }

    /// The 16-bit all-reduce of one bucket (with ZeRO's `counts`, its reduce-scatter), widened back
    /// into `buffer` (this rank's piece of it) when it completes. fp16 divides by the rank count
    /// before the sum so that it cannot overflow (as PyTorch's fp16 hook does) and multiplies
    /// after; bf16 has float32's range and is sent as it is.
    private func startCompressed(_ buffer: UnsafeMutableBufferPointer<Float>, range: Range<Int>, format: HalfPrecision,
                                 counts: [Int]?, schedule: CollectiveSchedule) throws -> PendingCollective {
        if halves == nil {
            let storage = UnsafeMutableBufferPointer<UInt16>.allocate(capacity: arena.count)
            storage.initialize(repeating: 0)
            halves = storage
        }
        let half = UnsafeMutableBufferPointer(rebasing: halves![range])
        let ranks = Float(communicator.size)
        format.compress(UnsafeBufferPointer(buffer), into: half, scale: format == .fp16 ? 1 / ranks : 1)
        let scale: Float = format == .fp16 ? ranks : 1
        guard let counts else {
            let started = try communicator.startAllReduce(half, summingAs: format, schedule: schedule)
            return CompletingCollective(started) { format.decompress(UnsafeBufferPointer(half), into: buffer, scale: scale) }
        }
        let started = try communicator.startReduceScatter(half, counts: counts, summingAs: format, schedule: schedule)
        let offset = pieceOffset(of: communicator.rank, in: counts), piece = offset..<(offset + counts[communicator.rank])
        return CompletingCollective(started) {
            format.decompress(UnsafeBufferPointer(rebasing: half[piece]), into: UnsafeMutableBufferPointer(rebasing: buffer[piece]), scale: scale)
        }
    }

    /// Starts ready buckets, in order, while the in-flight limit allows.
    private func startReady() throws {
        while nextBucket < readyBuckets {
            if let inFlightLimit, completionTimes.lazy.filter({ $0 == nil }).count >= inFlightLimit { return }
            try start(nextBucket)
        }
    }

    private func poll() throws {
        for index in pending.indices where completionTimes[index] == nil {
            if try pending[index].test() { completionTimes[index] = now() }
        }
    }

    private func now() -> Double { Timeline.now() }
}

/// A collective whose result needs one more step once it is in (a compressed bucket widened back).
final class CompletingCollective: PendingCollective {
    private let inner: PendingCollective
    private let completion: () -> Void
    private var done = false

    init(_ inner: PendingCollective, completion: @escaping () -> Void) {
        self.inner = inner
        self.completion = completion
    }

    func test() throws -> Bool {
        if !done, try inner.test() { finish() }
        return done
    }

    func wait() throws {
        guard !done else { return }
        try inner.wait()
        finish()
    }

    private func finish() {
        completion()
        done = true
    }
}
