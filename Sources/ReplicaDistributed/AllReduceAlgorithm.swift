import Foundation

/// `--allreduce`: how a gradient bucket's all-reduce runs. `binomial` is Open MPI's own
/// non-blocking all-reduce, which for an in-place buffer is libnbc's binomial reduce and
/// broadcast (2⌈log2 p⌉ rounds of the whole bucket); `ring` is Replica's ring (2(p − 1) rounds
/// of 1/p of it, ring.c); `auto` picks the faster for the bucket's size, the rank count and the
/// nodes by `AllReduceCostModel`.
public enum AllReduceAlgorithm: String, CaseIterable, Sendable {
    case auto, ring, binomial
}

/// The α–β model `--allreduce auto` decides by (docs/compression.md: the ring and the binomial
/// measured on 2 and 4 simulated nodes; bench/cost_model.py simulates the same schedules message
/// by message). A message of n bytes over a link costs α + n·β; a link that carries both
/// directions at once (the ring's rounds: every rank sends and receives) moves each at
/// 1/`duplexFactor` of one direction's rate. Replica's ring keeps both directions of this
/// project's shaped veth links at the one-way rate (2 nodes at 100 Mbit/s: its 3.2 MB all-reduce
/// takes the time of 3.2 MB one way), so 1. Between nodes α = 50 µs and β = 8 ns a byte
/// (1 Gbit/s); within a node (shared memory) α = 1 µs, β = 0.4 ns (2.4 GB/s measured). Only
/// their ratios decide.
public struct AllReduceCostModel: Sendable {
    public var latency = 50e-6
    public var secondsPerByte = 8e-9
    public var duplexFactor = 1.0
    public var localLatency = 1e-6
    public var localSecondsPerByte = 0.4e-9
    public var localDuplexFactor = 1.12

    public init() {}

    static func log2Ceiling(_ n: Int) -> Double { n <= 1 ? 0 : Double(Int.bitWidth - (n - 1).leadingZeroBitCount) }

    /// libnbc's binomial reduce and broadcast of `bytes` over `ranks` ranks, `perNode` on each
    /// node (consecutive ranks together): the tree's top ⌈log2 nodes⌉ levels cross between nodes,
    /// each way, one whole bucket a level; the rest stay inside a node.
    public func binomialSeconds(bytes: Int, ranks: Int, perNode: Int) -> Double {
        let nodes = (ranks + perNode - 1) / max(perNode, 1), n = Double(bytes)
        return 2 * Self.log2Ceiling(nodes) * (latency + n * secondsPerByte)
            + 2 * Self.log2Ceiling(min(perNode, ranks)) * (localLatency + n * localSecondsPerByte)
    }

    /// The ring: 2(p − 1) rounds of bytes/p, each as long as its slowest link, carrying both
    /// directions at once (one node's boundary when there are several nodes).
    public func ringSeconds(bytes: Int, ranks: Int, perNode: Int) -> Double {
        guard ranks > 1 else { return 0 }
        let piece = Double(bytes) / Double(ranks), rounds = 2 * Double(ranks - 1)
        if ranks > perNode { return rounds * (latency + piece * secondsPerByte * duplexFactor) }
        return rounds * (localLatency + piece * localSecondsPerByte * localDuplexFactor)
    }

    /// Whether the ring is the faster for a bucket of `bytes` over `ranks` ranks, `perNode` a node.
    /// On one node Open MPI's shared-memory path is kept (the ring's gain there is below what a
    /// shared machine's noise lets one measure).
    public func prefersRing(bytes: Int, ranks: Int, perNode: Int) -> Bool {
        guard ranks > perNode else { return false }
        return ringSeconds(bytes: bytes, ranks: ranks, perNode: perNode) < binomialSeconds(bytes: bytes, ranks: ranks, perNode: perNode)
    }
}

/// Chooses each bucket's `CollectiveSchedule` from `--allreduce` and `--hierarchical` on this
/// job's layout: with `hierarchical`, the algorithm is that of the leaders' all-reduce across
/// nodes (one rank a node), else of the flat all-reduce over every rank.
public struct CollectivePlanner: Sendable {
    public var algorithm: AllReduceAlgorithm
    public var hierarchical: Bool
    public var ranks: Int
    public var layout: NodeLayout
    public var model = AllReduceCostModel()

    public init(algorithm: AllReduceAlgorithm = .binomial, hierarchical: Bool = false, ranks: Int = 1,
                layout: NodeLayout = NodeLayout(rankInNode: 0, ranksInNode: 1, nodes: 1)) {
        self.algorithm = algorithm
        self.hierarchical = hierarchical
        self.ranks = ranks
        self.layout = layout
    }

    /// Open MPI's own, flat: what every collective outside the gradient buckets runs.
    public static let library = CollectivePlanner()

    public func schedule(bytes: Int) -> CollectiveSchedule {
        let ring: Bool
        switch algorithm {
        case .ring: ring = true
        case .binomial: ring = false
        case .auto:
            ring = hierarchical ? model.prefersRing(bytes: bytes, ranks: layout.nodes, perNode: 1)
                : model.prefersRing(bytes: bytes, ranks: ranks, perNode: max(1, ranks / max(layout.nodes, 1)))
        }
        return CollectiveSchedule(ring: ring, hierarchical: hierarchical)
    }
}
