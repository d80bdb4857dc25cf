import Foundation
import ReplicaCore

/// N ranks as threads of one process, for tests of the data-parallel engine without mpirun
/// (STYLE: the equivalence tests run on an in-process communicator and again under mpirun).
///
/// Collectives meet at a barrier; rank 0's thread order is fixed, so every rank receives the
/// same bits (sums are taken over ranks 0, 1, ..., N−1 in that order). Non-blocking all-reduces
/// complete at start: ranks call them in the same order, so this cannot deadlock.
public final class ThreadCommunicatorGroup: @unchecked Sendable {
    public let size: Int
    let condition = NSCondition()
    var arrived = 0
    var generation = 0
    var slots: [UnsafeMutableRawPointer?]
    var counts: [Int]
    /// The records of the last all-gather, read by every rank after the exchange.
    var lastGather: [[UInt8]] = []

    public init(size: Int) {
        precondition(size >= 1, "a group needs at least one rank")
        self.size = size
        slots = Array(repeating: nil, count: size)
        counts = Array(repeating: 0, count: size)
    }

    /// The communicator of `rank`; give each to its own thread.
    public func communicator(rank: Int) -> ThreadCommunicator { ThreadCommunicator(rank: rank, group: self) }

    /// Runs `body(rank)` on `size` threads and waits for all; rethrows the first error.
    ///
    /// BLAS runs on one thread per rank, as under mpirun: OpenBLAS's own thread pool, entered by
    /// several threads at once, can deadlock (seen with OpenBLAS 0.3.21).
    public func run(_ body: @escaping @Sendable (Int) throws -> Void) throws {
        BLAS.setThreadCount(1)
        let errors = ErrorBox()
        let done = DispatchGroup()
        for rank in 0..<size {
            done.enter()
            let thread = Thread {
                defer { done.leave() }
                do { try body(rank) } catch { errors.set(error) }
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
        done.wait()
        if let error = errors.error { throw error }
    }

    /// Every rank deposits a pointer; `combine` runs once, on the last to arrive; then all leave.
    func exchange(rank: Int, pointer: UnsafeMutableRawPointer?, count: Int, combine: ([UnsafeMutableRawPointer?], [Int]) -> Void) {
        condition.lock()
        let myGeneration = generation
        slots[rank] = pointer
        counts[rank] = count
        arrived += 1
        if arrived == size {
            combine(slots, counts)
            arrived = 0
            generation += 1
            condition.broadcast()
        } else {
            while generation == myGeneration { condition.wait() }
        }
        condition.unlock()
    }
}

final class ErrorBox: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var error: Error?
    func set(_ error: Error) { lock.lock(); if self.error == nil { self.error = error }; lock.unlock() }
}

/// One rank of a `ThreadCommunicatorGroup`.
public final class ThreadCommunicator: Communicator, @unchecked Sendable {
    public let rank: Int
    public var size: Int { group.size }
    let group: ThreadCommunicatorGroup

    init(rank: Int, group: ThreadCommunicatorGroup) {
        self.rank = rank
        self.group = group
    }

    private func reduce<T: FloatingPoint>(_ buffer: UnsafeMutableBufferPointer<T>, _ combineValues: @escaping (T, T) -> T, scale: T?) {
        group.exchange(rank: rank, pointer: UnsafeMutableRawPointer(buffer.baseAddress), count: buffer.count) { slots, counts in
            precondition(Set(counts).count == 1, "ThreadCommunicator: all-reduce counts differ across ranks: \(counts)")
            let buffers = slots.map { $0!.assumingMemoryBound(to: T.self) }
            for i in 0..<counts[0] {
                var total = buffers[0][i]
                for r in 1..<buffers.count { total = combineValues(total, buffers[r][i]) }
                if let scale { total *= scale }
                for r in 0..<buffers.count { buffers[r][i] = total }
            }
        }
    }

    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Float>, _ operation: ReduceOperation) throws {
        reduce(buffer, +, scale: operation == .mean ? 1 / Float(size) : nil)
    }

    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Double>, _ operation: ReduceOperation) throws {
        reduce(buffer, +, scale: operation == .mean ? 1 / Double(size) : nil)
    }

    public func allReduceMaximum(_ buffer: UnsafeMutableBufferPointer<Double>) throws {
        reduce(buffer, { Swift.max($0, $1) }, scale: nil)
    }

    /// One process: every rank on one node.
    public var nodeLayout: NodeLayout { NodeLayout(rankInNode: rank, ranksInNode: size, nodes: 1) }

    public func startAllReduce(_ buffer: UnsafeMutableBufferPointer<Float>, _ operation: ReduceOperation, schedule: CollectiveSchedule) throws -> PendingCollective {
        try allReduce(buffer, operation)
        return CompletedCollective()
    }

    public func startAllReduce(_ buffer: UnsafeMutableBufferPointer<UInt16>, summingAs format: HalfPrecision, schedule: CollectiveSchedule) throws -> PendingCollective {
        // Ranks 0, 1, ... accumulated in order, as the float sums are; every rank gets the result.
        group.exchange(rank: rank, pointer: UnsafeMutableRawPointer(buffer.baseAddress), count: buffer.count) { slots, counts in
            precondition(Set(counts).count == 1, "ThreadCommunicator: 16-bit all-reduce counts differ across ranks: \(counts)")
            let buffers = slots.map { UnsafeMutableBufferPointer(start: $0!.assumingMemoryBound(to: UInt16.self), count: counts[0]) }
            var total = Array(buffers[0])
            total.withUnsafeMutableBufferPointer { total in
                for r in 1..<buffers.count { format.accumulate(UnsafeBufferPointer(buffers[r]), into: total) }
                for r in 0..<buffers.count { _ = buffers[r].update(fromContentsOf: total) }
            }
        }
        return CompletedCollective()
    }

    /// Every owner's piece, summed over ranks 0, 1, ... in order (the same bits as an all-reduce of
    /// it) by `sum(buffers, owner, piece)` into the owner's buffer; the barrier after keeps every
    /// rank's input intact until all are done.
    private func reduceScatter<T>(_ buffer: UnsafeMutableBufferPointer<T>, counts: [Int],
                                  sum: @escaping (_ buffers: [UnsafeMutablePointer<T>], _ owner: Int, _ piece: Range<Int>) -> Void) {
        precondition(counts.count == size && counts.reduce(0, +) == buffer.count,
                     "reduce-scatter counts \(counts) do not split \(buffer.count) elements over \(size) ranks")
        group.exchange(rank: rank, pointer: UnsafeMutableRawPointer(buffer.baseAddress), count: buffer.count) { slots, lengths in
            precondition(Set(lengths).count == 1, "ThreadCommunicator: reduce-scatter sizes differ across ranks: \(lengths)")
            let buffers = slots.map { $0!.assumingMemoryBound(to: T.self) }
            var start = 0
            for owner in 0..<buffers.count {
                sum(buffers, owner, start..<(start + counts[owner]))
                start += counts[owner]
            }
        }
    }

    public func startReduceScatter(_ buffer: UnsafeMutableBufferPointer<UInt16>, counts: [Int], summingAs format: HalfPrecision,
                                   schedule: CollectiveSchedule) throws -> PendingCollective {
        reduceScatter(buffer, counts: counts) { buffers, owner, piece in
            var total = Array(UnsafeBufferPointer(start: buffers[0] + piece.lowerBound, count: piece.count))
            total.withUnsafeMutableBufferPointer { total in
                for r in 1..<buffers.count { format.accumulate(UnsafeBufferPointer(start: buffers[r] + piece.lowerBound, count: piece.count), into: total) }
                (buffers[owner] + piece.lowerBound).update(from: total.baseAddress!, count: piece.count)
            }
        }
        return CompletedCollective()
    }

    public func startReduceScatter(_ buffer: UnsafeMutableBufferPointer<Float>, counts: [Int], schedule: CollectiveSchedule) throws -> PendingCollective {
        reduceScatter(buffer, counts: counts) { buffers, owner, piece in
            for i in piece {
                var total = buffers[0][i]
                for r in 1..<buffers.count { total += buffers[r][i] }
                buffers[owner][i] = total
            }
        }
        return CompletedCollective()
    }

    public func startAllGather(_ buffer: UnsafeMutableBufferPointer<Float>, counts: [Int]) throws -> PendingCollective {
        precondition(counts.count == size && counts.reduce(0, +) == buffer.count,
                     "all-gather counts \(counts) do not split \(buffer.count) elements over \(size) ranks")
        group.exchange(rank: rank, pointer: UnsafeMutableRawPointer(buffer.baseAddress), count: buffer.count) { slots, lengths in
            precondition(Set(lengths).count == 1, "ThreadCommunicator: all-gather sizes differ across ranks: \(lengths)")
            let buffers = slots.map { $0!.assumingMemoryBound(to: Float.self) }
            var start = 0
            for owner in 0..<buffers.count {
                for r in 0..<buffers.count where r != owner {
                    (buffers[r] + start).update(from: buffers[owner] + start, count: counts[owner])
                }
                start += counts[owner]
            }
        }
        return CompletedCollective()
    }

    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, from root: Int) throws {
        group.exchange(rank: rank, pointer: buffer.baseAddress, count: buffer.count) { slots, counts in
            precondition(Set(counts).count == 1, "ThreadCommunicator: broadcast sizes differ across ranks: \(counts)")
            for r in 0..<slots.count where r != root {
                slots[r]!.copyMemory(from: slots[root]!, byteCount: counts[root])
            }
        }
    }

    public func barrier() throws {
        group.exchange(rank: rank, pointer: nil, count: 0) { _, _ in }
    }

    public func allGather(_ record: [UInt8]) throws -> [[UInt8]] {
        var result: [[UInt8]] = []
        var mine = record
        try mine.withUnsafeMutableBytes { bytes in
            var gathered: [[UInt8]] = []
            group.exchange(rank: rank, pointer: bytes.baseAddress, count: bytes.count) { slots, counts in
                gathered = zip(slots, counts).map { pointer, count in
                    Array(UnsafeRawBufferPointer(start: pointer, count: count))
                }
                self.group.lastGather = gathered
            }
            result = group.lastGather
            guard Set(result.map(\.count)).count == 1 else {
                throw DistributedError("\(messagePrefix)all-gather records differ in length across ranks: \(result.map(\.count))")
            }
        }
        return result
    }

    public func abort(_ message: String, exitCode: Int32) -> Never {
        fputs("\(messagePrefix)\(message)\n", stderr)
        exit(exitCode)
    }
}
