import Foundation
import Synchronization

/// The threads of one rank (`--threads T`): T − 1 workers and the calling thread share each
/// parallel piece of work, the matrix products (`BLAS.sgemm` splits them) and the element-wise
/// kernels alike. OpenBLAS itself runs single-threaded, so no second pool competes for the cores.
///
/// `run(parts:)` hands out parts 0..<parts one at a time to whichever thread is free, the caller
/// included, and returns when every part is done. Workers spin for a short while after a job
/// (the next one usually follows within microseconds: the next layer), then yield the core for a
/// while, and then sleep until woken.
/// One job at a time: a call made while another runs (from inside a part, or from another thread
/// of a test process) runs its parts itself, in order, so nothing waits on the pool it holds.
/// A job's parts split the work the same way whatever thread runs them, so a result depends on
/// the thread count (how many parts) but not on timing.
public enum ComputePool {
    /// Threads that take parts, the caller's included (1: everything runs on the caller).
    public static var threadCount: Int { pool.threadCount.load(ordering: .relaxed) }

    /// Starts (or stops) workers so that `count` threads take parts. Call between jobs.
    public static func setThreadCount(_ count: Int) {
        precondition(count >= 1, "ComputePool thread count must be at least 1, got \(count)")
        pool.resize(to: count)
    }

    /// Whether a job is running now (a parallel call made now would run on its caller alone).
    public static var isBusy: Bool { pool.busy.load(ordering: .relaxed) }

    /// Runs `body(part)` for every part in 0..<parts across the pool's threads; returns when all are done.
    public static func run(parts: Int, _ body: (Int) -> Void) {
        guard parts > 1, threadCount > 1, pool.acquire() else {
            for part in 0..<parts { body(part) }
            return
        }
        defer { pool.release() }
        withoutActuallyEscaping(body) { body in pool.execute(parts: parts, body) }
    }

    /// Splits 0..<count into one contiguous range per thread (none shorter than `grain`, so small
    /// work stays on one thread) and runs `body` on each.
    public static func forEachRange(count: Int, grain: Int, _ body: (Range<Int>) -> Void) {
        let parts = parts(count: count, grain: grain)
        if parts == 1 {
            if count > 0 { body(0..<count) }
            return
        }
        run(parts: parts) { part in body(range(part, of: parts, count: count)) }
    }

    /// Σ body(range) over `forEachRange`'s ranges of 0..<count, one partial sum a range added in
    /// range order: the result depends on the thread count only through that split.
    public static func sum(count: Int, grain: Int, _ body: (Range<Int>) -> Double) -> Double {
        let parts = parts(count: count, grain: grain)
        var partials = [Double](repeating: 0, count: parts)
        partials.withUnsafeMutableBufferPointer { partials in
            run(parts: parts) { part in partials[part] = body(range(part, of: parts, count: count)) }
        }
        return partials.reduce(0, +)
    }

    /// How many ranges `forEachRange` splits 0..<count into: one a thread, none shorter than `grain`.
    public static func parts(count: Int, grain: Int) -> Int {
        Swift.max(1, Swift.min(threadCount, count / Swift.max(grain, 1)))
    }

    /// Part `part` of `parts` nearly equal contiguous ranges of 0..<count.
    public static func range(_ part: Int, of parts: Int, count: Int) -> Range<Int> {
        (count * part / parts)..<(count * (part + 1) / parts)
    }

    private static let pool = Pool()
}

/// The workers and the job they share. `ticket` holds the job's epoch (high bits) and the next
/// part to hand out (low bits), so a worker that wakes late cannot take a part of a job it did
/// not see start: it claims a part only while the epoch is the one it read.
private final class Pool: @unchecked Sendable {
    let threadCount = Atomic<Int>(1)
    let busy = Atomic<Bool>(false)
    private let ticket = Atomic<Int>(0)
    private let completed = Atomic<Int>(0)
    private let sleepers = Atomic<Int>(0)
    private let wake = DispatchSemaphore(value: 0)
    private var parts = 0
    private var job: ((Int) -> Void)?
    private var workers: [Thread] = []
    private let stopping = Atomic<Int>(0)
    private static let partBits = 24
    private static let partMask = (1 << partBits) - 1

    func acquire() -> Bool { busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged }

    func release() { busy.store(false, ordering: .releasing) }

    func resize(to count: Int) {
        guard count != threadCount.load(ordering: .relaxed) else { return }
        while !acquire() { sched_yield() }
        defer { release() }
        // Stop the current workers: a new epoch with no parts, and a flag they check on waking.
        stopping.store(workers.count, ordering: .sequentiallyConsistent)
        ticket.wrappingAdd(1 << Self.partBits, ordering: .sequentiallyConsistent)
        for _ in workers { wake.signal() }
        while stopping.load(ordering: .sequentiallyConsistent) > 0 { sched_yield() }
        workers = []
        threadCount.store(count, ordering: .sequentiallyConsistent)
        // The epoch the new workers start from, read here: one that starts late still sees every
        // job (and every stop) published after this.
        let epoch = ticket.load(ordering: .sequentiallyConsistent) >> Self.partBits
        for index in 1..<Swift.max(count, 1) {
            let thread = Thread { [unowned self] in self.work(after: epoch) }
            thread.name = "replica compute \(index)"
            thread.stackSize = 8 << 20
            workers.append(thread)
            thread.start()
        }
    }

    /// The caller's side of a job (it holds `busy`).
    func execute(parts: Int, _ body: @escaping (Int) -> Void) {
        precondition(parts <= Self.partMask, "ComputePool: \(parts) parts")
        self.parts = parts
        job = body
        completed.store(0, ordering: .sequentiallyConsistent)
        let epoch = (ticket.load(ordering: .sequentiallyConsistent) >> Self.partBits) + 1
        ticket.store(epoch << Self.partBits, ordering: .sequentiallyConsistent)
        let asleep = sleepers.exchange(0, ordering: .sequentiallyConsistent)
        for _ in 0..<asleep { wake.signal() }
        take(epoch: epoch)
        // Parts still running elsewhere: spin briefly, then yield the core (a descheduled worker
        // on an oversubscribed machine needs it to finish).
        var spins = 0
        while completed.load(ordering: .sequentiallyConsistent) < parts {
            spins += 1
            if spins < 2_000 { spinPause() } else { sched_yield() }
        }
        job = nil
    }

    /// Claims and runs parts of job `epoch` until none is left.
    private func take(epoch: Int) {
        while true {
            let current = ticket.load(ordering: .sequentiallyConsistent)
            guard current >> Self.partBits == epoch else { return }
            let part = current & Self.partMask
            guard part < parts else { return }
            guard ticket.compareExchange(expected: current, desired: current + 1, ordering: .sequentiallyConsistent).exchanged else { continue }
            job!(part)
            completed.wrappingAdd(1, ordering: .sequentiallyConsistent)
        }
    }

    private func work(after epoch: Int) {
        var seen = epoch
        while true {
            var spins = 0
            var epoch = ticket.load(ordering: .sequentiallyConsistent) >> Self.partBits
            while epoch == seen {
                spins += 1
                if spins < 20_000 {
                    spinPause()
                } else if spins < 40_000 {
                    sched_yield()   // still ready within microseconds, without holding a core others want
                } else {
                    sleepers.wrappingAdd(1, ordering: .sequentiallyConsistent)
                    // A job published after the count was read wakes this thread through the semaphore.
                    if ticket.load(ordering: .sequentiallyConsistent) >> Self.partBits == seen { wake.wait() }
                    spins = 0
                }
                epoch = ticket.load(ordering: .sequentiallyConsistent) >> Self.partBits
            }
            seen = epoch
            if stopping.load(ordering: .sequentiallyConsistent) > 0 {
                stopping.wrappingSubtract(1, ordering: .sequentiallyConsistent)
                return
            }
            take(epoch: epoch)
        }
    }
}

/// A short wait in a spin loop: a few calls the optimiser cannot remove.
@inline(__always)
private func spinPause() {
    for _ in 0..<8 { spinHint() }
}

@inline(never)
private func spinHint() {}
