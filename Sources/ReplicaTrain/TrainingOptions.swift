import Foundation
import ReplicaCore
import ReplicaDistributed
import ReplicaNN

/// Everything `replica train` was asked to do that the loop needs (docs/interface.md: options every task takes).
public struct TrainingOptions: Sendable {
    public var seed: UInt64 = 1337
    public var steps = 2000
    public var batchSize = 12                 // per rank
    public var gradientAccumulation = 1
    public var learningRate: Float = 1e-3
    public var minimumLearningRate: Float?    // cosine floor; default lr/10 (nanoGPT's min_lr)
    public var warmupSteps = 100
    public var schedule = LearningRateSchedule.cosine
    public var weightDecay: Float = 0.1
    public var beta2: Float = 0.99
    /// AdamW (decoupled decay, nanoGPT) or Adam (L2 decay in the gradient, the GAT paper).
    public var optimizer = OptimizerKind.adamW
    public var clip: Float = 1.0              // 0 = off
    public var scaleLearningRate = false
    public var bucketBytes = 25 << 20
    public var overlap = true
    /// ZeRO stage (0 plain data parallelism, 1 optimizer state sharded across ranks). Not part
    /// of the fingerprint: a run may resume with or without it.
    public var zeroStage = 0
    /// How gradient buckets travel (`--grad-compression`). Not part of the fingerprint: a run
    /// may resume with another (PowerSGD's state is then started afresh or dropped, with a notice).
    public var gradientCompression = GradientCompression.none
    /// How a bucket's all-reduce runs (`--allreduce`); with `hierarchical` (`--hierarchical`), the
    /// leaders' across nodes, between a node-local reduce and a node-local broadcast.
    public var allReduceAlgorithm = AllReduceAlgorithm.auto
    public var hierarchical = false
    /// `--timeline FILE` (nil: none) and `--timeline-steps A:B` (nil: every step).
    public var timelinePath: String?
    public var timelineSteps: ClosedRange<Int>?
    /// PowerSGD's approximation rank (`--powersgd-rank`; PyTorch's `matrix_approximation_rank` is 1, Vogels et al. use 4).
    public var powerSGDRank = 4
    /// The first step PowerSGD compresses (`--powersgd-start-step`): PyTorch's `start_powerSGD_iter`
    /// default, 1000. charlm's 2000 default steps compressed from step 100 end 0.098 above
    /// float32's validation loss, from step 1000 0.022 (docs/compression.md).
    public var powerSGDStartStep = 1000
    public var checkpointDirectory: String?
    public var checkpointEvery = 0            // 0 = only at the end
    public var resume = false
    public var resumeFrom: String?
    /// Resume if the checkpoint folder has a complete checkpoint, else start fresh.
    public var autoResume = false
    /// An elastic resume may change the global batch (the learning rate is rescaled linearly).
    public var allowBatchChange = false
    /// A fresh run may replace the checkpoints already in the folder (deleted first).
    public var overwrite = false
    /// Keep only the newest K complete checkpoints (nil: all).
    public var keepCheckpoints: Int?
    public var metricsPath: String?
    public var progress = ProgressMode.auto
    public var json = false
    public var evaluationInterval = 250
    public var evaluationBatches = 40
    /// BatchNorm statistics across ranks (SyncBN) instead of rank-local.
    public var syncBatchNorm = false
    /// Task-specific augmentation, drawn per rank: name -> probability (`--augment substitute=0.1`).
    public var augmentation: [String: Float] = [:]
    /// Injected faults (REPLICA_FAULT).
    public var faults = FaultPlan()
    /// Consecutive non-finite steps after which the job ends.
    public var maximumSkippedSteps = 10

    public init() {}

    /// The settings that must match for a resumed run to continue the same run, as [name: value].
    public func fingerprint(ranks: Int) -> [String: String] {
        [
            "seed": "\(seed)", "steps": "\(steps)", "batch_size": "\(batchSize)", "grad_accum": "\(gradientAccumulation)",
            "lr": "\(learningRate)", "min_lr": "\(minimumLearningRate.map { "\($0)" } ?? "default")",
            "warmup": "\(warmupSteps)", "schedule": schedule.rawValue, "weight_decay": "\(weightDecay)", "beta2": "\(beta2)",
            "clip": "\(clip)", "optimizer": optimizer.rawValue, "scale_lr": "\(scaleLearningRate)", "ranks": "\(ranks)", "sync_bn": "\(syncBatchNorm)",
            "augment": augmentation.keys.sorted().map { "\($0)=\(augmentation[$0]!)" }.joined(separator: ","),
        ]
    }
}

/// `--grad-compression`: the buckets' format on the wire.
public enum GradientCompression: String, CaseIterable, Sendable {
    case none, fp16, bf16, powersgd

    /// The 16-bit format, or nil for float32 (and PowerSGD's float32 factors).
    public var halfPrecision: HalfPrecision? {
        switch self {
        case .none, .powersgd: nil
        case .fp16: .fp16
        case .bf16: .bf16
        }
    }
}

/// Which optimiser the loop uses.
public enum OptimizerKind: String, Sendable { case adamW = "adamw", adam }

/// Parses `--augment name=p,name=p` against the names a task knows.
public func parseAugmentation(_ text: String, allowed: [String]) throws -> [String: Float] {
    var result: [String: Float] = [:]
    for item in text.split(separator: ",", omittingEmptySubsequences: false) {
        let parts = item.split(separator: "=", omittingEmptySubsequences: false)
        guard parts.count == 2, let value = Float(parts[1]), (0...1).contains(value), allowed.contains(String(parts[0])) else {
            throw UserError("--augment: '\(item)' is not NAME=P with NAME one of \(allowed.joined(separator: ", ")) and P in [0, 1]; for example --augment \(allowed[0])=0.1")
        }
        result[String(parts[0])] = value
    }
    return result
}
