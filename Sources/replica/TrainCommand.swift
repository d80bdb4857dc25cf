import ArgumentParser
import Foundation
import ReplicaCore
import ReplicaData
import ReplicaDistributed
import ReplicaModels
import ReplicaNN
import ReplicaTrain

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a model, alone or data-parallel under mpirun.",
        subcommands: [TrainCharLM.self, TrainGAT.self, TrainGraphMAE.self, TrainTranslate.self, TrainMLM.self, TrainCBOW.self]
    )
}

/// The options every `train` task takes (docs/interface.md).
struct CommonTrainOptions: ParsableArguments {
    @Option(help: "Data set; without it the embedded default.")
    var data: String?
    @Option(help: "Everything random derives from (seed, rank, epoch, step).")
    var seed: UInt64 = 1337
    @Option(help: "Optimizer steps.")
    var steps: Int?
    @Option(help: "Passes over the training data (instead of --steps).")
    var epochs: Int?
    @Option(help: "Examples per rank per micro-step; the global batch is this × ranks × --grad-accum.")
    var batchSize: Int?
    @Option(help: "Peak learning rate.")
    var lr: Float?
    @Option(help: "Linear warmup steps.")
    var warmup: Int?
    @Option(help: "Learning-rate schedule (default: the task's).")
    var schedule: LearningRateSchedule?
    @Option(help: "Floor of the cosine schedule (default: the task's; charlm lr/10, as nanoGPT's min_lr).")
    var minLr: Float?
    @Option(help: "Adam's β2, the second-moment decay (default: the task's; charlm 0.99).")
    var beta2: Float?
    @Option(help: "AdamW's decoupled weight decay (not on biases and norms).")
    var weightDecay: Float?
    @Option(help: "Clip gradients to this global L2 norm (0: off; default 1 for Transformers, off for GAT).")
    var clip: Float?
    @Flag(help: "Linear scaling rule: lr × (global batch / per-rank batch), reached by warmup.")
    var scaleLr = false
    @Option(help: "Micro-steps per optimizer step; gradients are all-reduced only on the last.")
    var gradAccum = 1
    @Flag(help: "BatchNorm statistics across ranks instead of rank-local.")
    var syncBn = false
    @Option(help: "Augmentation drawn per rank; text: substitute=P (replace input characters at random).")
    var augment: String?
    @OptionGroup var communication: CommunicationOptions
    @OptionGroup var timeline: TimelineOptions
    @Option(help: "Folder for checkpoints (step-NNNNNNNN/ and latest).")
    var checkpointDir: String?
    @Option(help: "Write a checkpoint every N steps (and at the end).")
    var checkpointEvery = 0
    @Flag(help: "Continue from the newest complete checkpoint in --checkpoint-dir.")
    var resume = false
    @Option(help: "Continue from this checkpoint folder.")
    var resumeFrom: String?
    @Flag(help: "Continue from the newest complete checkpoint in --checkpoint-dir if it has one, else start fresh: one command line for the first start and every requeue.")
    var autoResume = false
    @Flag(help: "On resume, accept a global batch (per-rank batch × ranks × --grad-accum) other than the checkpoint's: the learning rate is multiplied by new/old global batch. Without it a resume on another rank count must keep the global batch.")
    var allowBatchChange = false
    @Flag(help: "Allow a fresh run (without --resume) on a --checkpoint-dir that already holds checkpoints: they are deleted first.")
    var overwrite = false
    @Option(help: "Keep only the newest K complete checkpoints in --checkpoint-dir (default: all).")
    var keepCheckpoints: Int?
    @Option(help: "Append one JSON object per step to this file.")
    var metrics: String?
    @Option(help: "Progress output: a bar redrawn in place, plain lines (step 1, every 50 steps, the last), or none. auto: the bar when rank 0's output reaches a terminal (under mpirun: when mpirun's does), lines in files and pipes.")
    var progress: ProgressMode = .auto
    @Flag(help: "No progress output (the same as --progress none).")
    var quiet = false
    @OptionGroup var runtime: RuntimeOptions

    /// Graph tasks train on each rank's whole share of the nodes every step: `--batch-size` would mean nothing.
    static func refuseBatchSize(_ batchSize: Int?, task: String) throws {
        if batchSize != nil {
            throw ValidationError("--batch-size: \(task) trains on each rank's whole share of the nodes every step (full batch), so there is no batch size to set; leave it out (--grad-accum splits the share into micro-steps).")
        }
    }

    func validate() throws {
        if let steps, steps < 1 { throw ValidationError("--steps \(steps) must be at least 1.") }
        if let batchSize, batchSize < 1 { throw ValidationError("--batch-size \(batchSize) must be at least 1.") }
        if let lr, !(lr > 0) { throw ValidationError("--lr \(lr) must be positive.") }
        if let warmup, warmup < 0 { throw ValidationError("--warmup \(warmup) must not be negative.") }
        guard gradAccum >= 1 else { throw ValidationError("--grad-accum \(gradAccum) must be at least 1.") }
        if let clip, clip < 0 { throw ValidationError("--clip \(clip) must not be negative.") }
        if let minLr, !(minLr >= 0) { throw ValidationError("--min-lr \(minLr) must not be negative.") }
        if let minLr, let lr, minLr > lr { throw ValidationError("--min-lr \(minLr) is above --lr \(lr).") }
        if let beta2, !(0..<1).contains(beta2) { throw ValidationError("--beta2 \(beta2) must be in [0, 1).") }
        if let epochs, epochs < 1 { throw ValidationError("--epochs \(epochs) must be at least 1.") }
        if epochs != nil && steps != nil { throw ValidationError("give --steps or --epochs, not both.") }
        guard checkpointEvery >= 0 else { throw ValidationError("--checkpoint-every must not be negative.") }
        if checkpointEvery > 0 && checkpointDir == nil { throw ValidationError("--checkpoint-every needs --checkpoint-dir DIR.") }
        if resume && checkpointDir == nil { throw ValidationError("--resume needs --checkpoint-dir DIR (or use --resume-from PATH).") }
        if autoResume && checkpointDir == nil { throw ValidationError("--auto-resume needs --checkpoint-dir DIR.") }
        if autoResume && resumeFrom != nil { throw ValidationError("give --auto-resume or --resume-from PATH, not both.") }
        if let checkpointDir, let problem = outputFolderProblem(checkpointDir) {
            throw ValidationError("--checkpoint-dir \(checkpointDir): \(problem); choose another folder.")
        }
        if overwrite && (resume || autoResume || resumeFrom != nil) {
            throw ValidationError("--overwrite starts fresh; it cannot be combined with --resume, --auto-resume or --resume-from.")
        }
        if allowBatchChange && !(resume || autoResume || resumeFrom != nil) {
            throw ValidationError("--allow-batch-change applies to a resumed run; give it with --resume, --auto-resume or --resume-from.")
        }
        if overwrite && checkpointDir == nil { throw ValidationError("--overwrite needs --checkpoint-dir DIR.") }
        if let keepCheckpoints, keepCheckpoints < 1 { throw ValidationError("--keep-checkpoints \(keepCheckpoints) must be at least 1.") }
        if keepCheckpoints != nil && checkpointDir == nil { throw ValidationError("--keep-checkpoints needs --checkpoint-dir DIR.") }
    }

    /// The loop's options, with this task's defaults where the user gave none.
    func trainingOptions(defaults: TrainingOptions, augmentationNames: [String]) throws -> TrainingOptions {
        var options = defaults
        options.seed = seed
        options.steps = steps ?? defaults.steps
        options.batchSize = batchSize ?? defaults.batchSize
        options.learningRate = lr ?? defaults.learningRate
        options.warmupSteps = warmup ?? defaults.warmupSteps
        options.schedule = schedule ?? defaults.schedule
        options.weightDecay = weightDecay ?? defaults.weightDecay
        options.minimumLearningRate = minLr ?? defaults.minimumLearningRate
        options.beta2 = beta2 ?? defaults.beta2
        options.clip = clip ?? defaults.clip
        options.scaleLearningRate = scaleLr
        options.gradientAccumulation = gradAccum
        communication.apply(to: &options)
        timeline.apply(to: &options)
        options.checkpointDirectory = checkpointDir
        options.checkpointEvery = checkpointEvery
        options.resume = resume
        options.resumeFrom = resumeFrom
        options.autoResume = autoResume
        options.overwrite = overwrite
        options.allowBatchChange = allowBatchChange
        options.keepCheckpoints = keepCheckpoints
        options.metricsPath = metrics
        options.progress = quiet ? .none : progress
        options.json = runtime.json
        options.syncBatchNorm = syncBn
        options.faults = try FaultPlan.fromEnvironment()
        if let augment { options.augmentation = try parseAugmentation(augment, allowed: augmentationNames) }
        return options
    }
}

struct TrainCharLM: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "charlm",
        abstract: "Character-level GPT on text (default: the embedded Tiny Shakespeare).",
        discussion: """
        Defaults are nanoGPT's CPU configuration: 4 layers, 4 heads, 128 embedding, block 64 (--preset baby), batch 12, dropout 0, AdamW lr 1e-3 with 100 warmup steps and cosine decay to 1e-4, 2000 steps. --preset gpt2-small is GPT-2 small's shape: 12 layers, 12 heads, 768 wide, block 1024 (85 M parameters with characters); --layers, --heads, --embedding and --block-size override a preset.
          replica train charlm --json
          mpirun -np 2 replica train charlm --checkpoint-dir runs/charlm
        """
    )

    @OptionGroup var common: CommonTrainOptions
    @OptionGroup var size: GPTSizeOptions
    @Option(help: "Evaluate every N steps (0: only at the end).") var evalInterval = 250
    @Option(help: "Validation batches per evaluation.") var evalBatches = 40

    func validate() throws {
        guard evalBatches >= 1, evalInterval >= 0 else { throw ValidationError("--eval-batches must be ≥ 1 and --eval-interval ≥ 0.") }
    }

    func run() throws {
        var defaults = TrainingOptions.characterLanguageModel()
        defaults.evaluationInterval = evalInterval
        defaults.evaluationBatches = evalBatches
        let text = try common.data.map(TextCorpus.load) ?? TextCorpus.tinyShakespeare()
        var config = size.config
        let vocabulary = CharacterVocabulary(text: text)
        config.vocabularySize = vocabulary.count
        let run = try TrainingRun(common, defaults: defaults, augmentations: ["substitute"], memory: { options, communicator in
            config.memoryEstimate(options: options, ranks: communicator.size)
        }) { options, communicator in
            try CharLMTask(text: text, vocabulary: vocabulary, dataDescription: common.data ?? "Tiny Shakespeare", config: config,
                           options: options, rank: communicator.rank, ranks: communicator.size)
        }
        try run.train(banner: "charlm: \(run.task.model.parameterCount) parameters, \(run.communicator.size) rank(s) × "
            + "\(run.runtime.threads) thread(s), global batch \(run.globalBatch) × \(config.blockSize) tokens, \(run.options.steps) steps") { outcome in
            let valLoss = outcome.evaluation["val_loss"] ?? .nan
            return (String(format: "done: train loss %.4f, val loss %.4f, %.0f tokens/s, %.1f s", outcome.trainLoss, valLoss,
                           outcome.unitsPerSecond, outcome.seconds),
                    ["train_loss": .number(outcome.trainLoss), "val_loss": .number(valLoss),
                     "tokens_per_s": .number(outcome.unitsPerSecond), "skipped_steps": .integer(outcome.skippedSteps),
                     "preset": .string((size.preset ?? .baby).rawValue)])
        }
    }
}
