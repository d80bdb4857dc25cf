import ReplicaCore

/// How an all-reduce combines the ranks' values.
public enum ReduceOperation: Sendable {
    /// Elementwise sum over ranks.
    case sum
    /// Elementwise sum divided by the number of ranks.
    case mean
}

/// A failure of a collective operation: the job cannot go on consistently (exit status 2).
public struct DistributedError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A non-blocking collective in flight. The buffer it was started on must stay untouched until
/// `test()` has returned true or `wait()` has returned.
public protocol PendingCollective: AnyObject {
    /// Drives progress; true once the result is in the buffer.
    func test() throws -> Bool
    /// Blocks until the result is in the buffer.
    func wait() throws
}

/// The collective operations the trainer needs, the same alone and under mpirun.
///
/// Every rank must call the same collectives in the same order with the same sizes.
public protocol Communicator: AnyObject, Sendable {
    var rank: Int { get }
    var size: Int { get }

    /// In place over all ranks.
    func allReduce(_ buffer: UnsafeMutableBufferPointer<Float>, _ operation: ReduceOperation) throws
    /// In place over all ranks, in double precision (losses, counts, norms).
    func allReduce(_ buffer: UnsafeMutableBufferPointer<Double>, _ operation: ReduceOperation) throws
    /// Elementwise maximum over ranks, in place.
    func allReduceMaximum(_ buffer: UnsafeMutableBufferPointer<Double>) throws
    /// This rank's place in the machine's layout: its rank among the ranks of its node (those
    /// sharing memory), how many those are, and the number of nodes.
    var nodeLayout: NodeLayout { get }

    /// Starts an in-place all-reduce and returns at once, run as `schedule` says.
    func startAllReduce(_ buffer: UnsafeMutableBufferPointer<Float>, _ operation: ReduceOperation, schedule: CollectiveSchedule) throws -> PendingCollective
    /// Starts an in-place sum of 16-bit values in `format` (`--grad-compression fp16|bf16`): every
    /// addition widens both operands to float32 and rounds the sum back (`HalfPrecision.accumulate`).
    func startAllReduce(_ buffer: UnsafeMutableBufferPointer<UInt16>, summingAs format: HalfPrecision, schedule: CollectiveSchedule) throws -> PendingCollective
    /// The 16-bit reduce-scatter (ZeRO-1 with `--grad-compression`): as `startReduceScatter`, summed
    /// as `startAllReduce(_:summingAs:)` sums.
    func startReduceScatter(_ buffer: UnsafeMutableBufferPointer<UInt16>, counts: [Int], summingAs format: HalfPrecision,
                            schedule: CollectiveSchedule) throws -> PendingCollective
    /// Starts an in-place reduce-scatter sum (ZeRO's gradient reduction). `buffer` holds every
    /// rank's `counts[0] + … + counts[size − 1]` elements; once complete, this rank's piece (its
    /// `counts[rank]` elements at offset `counts[0] + … + counts[rank − 1]`) holds the sum over
    /// ranks, and the other elements are undefined. A reduce-scatter is never hierarchical.
    func startReduceScatter(_ buffer: UnsafeMutableBufferPointer<Float>, counts: [Int], schedule: CollectiveSchedule) throws -> PendingCollective
    /// Starts an in-place all-gather: rank r's piece (`counts[r]` elements at the offset of the
    /// counts before it) goes to every rank's buffer at that offset.
    func startAllGather(_ buffer: UnsafeMutableBufferPointer<Float>, counts: [Int]) throws -> PendingCollective
    /// Copies `buffer` from `root` to every rank.
    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, from root: Int) throws
    func barrier() throws
    /// Every rank's `record`, in rank order. Records must have the same length on every rank.
    func allGather(_ record: [UInt8]) throws -> [[UInt8]]
    /// Ends every rank of the job with `exitCode` after printing `message` on stderr.
    func abort(_ message: String, exitCode: Int32) -> Never
}

/// Where a rank sits: among the ranks of one node (shared memory), on one of `nodes`.
public struct NodeLayout: Sendable, Equatable {
    public var rankInNode: Int
    public var ranksInNode: Int
    public var nodes: Int
    public init(rankInNode: Int, ranksInNode: Int, nodes: Int) {
        self.rankInNode = rankInNode
        self.ranksInNode = ranksInNode
        self.nodes = nodes
    }
}

/// How a bucket's non-blocking collective runs (`--allreduce`, `--hierarchical`): MPI's own
/// (Open MPI 4.1's libnbc: a binomial reduce and broadcast for an in-place all-reduce) or
/// Replica's ring over point-to-point, flat or with the node-local stages around it. In-process
/// communicators sum the same either way.
public struct CollectiveSchedule: Sendable, Hashable, CustomStringConvertible {
    public var ring: Bool
    public var hierarchical: Bool
    public init(ring: Bool = false, hierarchical: Bool = false) {
        self.ring = ring
        self.hierarchical = hierarchical
    }
    /// MPI's own, flat.
    public static let library = CollectiveSchedule()
    public var description: String { (hierarchical ? "hierarchical " : "") + (ring ? "ring" : "binomial") }
}

extension Communicator {
    public var isRoot: Bool { rank == 0 }

    public func startAllReduce(_ buffer: UnsafeMutableBufferPointer<Float>, _ operation: ReduceOperation) throws -> PendingCollective {
        try startAllReduce(buffer, operation, schedule: .library)
    }

    public func startAllReduce(_ buffer: UnsafeMutableBufferPointer<UInt16>, summingAs format: HalfPrecision) throws -> PendingCollective {
        try startAllReduce(buffer, summingAs: format, schedule: .library)
    }

    public func startReduceScatter(_ buffer: UnsafeMutableBufferPointer<UInt16>, counts: [Int], summingAs format: HalfPrecision) throws -> PendingCollective {
        try startReduceScatter(buffer, counts: counts, summingAs: format, schedule: .library)
    }

    public func startReduceScatter(_ buffer: UnsafeMutableBufferPointer<Float>, counts: [Int]) throws -> PendingCollective {
        try startReduceScatter(buffer, counts: counts, schedule: .library)
    }

    public func allReduce(_ tensor: Tensor, _ operation: ReduceOperation = .sum) throws {
        try allReduce(tensor.buffer, operation)
    }

    public func allReduce(_ values: inout [Double], _ operation: ReduceOperation = .sum) throws {
        try values.withUnsafeMutableBufferPointer { try allReduce($0, operation) }
    }

    public func allReduceMaximum(_ values: inout [Double]) throws {
        try values.withUnsafeMutableBufferPointer { try allReduceMaximum($0) }
    }

    public func broadcast(_ tensor: Tensor, from root: Int) throws {
        try broadcast(UnsafeMutableRawBufferPointer(tensor.buffer), from: root)
    }

    public func broadcast(_ values: inout [UInt8], from root: Int) throws {
        try values.withUnsafeMutableBytes { try broadcast($0, from: root) }
    }

    /// "[rank r/n] " for messages, as every distributed message starts.
    public var messagePrefix: String { "[rank \(rank)/\(size)] " }
}

/// Where rank `rank`'s piece of a buffer split by `counts` (one count a rank) begins.
public func pieceOffset(of rank: Int, in counts: [Int]) -> Int { counts.prefix(rank).reduce(0, +) }
