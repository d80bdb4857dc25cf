import Foundation
import ReplicaCore
import ReplicaDistributed
import ReplicaNN

/// A model and its data as the data-parallel loop drives them.
public protocol DataParallelTask: AnyObject {
    /// "charlm", "gat", ...: the summary's and the checkpoint's task name.
    var taskName: String { get }
    var arena: ParameterArena { get }
    /// Model and data settings that a resumed run must share, as [name: value].
    var configuration: [String: String] { get }
    /// Extra state.json fields (the vocabulary, the model config).
    var checkpointState: [String: Any] { get }
    /// Extra tensors for model.safetensors (nanoGPT's `lm_head.weight`).
    var extraCheckpointTensors: [(String, Tensor)] { get }
    /// This rank's number of loss terms (tokens, nodes) in micro-step `micro` of step `step`.
    func targetCount(step: Int, micro: Int) -> Int
    /// Forward and backward of this rank's micro-batch, the loss divided by `normalizer` (the global
    /// count). Reports finished gradients to `reducer` during backward. Returns the normalised loss.
    func trainMicroStep(step: Int, micro: Int, normalizer: Float, reducer: GradientReducer?) throws -> Double
    /// Evaluation metrics ("val_loss", ...), the same on every rank.
    func evaluate(communicator: Communicator) throws -> [String: Double]
    /// The unit of throughput ("tokens") and how many this rank processes per micro-step.
    var throughputUnit: String { get }
    var unitsPerMicroStep: Int { get }
}

/// The data-parallel training loop: every rank a replica, gradients summed across ranks.
public final class Trainer {
    public let options: TrainingOptions
    public let communicator: Communicator
    public let task: DataParallelTask
    public let optimizer: Optimizer
    public let policy: LearningRatePolicy
    let reducer: GradientReducer
    let progress: ProgressBar
    let metrics: MetricsLog
    public private(set) var startStep = 0

    public init(task: DataParallelTask, options: TrainingOptions, communicator: Communicator) throws {
        self.task = task
        self.options = options
        self.communicator = communicator
        optimizer = AdamW(beta1: 0.9, beta2: options.beta2, epsilon: 1e-8, weightDecay: options.weightDecay)
        // Linear scaling rule (Goyal et al.): lr × global/per-rank batch, reached by warmup.
        let scale = options.scaleLearningRate ? Float(communicator.size * options.gradientAccumulation) : 1
        policy = LearningRatePolicy(baseRate: options.learningRate * scale, warmupSteps: options.warmupSteps,
                                    totalSteps: options.steps, minimumRate: options.minimumLearningRate.map { $0 * scale },
                                    schedule: options.schedule)
        reducer = GradientReducer(communicator: communicator, arena: task.arena, bucketBytes: options.bucketBytes,
                                  overlap: options.overlap)
        progress = ProgressBar(total: options.steps, isRoot: communicator.isRoot, quiet: options.quiet,
                               toStandardError: options.json)
        if let directory = options.checkpointDirectory, communicator.isRoot {
            try Checkpoint.preflight(URL(fileURLWithPath: directory))
        }
        metrics = try MetricsLog(path: options.metricsPath, isRoot: communicator.isRoot, append: options.resume)
    }

    /// Rank 0's parameters and buffers go to every rank, so all replicas start identical.
    public func synchronizeInitialState() throws {
        try communicator.broadcast(task.arena.allValues, from: 0)
        if task.arena.bufferCount > 0 { try communicator.broadcast(task.arena.allBuffers, from: 0) }
    }

    /// Loads the newest (or the given) checkpoint if resuming; returns its step.
    public func resumeIfAsked() throws {
        guard options.resume || options.resumeFrom != nil else { return }
        let folder: URL
        if let path = options.resumeFrom {
            folder = URL(fileURLWithPath: path)
        } else {
            guard let directory = options.checkpointDirectory else {
                throw UserError("--resume needs --checkpoint-dir DIR (or --resume-from PATH)")
            }
            guard let newest = Checkpoint.newest(in: URL(fileURLWithPath: directory)) else {
                throw UserError("\(directory): no complete checkpoint to resume from")
            }
            folder = newest
        }
        let contents = try Checkpoint.load(folder)
        try Checkpoint.requireTask(contents, task.taskName)
        let saved = contents.state["config_fields"] as? [String: String] ?? [:]
        let current = runFingerprint()
        let differences = current.keys.sorted().filter { saved[$0] != current[$0] }
            .map { "\($0): checkpoint \(saved[$0] ?? "absent"), now \(current[$0]!)" }
        guard differences.isEmpty else {
            throw UserError("\(folder.path): the checkpoint's configuration differs from this run's (\(differences.joined(separator: "; "))); resume with the same options")
        }
        try Checkpoint.restore(contents, into: task.arena)
        do {
            try optimizer.load(state: contents.optimizer, arena: task.arena)
        } catch {
            throw UserError("\(folder.appendingPathComponent("optimizer.safetensors").path): \(error)")
        }
        startStep = contents.step
        progress.message("resumed from \(folder.path) at step \(startStep)")
    }

    func runFingerprint() -> [String: String] {
        task.configuration.merging(options.fingerprint(ranks: communicator.size)) { a, _ in a }
    }

    /// The final summary's numbers.
    public struct Outcome {
        public var steps: Int
        public var trainLoss: Double
        public var evaluation: [String: Double]
        public var unitsPerSecond: Double
        public var seconds: Double
        public var skippedSteps: Int
    }

    /// What one optimizer step did.
    public struct StepResult {
        public var loss: Double
        public var learningRate: Float
        public var gradientNorm: Float
        public var seconds: Double
        public var computeSeconds: Double
        public var communicationSeconds: Double
        public var overlapFraction: Double
        /// False when a rank's loss or the gradient was non-finite and every rank skipped the update.
        public var applied: Bool
        public var nonFiniteRanks: Int
    }

    /// One optimizer step: micro-steps of forward and backward with the bucketed all-reduce
    /// overlapped with the last backward, agreement on finiteness, clipping, AdamW.
    public func trainStep(_ step: Int) throws -> StepResult {
        let stepStarted = DispatchTime.now().uptimeNanoseconds
        let accumulation = options.gradientAccumulation
        let learningRate = policy.rate(atStep: step)
        task.arena.zeroGradients()
        var counts = [Double((0..<accumulation).reduce(0) { $0 + task.targetCount(step: step, micro: $1) })]
        try communicator.allReduce(&counts, .sum)
        let normalizer = Float(max(counts[0], 1))
        var loss = 0.0
        var computeSeconds = 0.0
        for micro in 0..<accumulation {
            let last = micro == accumulation - 1
            if last { reducer.beginBackward() }
            let computeStart = DispatchTime.now().uptimeNanoseconds
            loss += try task.trainMicroStep(step: step, micro: micro, normalizer: normalizer, reducer: last ? reducer : nil)
            computeSeconds += Double(DispatchTime.now().uptimeNanoseconds - computeStart) / 1e9
        }
        try reducer.finish()
        let communication = reducer.takeStatistics()
        // Agree on the loss and on whether any rank went non-finite.
        var agreed = [loss.isFinite ? loss : 0, loss.isFinite ? 0 : 1]
        try communicator.allReduce(&agreed, .sum)
        let norm = gradientNorm(arena: task.arena)
        let applied = agreed[1] == 0 && norm.isFinite
        if applied {
            if options.clip > 0 { _ = clipGradientNorm(arena: task.arena, maxNorm: options.clip) }
            optimizer.step(arena: task.arena, learningRate: learningRate)
        }
        return StepResult(loss: agreed[0], learningRate: learningRate, gradientNorm: norm,
                          seconds: Double(DispatchTime.now().uptimeNanoseconds - stepStarted) / 1e9,
                          computeSeconds: computeSeconds, communicationSeconds: communication.seconds,
                          overlapFraction: communication.overlapFraction, applied: applied, nonFiniteRanks: Int(agreed[1]))
    }

    /// Trains from `startStep` to `options.steps`, evaluating, logging and checkpointing as asked.
    public func run() throws -> Outcome {
        let started = Date()
        var trainingSeconds = 0.0
        var unitsProcessed = 0.0
        var recentLosses: [Double] = []
        var skipped = 0, skippedInARow = 0
        var evaluation: [String: Double] = [:]
        let unitsPerStep = Double(task.unitsPerMicroStep * options.gradientAccumulation * communicator.size)
        for step in startStep..<options.steps {
            let result = try trainStep(step)
            guard result.applied else {
                skipped += 1
                skippedInARow += 1
                progress.message("step \(step + 1): non-finite loss or gradient (\(result.nonFiniteRanks) rank(s) reported a non-finite loss); skipped on every rank")
                if skippedInARow >= options.maximumSkippedSteps {
                    throw DistributedError("\(skippedInARow) steps in a row had a non-finite loss or gradient; stopping (lower --lr or check the data)")
                }
                continue
            }
            skippedInARow = 0
            trainingSeconds += result.seconds
            unitsProcessed += unitsPerStep
            recentLosses.append(result.loss)
            if recentLosses.count > 20 { recentLosses.removeFirst() }
            progress.update(step: step + 1, fields: String(format: "loss %.4f | lr %.2e", result.loss, result.learningRate),
                            unitsPerSecond: unitsPerStep / result.seconds, unit: task.throughputUnit)
            var record: [String: Any] = [
                "step": step + 1, "loss": result.loss, "lr": Double(result.learningRate), "grad_norm": Double(result.gradientNorm),
                "\(task.throughputUnit)_per_s": unitsPerStep / result.seconds, "step_ms": result.seconds * 1e3,
                "compute_ms": result.computeSeconds * 1e3, "comm_ms": result.communicationSeconds * 1e3,
                "overlap_fraction": result.overlapFraction,
            ]
            let isLast = step + 1 == options.steps
            if isLast || (options.evaluationInterval > 0 && (step + 1) % options.evaluationInterval == 0) {
                evaluation = try task.evaluate(communicator: communicator)
                for (key, value) in evaluation { record[key] = value }
                progress.message("step \(step + 1): " + evaluation.sorted { $0.key < $1.key }
                    .map { String(format: "%@ %.4f", $0.key, $0.value) }.joined(separator: ", "))
            }
            metrics.write(record)
            if options.checkpointDirectory != nil && (isLast || (options.checkpointEvery > 0 && (step + 1) % options.checkpointEvery == 0)) {
                try saveCheckpoint(step: step + 1)
            }
        }
        progress.finish()
        if evaluation.isEmpty { evaluation = try task.evaluate(communicator: communicator) }
        return Outcome(steps: options.steps, trainLoss: recentLosses.isEmpty ? .nan : recentLosses.reduce(0, +) / Double(recentLosses.count),
                       evaluation: evaluation, unitsPerSecond: trainingSeconds > 0 ? unitsProcessed / trainingSeconds : 0,
                       seconds: Date().timeIntervalSince(started), skippedSteps: skipped)
    }

    /// Rank 0 writes the checkpoint of `step`; every rank waits for it so none runs ahead.
    public func saveCheckpoint(step: Int) throws {
        if communicator.isRoot, let directory = options.checkpointDirectory {
            var state = task.checkpointState
            state["task"] = task.taskName
            state["ranks"] = communicator.size
            state["seed"] = Int(options.seed)
            state["config_fields"] = runFingerprint()
            state["config_hash"] = configurationHash(runFingerprint())
            state["epoch"] = 0
            try Checkpoint.save(in: URL(fileURLWithPath: directory), step: step, arena: task.arena,
                                extraTensors: task.extraCheckpointTensors, optimizer: optimizer, state: state)
        }
        try communicator.barrier()
    }
}

/// A stable 64-bit FNV-1a hash of the sorted fields, as hex.
public func configurationHash(_ fields: [String: String]) -> String {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for key in fields.keys.sorted() {
        for byte in "\(key)=\(fields[key]!);".utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
    }
    return String(hash, radix: 16)
}
