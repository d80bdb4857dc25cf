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
    func trainMicroStep(step: Int, micro: Int, normalizer: Float, reducer: GradientSink?) throws -> Double
    /// Evaluation metrics ("val_loss", ...), the same on every rank.
    func evaluate(communicator: Communicator) throws -> [String: Double]
    /// Optimizer steps in one pass over the training examples (for the epoch in checkpoints).
    var stepsPerEpoch: Int { get }
    /// The unit of throughput ("tokens") and how many this rank processes per micro-step.
    var throughputUnit: String { get }
    var unitsPerMicroStep: Int { get }
    /// After an evaluation: whether to stop early (the same decision on every rank, as the
    /// evaluation is). Tasks without early stopping keep the default, false.
    func shouldStop(after evaluation: [String: Double], step: Int) -> Bool
    /// The model's BatchNorm layers (none without `--norm batch`).
    var batchNorms: [BatchNorm] { get }
    /// Examples (or tokens) of one optimizer step over all ranks and micro-steps: per-rank batch ×
    /// ranks × `--grad-accum`; nil when every step takes the whole training set (full-graph GAT).
    /// Any split of the same global batch draws the same data, which is what lets a run resume on
    /// another rank count (`Trainer.resumeIfAsked`).
    var globalBatch: Int? { get }
}

extension DataParallelTask {
    public func shouldStop(after evaluation: [String: Double], step: Int) -> Bool { false }

    /// With `--sync-bn`, every BatchNorm sums its statistics over all ranks (forward and backward).
    public func synchronizeBatchNorm(over communicator: Communicator) {
        for norm in batchNorms {
            norm.statisticsReducer = { values in
                do {
                    try communicator.allReduce(&values, .sum)
                } catch {
                    communicator.abort("SyncBN all-reduce failed: \(error)", exitCode: 2)
                }
            }
        }
    }
}

/// The data-parallel training loop: every rank a replica, gradients summed across ranks.
public final class Trainer {
    public let options: TrainingOptions
    public let communicator: Communicator
    public let task: DataParallelTask
    public let optimizer: Optimizer
    /// The learning rate by step; an elastic resume with `--allow-batch-change` rescales it.
    public private(set) var policy: LearningRatePolicy
    let reducer: GradientReducer
    /// ZeRO-1's shards (`--zero 1` on more than one rank), else nil.
    public let sharding: OptimizerSharding?
    /// PowerSGD's state (`--grad-compression powersgd` on more than one rank), else nil.
    public let powerSGD: PowerSGD?
    /// `--timeline`'s recorder, else nil.
    public let timeline: Timeline?
    let progress: ProgressBar
    let metrics: MetricsLog
    /// Rank 0's lock on the checkpoint folder, held for the life of the trainer.
    let checkpointFolder: CheckpointFolder?
    public private(set) var startStep = 0
    /// This rank's pending stop request: the signal's number, 0 for none (`StopRequest.signal`;
    /// tests put a request on one rank). Asked once a step, inside the step's agreement.
    public var stopRequest: () -> Int32 = { StopRequest.signal }

    public init(task: DataParallelTask, options: TrainingOptions, communicator: Communicator) throws {
        self.task = task
        self.options = options
        self.communicator = communicator
        switch options.optimizer {
        case .adamW: optimizer = AdamW(beta1: 0.9, beta2: options.beta2, epsilon: 1e-8, weightDecay: options.weightDecay)
        case .adam: optimizer = Adam(beta1: 0.9, beta2: options.beta2, epsilon: 1e-8, weightDecay: options.weightDecay)
        }
        // Linear scaling rule (Goyal et al.): lr × global/per-rank batch, reached by warmup.
        policy = Self.policy(options, scale: options.scaleLearningRate ? Float(communicator.size * options.gradientAccumulation) : 1)
        reducer = GradientReducer(communicator: communicator, arena: task.arena, bucketBytes: options.bucketBytes,
                                  overlap: options.overlap)
        if options.zeroStage >= 1 && communicator.size > 1 {
            let sharding = OptimizerSharding(communicator: communicator, arena: task.arena, buckets: reducer.buckets)
            reducer.shardCounts = sharding.pieceCounts
            reducer.inFlightLimit = OptimizerSharding.reductionsInFlight
            self.sharding = sharding
        } else {
            sharding = nil
        }
        reducer.compression = options.gradientCompression.halfPrecision
        reducer.planner = CollectivePlanner(algorithm: options.allReduceAlgorithm, hierarchical: options.hierarchical,
                                            ranks: communicator.size, layout: communicator.nodeLayout)
        if options.gradientCompression == .powersgd && communicator.size > 1 {
            // Under ZeRO-1 too every bucket is all-reduced: each rank uses its piece of the sum.
            powerSGD = PowerSGD(communicator: communicator, arena: task.arena, buckets: reducer.buckets, rank: options.powerSGDRank,
                                startStep: options.powerSGDStartStep, seed: options.seed)
            reducer.powerSGD = powerSGD
        } else {
            powerSGD = nil
        }
        timeline = options.timelinePath.map { Timeline(path: $0, steps: options.timelineSteps) }
        reducer.timeline = timeline
        if let timeline {
            MPIEnvironment.observeWatchdog { [weak timeline] fatal, report in timeline?.recordWatchdog(fatal: fatal, report: report) }
        }
        progress = ProgressBar(total: options.steps, isRoot: communicator.isRoot, mode: options.progress,
                               toStandardError: options.json)
        if let powerSGD {
            let values = powerSGD.valuesPerStep, whole = task.arena.count
            progress.notice(String(format: "PowerSGD rank %d from step %d: %d matrices compressed; %d of %d values travel a step (%.1f%%), %.1f MFLOP extra",
                                   powerSGD.rank, powerSGD.startStep, powerSGD.compressedMatrixCount, values, whole,
                                   100 * Double(values) / Double(max(whole, 1)), Double(powerSGD.extraFlops) / 1e6))
        }
        if let directory = options.checkpointDirectory, communicator.isRoot {
            checkpointFolder = try CheckpointFolder(URL(fileURLWithPath: directory))
            try Checkpoint.preflight(URL(fileURLWithPath: directory),
                                     bytesNeeded: Checkpoint.estimatedBytes(arena: task.arena, errorBuffers: powerSGD == nil ? 0 : communicator.size))
        } else {
            checkpointFolder = nil
        }
        metrics = try MetricsLog(path: options.metricsPath, isRoot: communicator.isRoot, append: options.resume || options.autoResume)
    }

    /// How the largest gradient bucket is all-reduced ("ring", "binomial", "hierarchical ring", ...;
    /// under ZeRO-1 its reduce-scatter), or nil on one rank: the summaries' `allreduce`.
    public var allReduceDescription: String? {
        guard communicator.size > 1, let largest = reducer.buckets.indices.max(by: { reducer.buckets[$0].count < reducer.buckets[$1].count }) else { return nil }
        return reducer.schedule(ofBucket: largest).description
    }

    /// A warning from this rank, whichever it is, on stderr with its number.
    public func warn(_ message: String) {
        FileHandle.standardError.write(Data("\(communicator.messagePrefix)warning: \(message)\n".utf8))
    }

    /// Rank 0's parameters and buffers go to every rank, so all replicas start identical; then
    /// every rank checks that all agree on the configuration and the parameters.
    public func synchronizeInitialState() throws {
        try timeline?.alignClocks(communicator)
        try timed("broadcast of rank 0's parameters", .communication) {
            try communicator.broadcast(task.arena.allValues, from: 0)
            if task.arena.bufferCount > 0 { try communicator.broadcast(task.arena.allBuffers, from: 0) }
        }
        try verifyRanksAgree(context: "at start-up")
    }

    /// All-gathers a hash of every configuration field and of the parameters and buffers; if any
    /// rank differs from rank 0, every rank ends with an error naming the ranks and the fields.
    public func verifyRanksAgree(context: String) throws {
        let checkStart = Timeline.now()
        defer { timeline?.record("consistency check", .communication, from: checkStart, to: Timeline.now()) }
        let fields = runFingerprint()
        let keys = fields.keys.sorted()
        var hashes = [fnv1a(keys.joined(separator: ","))] + keys.map { fnv1a(fields[$0]!) }
        hashes.append(parameterChecksum(task.arena))
        let record = hashes.flatMap { value in (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
        let gathered = try communicator.allGather(record)
        var problems: [String] = []
        func words(_ bytes: [UInt8]) -> [UInt64] {
            stride(from: 0, to: bytes.count, by: 8).map { offset in
                (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << (8 * UInt64($1)) }
            }
        }
        let reference = words(gathered[0])
        for (rank, other) in gathered.enumerated() where other != gathered[0] {
            let words = words(other)
            if words[0] != reference[0] {
                problems.append("rank \(rank) has other configuration fields than rank 0")
                continue
            }
            let differing = keys.enumerated().filter { words[$0.offset + 1] != reference[$0.offset + 1] }.map(\.element)
            if !differing.isEmpty { problems.append("rank \(rank) differs from rank 0 in \(differing.joined(separator: ", "))") }
            if words.last != reference.last { problems.append("rank \(rank)'s parameters differ from rank 0's") }
        }
        if !problems.isEmpty {
            throw DistributedError("ranks disagree \(context): \(problems.joined(separator: "; ")) (mine: \(keys.map { "\($0)=\(fields[$0]!)" }.joined(separator: " ")))")
        }
    }

    /// BatchNorm running statistics differ per rank (rank-local statistics); evaluation and
    /// checkpoints use their average over ranks, taken here, so every rank holds the same.
    public func averageBuffers() throws {
        guard task.arena.bufferCount > 0, communicator.size > 1 else { return }
        try communicator.allReduce(task.arena.allBuffers, .mean)
    }

    /// Loads the newest (or the given) checkpoint if resuming (`--auto-resume`: if there is one).
    /// A fresh run on a folder that holds checkpoints is refused unless `--overwrite` (rank 0
    /// deletes them then); every rank sees the same shared folder, so all decide alike.
    public func resumeIfAsked() throws {
        let directory = options.checkpointDirectory.map { URL(fileURLWithPath: $0) }
        let automatic = options.autoResume && directory.flatMap { Checkpoint.newest(in: $0) } != nil
        guard options.resume || options.resumeFrom != nil || automatic else {
            if let directory, let refusal = CheckpointFolder.freshRunError(in: directory) {
                if !options.overwrite { throw refusal }
                // Every rank has looked before rank 0 deletes.
                try communicator.barrier()
                if let removed = try checkpointFolder?.deleteCheckpoints() {
                    progress.notice("--overwrite: deleted \(removed) checkpoint(s) from \(directory.path)")
                }
            }
            return
        }
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
        let contents = try Checkpoint.load(folder, readingOptimizer: sharding == nil)
        try Checkpoint.requireTask(contents, task.taskName)
        let saved = contents.state["config_fields"] as? [String: String] ?? [:]
        let current = runFingerprint()
        // --steps may change (extend a finished run or shorten one), and so may the batch's split.
        let free = Self.splitFields.union(["steps", "global_batch"])
        let differences = current.keys.sorted().filter { !free.contains($0) && saved[$0] != current[$0] }
            .map { "\($0): checkpoint \(saved[$0] ?? "absent"), now \(current[$0]!)" }
        guard differences.isEmpty else {
            throw UserError("\(folder.path): the checkpoint's configuration differs from this run's (\(differences.joined(separator: "; "))); resume with the same options")
        }
        try adoptBatchSplit(of: saved, folder: folder)
        try Checkpoint.restore(contents, into: task.arena)
        let optimizerFile = folder.appendingPathComponent("optimizer.safetensors")
        if let sharding {
            try sharding.loadState(from: optimizerFile, into: optimizer)
        } else {
            do {
                try optimizer.load(state: contents.optimizer, arena: task.arena)
            } catch {
                throw UserError("\(optimizerFile.path): \(error)")
            }
        }
        try restoreCompressionState(from: folder)
        startStep = contents.step
        guard startStep <= options.steps else {
            throw UserError("\(folder.path): the checkpoint is of step \(startStep), beyond --steps \(options.steps); give --steps \(startStep) or more")
        }
        progress.notice("resumed from \(folder.path) at step \(startStep)")
        if let savedSteps = saved["steps"], savedSteps != current["steps"] {
            progress.notice("--steps \(options.steps) (the checkpoint's run had \(savedSteps)): the learning-rate schedule is recomputed for \(options.steps) steps, from step \(startStep) on")
        }
    }

    /// PowerSGD's state from the checkpoint's `compression.safetensors`: taken when this run
    /// compresses with PowerSGD (drawn afresh, with a notice, when the checkpoint has none), and
    /// dropped with a notice when it does not.
    func restoreCompressionState(from folder: URL) throws {
        let url = folder.appendingPathComponent(Checkpoint.compressionFile)
        let present = FileManager.default.fileExists(atPath: url.path)
        if let powerSGD {
            guard present else {
                progress.notice("\(folder.path) holds no PowerSGD state: the error feedback starts from zero")
                return
            }
            if let note = try powerSGD.restore(from: url) { progress.notice("PowerSGD state: \(note)") }
        } else if present {
            progress.notice("--grad-compression \(options.gradientCompression.rawValue)\(communicator.size == 1 ? " on 1 rank" : ""): the checkpoint's PowerSGD error feedback is dropped")
        }
    }

    /// The learning-rate policy of `options` with the base and minimum rates multiplied by `scale`.
    static func policy(_ options: TrainingOptions, scale: Float) -> LearningRatePolicy {
        LearningRatePolicy(baseRate: options.learningRate * scale, warmupSteps: options.warmupSteps, totalSteps: options.steps,
                           minimumRate: options.minimumLearningRate.map { $0 * scale }, schedule: options.schedule)
    }

    /// The fingerprint fields that say how the global batch is split; an elastic resume may change them.
    static let splitFields: Set<String> = ["ranks", "batch_size", "grad_accum"]

    /// The fields a resumed run must share with its checkpoint, the global batch among them.
    func runFingerprint() -> [String: String] {
        var fields = task.configuration.merging(options.fingerprint(ranks: communicator.size)) { a, _ in a }
        fields["global_batch"] = task.globalBatch.map(String.init) ?? "all"
        return fields
    }

    /// "2 rank(s) × batch 12 × grad-accum 1" from a fingerprint.
    static func split(_ fields: [String: String]) -> String {
        "\(fields["ranks"] ?? "?") rank(s) × batch \(fields["batch_size"] ?? "?") × grad-accum \(fields["grad_accum"] ?? "?")"
    }

    /// Checks the split of the global batch against the checkpoint's and sets the learning rate
    /// for an elastic resume. The same global batch on another split continues the run: the
    /// checkpoint's learning rate is kept (with `--scale-lr`, its ranks × `--grad-accum` factor).
    /// Another global batch is refused unless `--allow-batch-change`, which multiplies the
    /// learning rate by new/old global batch (the linear scaling rule, Goyal et al. 2017).
    func adoptBatchSplit(of saved: [String: String], folder: URL) throws {
        let current = runFingerprint()
        guard Self.splitFields.contains(where: { saved[$0] != current[$0] }) else { return }
        let savedBatch = saved["global_batch"]
            ?? (task.globalBatch == nil ? "all" : "\(["ranks", "batch_size", "grad_accum"].reduce(1) { $0 * (Int(saved[$1] ?? "") ?? 0) })")
        let nowBatch = current["global_batch"]!
        var scale: Float = 1
        if options.scaleLearningRate {
            scale = Float((Int(saved["ranks"] ?? "") ?? 1) * (Int(saved["grad_accum"] ?? "") ?? 1))
        }
        if savedBatch == nowBatch {
            progress.notice("elastic resume: the checkpoint ran \(Self.split(saved)), this run \(Self.split(current)); the global batch of \(nowBatch) and the learning rate are kept")
        } else {
            guard options.allowBatchChange, let old = Double(savedBatch), let new = Double(nowBatch), old > 0 else {
                throw UserError("\(folder.path): the checkpoint's global batch is \(savedBatch) (\(Self.split(saved))), this run's \(nowBatch) (\(Self.split(current))); keep per-rank batch × ranks × --grad-accum at \(savedBatch), or give --allow-batch-change to go on with \(nowBatch) and a learning rate scaled by \(nowBatch)/\(savedBatch)")
            }
            scale *= Float(new / old)
            progress.notice("--allow-batch-change: the global batch goes from \(savedBatch) (\(Self.split(saved))) to \(nowBatch) (\(Self.split(current))); the learning rate is multiplied by \(String(format: "%.4g", new / old))")
        }
        policy = Self.policy(options, scale: scale)
    }

    /// The final summary's numbers.
    public struct Outcome {
        public var steps: Int
        public var trainLoss: Double
        public var evaluation: [String: Double]
        public var unitsPerSecond: Double
        public var seconds: Double
        public var skippedSteps: Int
        /// Seconds per applied step, averaged (a GAT epoch).
        public var secondsPerStep: Double
        /// Every rank's peak resident set in MiB, by rank (`peak_rss_mb` is the largest).
        public var peakResidentMegabytes: [Double]
        /// Stopped on request after `steps` (a checkpoint of it written if there is a checkpoint
        /// folder): the signal's number, the same on every rank; 0 when the run went to its end.
        public var stopSignal: Int32 = 0
    }

    /// Every rank's peak resident set so far, in MiB, by rank (a collective: every rank calls it).
    public func peakResidentMegabytes() throws -> [Double] {
        var values = [Double](repeating: 0, count: communicator.size)
        values[communicator.rank] = ResourceUsage.peakResidentMegabytes
        try communicator.allReduce(&values, .sum)
        return values
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
        /// A rank was asked to stop (a signal) during the step: every rank stops after it. The
        /// signal's number (0: none).
        public var stopSignal: Int32
    }

    /// One optimizer step: micro-steps of forward and backward with the bucketed all-reduce
    /// overlapped with the last backward, agreement on finiteness, clipping, AdamW.
    public func trainStep(_ step: Int) throws -> StepResult {
        options.faults.beforeStep(step + 1, rank: communicator.rank)
        timeline?.step = step + 1
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
            let computeStart = DispatchTime.now().uptimeNanoseconds
            if last { reducer.beginBackward(step: step) }
            loss += try task.trainMicroStep(step: step, micro: micro, normalizer: normalizer, reducer: last ? reducer : nil)
            let computeEnd = DispatchTime.now().uptimeNanoseconds
            computeSeconds += Double(computeEnd - computeStart) / 1e9
            timeline?.record(accumulation > 1 ? "micro-step \(micro + 1): forward and backward" : "forward and backward", .compute,
                             from: Double(computeStart) / 1e9, to: Double(computeEnd) / 1e9)
        }
        try reducer.finish()
        let communication = reducer.takeStatistics()
        if options.faults.poisonsLoss(step: step + 1, rank: communicator.rank) { loss = .nan }
        if !loss.isFinite { warn("non-finite loss \(loss) at step \(step + 1); every rank skips this step") }
        // Agree on the loss, on whether any rank went non-finite, and on whether any was asked to
        // stop (the request rides on this all-reduce, which runs every step anyway).
        let request = stopRequest()
        var agreed = [loss.isFinite ? loss : 0, loss.isFinite ? 0 : 1, request != 0 ? 1 : 0, Double(request)]
        let agreeStart = Timeline.now()
        try communicator.allReduce(&agreed, .sum)
        timeline?.record("agree: loss, finiteness, stop", .communication, from: agreeStart, to: Timeline.now())
        let norm = try sharding?.gradientNorm() ?? gradientNorm(arena: task.arena)
        let applied = agreed[1] == 0 && norm.isFinite
        // A skipped step's NaN would stay in PowerSGD's error and warm start for good.
        if !applied, let powerSGD, step >= powerSGD.startStep { powerSGD.reset() }
        let optimizerStart = Timeline.now()
        defer { if applied { timeline?.record(sharding == nil ? "optimizer" : "optimizer (shard) and all-gather", .compute, from: optimizerStart, to: Timeline.now()) } }
        if applied {
            if let sharding {
                if options.clip > 0 { sharding.clip(norm: norm, maxNorm: options.clip) }
                try sharding.step(optimizer, learningRate: learningRate)
            } else {
                if options.clip > 0 { clipGradients(arena: task.arena, ranges: [0..<task.arena.count], norm: norm, maxNorm: options.clip) }
                optimizer.step(arena: task.arena, learningRate: learningRate)
            }
        }
        defer { timeline?.appendOwn() }
        return StepResult(loss: agreed[0], learningRate: learningRate, gradientNorm: norm,
                          seconds: Double(DispatchTime.now().uptimeNanoseconds - stepStarted) / 1e9,
                          computeSeconds: computeSeconds, communicationSeconds: communication.seconds,
                          overlapFraction: communication.overlapFraction, applied: applied, nonFiniteRanks: Int(agreed[1]),
                          stopSignal: Self.agreedSignal(ranks: agreed[2], sum: agreed[3]))
    }

    /// The signal of the ranks that asked to stop, from their count and the sum of their signals'
    /// numbers: theirs if they all had the same one, else SIGTERM (0: nobody asked).
    public static func agreedSignal(ranks: Double, sum: Double) -> Int32 {
        guard ranks > 0 else { return 0 }
        return StopRequest.signals.first { Double($0) * ranks == sum } ?? SIGTERM
    }

    /// Whether any rank was asked to stop before the first step (during start-up or loading):
    /// the agreed signal, 0 for none. One all-reduce, before the loop.
    func stopRequestedBeforeTraining() throws -> Int32 {
        let request = stopRequest()
        var agreed = [request != 0 ? 1.0 : 0, Double(request)]
        try communicator.allReduce(&agreed, .sum)
        return Self.agreedSignal(ranks: agreed[0], sum: agreed[1])
    }

    /// Trains from `startStep` to `options.steps` (`runSteps`); with `--timeline`, the ranks' events
    /// go to its file at the end (until then, rank 0's own, step by step).
    public func run() throws -> Outcome {
        try timeline?.start(rank: communicator.rank)
        let outcome = try runSteps()
        try timeline?.write(communicator)
        return outcome
    }

    /// `body`, recorded on the timeline as `name` when there is one.
    func timed<T>(_ name: String, _ track: Timeline.Track, _ body: () throws -> T) rethrows -> T {
        guard let timeline else { return try body() }
        return try timeline.span(name, track, body)
    }

    /// Trains from `startStep` to `options.steps`, evaluating, logging and checkpointing as asked.
    ///
    /// A stop request (a signal on any rank) ends the loop after the step in progress on every
    /// rank alike: no evaluation, rank 0 writes the checkpoint of that step (with a checkpoint
    /// folder), and the outcome's `stopSignal` says so. One that came before the first step ends
    /// the run before it, with nothing to write (the folder's newest checkpoint is where it was).
    func runSteps() throws -> Outcome {
        let started = Date()
        var trainingSeconds = 0.0
        var unitsProcessed = 0.0
        var recentLosses: [Double] = []
        var skipped = 0, skippedInARow = 0
        var evaluation: [String: Double] = [:]
        var appliedSteps = 0
        var lastStep = startStep
        let unitsPerStep = Double(task.unitsPerMicroStep * options.gradientAccumulation * communicator.size)
        var stopSignal = try stopRequestedBeforeTraining()
        for step in startStep..<options.steps where stopSignal == 0 {
            let result = try trainStep(step)
            stopSignal = result.stopSignal
            guard result.applied else {
                skipped += 1
                skippedInARow += 1
                progress.message("step \(step + 1): non-finite loss or gradient (\(result.nonFiniteRanks) rank(s) reported a non-finite loss); skipped on every rank")
                if stopSignal != 0 {
                    lastStep = step + 1
                    if options.checkpointDirectory != nil { try saveCheckpoint(step: step + 1) }
                    break
                }
                if skippedInARow >= options.maximumSkippedSteps {
                    throw DistributedError("\(skippedInARow) steps in a row had a non-finite loss or gradient; stopping (lower --lr or check the data)")
                }
                continue
            }
            skippedInARow = 0
            appliedSteps += 1
            lastStep = step + 1
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
            var isLast = step + 1 == options.steps
            if stopSignal == 0 && (isLast || (options.evaluationInterval > 0 && (step + 1) % options.evaluationInterval == 0)) {
                try averageBuffers()
                evaluation = try timed("evaluation", .compute) { try task.evaluate(communicator: communicator) }
                for (key, value) in evaluation { record[key] = value }
                if options.evaluationInterval >= 10 || isLast {
                    progress.message("step \(step + 1): " + evaluation.sorted { $0.key < $1.key }
                        .map { String(format: "%@ %.4f", $0.key, $0.value) }.joined(separator: ", "))
                }
                if task.shouldStop(after: evaluation, step: step + 1) {
                    progress.message("step \(step + 1): early stop")
                    isLast = true
                }
            }
            if options.metricsPath != nil {
                let peaks = try peakResidentMegabytes()
                record["peak_rss_mb"] = peaks.max() ?? 0
                record["rank_peak_rss_mb"] = peaks
            }
            metrics.write(record)
            if stopSignal != 0 { isLast = true }
            if options.checkpointDirectory != nil && (isLast || (options.checkpointEvery > 0 && (step + 1) % options.checkpointEvery == 0)) {
                try timed("checkpoint", .compute) { try saveCheckpoint(step: step + 1) }
            }
            if isLast { break }
        }
        progress.finish()
        if evaluation.isEmpty && stopSignal == 0 {
            try averageBuffers()
            evaluation = try task.evaluate(communicator: communicator)
        }
        return Outcome(steps: lastStep, trainLoss: recentLosses.isEmpty ? .nan : recentLosses.reduce(0, +) / Double(recentLosses.count),
                       evaluation: evaluation, unitsPerSecond: trainingSeconds > 0 ? unitsProcessed / trainingSeconds : 0,
                       seconds: Date().timeIntervalSince(started), skippedSteps: skipped,
                       secondsPerStep: appliedSteps > 0 ? trainingSeconds / Double(appliedSteps) : 0,
                       peakResidentMegabytes: try peakResidentMegabytes(), stopSignal: stopSignal)
    }

    /// Rank 0 writes the checkpoint of `step`; every rank waits for it so none runs ahead.
    /// ZeRO-1's optimizer state and PowerSGD's error buffers are gathered as they are written:
    /// every rank runs their collectives in file order, rank 0 then also after a failed write.
    public func saveCheckpoint(step: Int) throws {
        try averageBuffers()
        try verifyRanksAgree(context: "at the checkpoint of step \(step)")
        guard let directory = options.checkpointDirectory else { return }
        let optimizerStream = sharding?.checkpointStream(optimizer) ?? .whole(optimizer)
        let compressionStream = powerSGD?.checkpointStream()
        if communicator.isRoot {
            do {
                try writeCheckpoint(step: step, in: directory, optimizer: optimizerStream, compression: compressionStream)
            } catch {
                try optimizerStream.finish()
                try compressionStream?.finish()
                throw error
            }
        } else {
            try optimizerStream.finish()
            try compressionStream?.finish()
        }
        if let keep = options.keepCheckpoints { try checkpointFolder?.prune(keeping: keep) }
        try communicator.barrier()
    }

    /// Rank 0's part of a checkpoint: the files, with `optimizer` streamed into optimizer.safetensors.
    func writeCheckpoint(step: Int, in directory: String, optimizer: TensorStream, compression: TensorStream?) throws {
        var state = task.checkpointState
        state["task"] = task.taskName
        state["ranks"] = communicator.size
        state["seed"] = Int(options.seed)
        state["config_fields"] = runFingerprint()
        state["config_hash"] = configurationHash(runFingerprint())
        state["epoch"] = step / max(task.stepsPerEpoch, 1)
        state["grad_compression"] = options.gradientCompression.rawValue
        let crash = options.faults.crashesDuringCheckpoint(step: step)
        try Checkpoint.save(in: URL(fileURLWithPath: directory), step: step, arena: task.arena,
                            extraTensors: task.extraCheckpointTensors, optimizer: optimizer, compression: compression, state: state,
                            beforeRename: crash ? {
                                FileHandle.standardError.write(Data("[rank 0] REPLICA_FAULT: dying midway through the checkpoint of step \(step)\n".utf8))
                                kill(getpid(), SIGKILL)
                            } : nil)
    }
}

/// A stable 64-bit FNV-1a hash of the sorted fields, as hex.
public func configurationHash(_ fields: [String: String]) -> String {
    String(fnv1a(fields.keys.sorted().map { "\($0)=\(fields[$0]!);" }.joined()), radix: 16)
}

/// A 64-bit hash of every parameter and buffer bit, to check that replicas are identical.
public func parameterChecksum(_ arena: ParameterArena) -> UInt64 {
    var hash = FNV1a.offsetBasis
    for storage in [arena.values, arena.buffers] {
        let words = UnsafeRawPointer(storage.pointer).assumingMemoryBound(to: UInt32.self)
        for i in 0..<storage.count { hash = FNV1a.combine(hash, UInt64(words[i])) }
    }
    return hash
}
