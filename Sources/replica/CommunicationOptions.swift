import ArgumentParser
import ReplicaDistributed
import ReplicaTrain

/// How gradients cross between ranks: the options `train` (every task) and `bench step` share.
struct CommunicationOptions: ParsableArguments {
    @Option(help: "All-reduce bucket size in MiB.")
    var bucketMb: Double = 25
    @Flag(help: "All-reduce after backward instead of during it.")
    var noOverlap = false
    @Option(help: "ZeRO stage: 0 plain data parallelism; 1 the optimizer state sharded across ranks (gradients reduce-scattered, each rank updates its 1/ranks, parameters all-gathered).")
    var zero = 0
    @Option(help: "Gradient buckets on the wire: none (float32); fp16 or bf16 (16 bits, each addition in float32; fp16 divides by the rank count first so the sum cannot overflow), half the bytes; powersgd (each matrix as rank-R factors with error feedback, Vogels et al. 2019), a few percent of the bytes.")
    var gradCompression: GradientCompression = .none
    @Option(help: "PowerSGD's approximation rank R: an n×m matrix travels as (n + m)·R floats.")
    var powersgdRank = TrainingOptions().powerSGDRank
    @Option(help: "The first step PowerSGD compresses; before it, gradients travel uncompressed (PyTorch's start_powerSGD_iter).")
    var powersgdStartStep = TrainingOptions().powerSGDStartStep

    @Option(help: "A gradient bucket's all-reduce: ring (Replica's, over point-to-point: 2(p − 1) rounds of 1/p of the bucket), binomial (Open MPI's own: a binomial reduce and broadcast), or auto (the faster by the α–β model for the bucket's size, the ranks and the nodes).")
    var allreduce: AllReduceAlgorithm = .auto
    @Flag(help: "Reduce within each node to its first rank, all-reduce among those leaders across nodes (as --allreduce says), broadcast within each node.")
    var hierarchical = false

    func validate() throws {
        if hierarchical && zero != 0 {
            throw ValidationError("--hierarchical applies to the all-reduce; with --zero 1 the gradients are reduce-scattered instead. Use one or the other.")
        }
        guard bucketMb > 0 else { throw ValidationError("--bucket-mb \(bucketMb) must be positive.") }
        guard (0...1).contains(zero) else { throw ValidationError("--zero \(zero) must be 0 or 1 (ZeRO stage 1 shards the optimizer state).") }
        guard powersgdRank >= 1 else { throw ValidationError("--powersgd-rank \(powersgdRank) must be at least 1.") }
        guard powersgdStartStep >= 0 else { throw ValidationError("--powersgd-start-step \(powersgdStartStep) must not be negative.") }
    }

    func apply(to options: inout TrainingOptions) {
        options.bucketBytes = Int(bucketMb * 1024 * 1024)
        options.overlap = !noOverlap
        options.zeroStage = zero
        options.gradientCompression = gradCompression
        options.powerSGDRank = powersgdRank
        options.powerSGDStartStep = powersgdStartStep
        options.allReduceAlgorithm = allreduce
        options.hierarchical = hierarchical
    }
}
