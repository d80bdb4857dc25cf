import ArgumentParser
import Foundation
import ReplicaCore
import ReplicaData
import ReplicaDistributed
import ReplicaModels
import ReplicaTrain

struct BenchStep: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "step",
        abstract: "One training step (forward, backward, all-reduce, optimizer): ms/step and tokens/s.",
        discussion: """
        Times steps of the real training loop on the embedded data at the task's default configuration (charlm: --preset and the size options choose the model). Under mpirun, tokens/s is global and comm_ms / overlap_fraction show the all-reduce.
          replica bench step --model charlm --threads 1 --json
          replica bench step --preset gpt2-small --batch-size 1 --threads 1 --json
          mpirun -np 2 replica bench step --model charlm --json
          replica bench step --model translate --threads 1 --json
        mlm: train mlm's model and data (--batch-size sentences per rank, default 64; tokens are the batch's sentences at their mean length). translate: the `small` preset's model on Multi30k, --batch-size padded tokens per rank (default 2000); tokens_per_s counts target tokens (the predicted, non-padding ones) of the timed steps over their time; padded_tokens_per_s the padded source and target tokens. tokens_per_cpu_s (charlm, translate, mlm): the timed steps' tokens per second of the ranks' process CPU time, every thread's (steadier on a shared machine).
        mfu (model FLOPs utilisation) = flops_per_step / seconds per step / (sgemm_gflops · 1e9 · --threads). flops_per_step: one rank's matrix-product FLOPs of forward and backward, counted from the shapes the model multiplies (attention's full T×T scores and values, of which causal attention computes about half; backward twice forward). sgemm_gflops: one BLAS thread's rate on a 1024³ product, measured at start-up (the fastest of 10 calls; the ranks' mean). translate and mlm count each timed step's padded batch (and the rows the output layer projects: translate's non-padding targets, mlm's masked tokens) and divide by the mean step time; gat has no mfu (its attention and input projection are sparse, not sgemm).
        """
    )

    @Option(help: "The task whose training step is timed, with that task's defaults.") var model = BenchModel.charlm
    @Option(help: "Timed steps (the median is reported).") var steps = 30
    @Option(help: "Untimed steps first.") var warmupSteps = 5
    @Option(help: "Examples per rank (default 12; mlm: sentences, default 64); translate: padded tokens per rank (default 2000).") var batchSize: Int?
    @OptionGroup var communication: CommunicationOptions
    @OptionGroup var timeline: TimelineOptions
    @OptionGroup var size: GPTSizeOptions
    @Option(help: "Progress output over the warm-up and timed steps: auto (the bar on a terminal, lines otherwise), bar, lines or none.")
    var progress: ProgressMode = .auto
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        guard steps >= 1, warmupSteps >= 0, (batchSize ?? 1) >= 1 else {
            throw ValidationError("--steps and --batch-size must be at least 1, --warmup-steps not negative.")
        }
        if model != .charlm && size.isGiven {
            throw ValidationError("--preset, --layers, --heads, --embedding and --block-size set charlm's size; --model \(model) has its own.")
        }
        if model == .gat { try CommonTrainOptions.refuseBatchSize(batchSize, task: "bench step --model gat") }
    }

    func run() throws {
        let context = try Runtime(runtime)
        let communicator = context.communicator
        var options: TrainingOptions
        switch model {
        case .charlm: options = .characterLanguageModel()
        case .gat: options = .nodeClassification(gcn: false)
        case .translate: options = .translation(preset: .small)
        case .mlm: options = .maskedLanguageModel()
        }
        options.steps = warmupSteps + steps
        if let batchSize { options.batchSize = batchSize }
        communication.apply(to: &options)
        timeline.apply(to: &options)
        options.progress = .none
        options.evaluationInterval = 0
        let task: DataParallelTask
        let parameterCount: Int
        var translation: TranslateTask?
        var memory: MemoryEstimate?
        switch model {
        case .translate:
            let preset = TranslatePreset.small
            let translate = TranslateTask(data: try TranslationData.multi30k(), vocabularySize: preset.vocabulary, config: preset.config,
                                          options: options, tokensPerRank: options.batchSize, labelSmoothing: 0.1,
                                          rank: communicator.rank, ranks: communicator.size)
            task = translate
            translation = translate
            parameterCount = translate.model.parameterCount
        case .mlm:
            // train mlm's defaults: the English side of Multi30k, a 4000-token BPE, its model.
            let mlm = MLMTask(splits: try SentenceSplits.multi30kEnglish(), vocabularySize: MaskedLanguageModelConfig().vocabularySize,
                              config: MaskedLanguageModelConfig(), options: options, rank: communicator.rank, ranks: communicator.size)
            task = mlm
            parameterCount = mlm.model.parameterCount
        case .gat:
            let gat = try GATTask(dataset: try NodePropertyDataset.cora(), config: GATConfig(), options: options, fanout: nil,
                                  patience: 0, rank: communicator.rank, ranks: communicator.size)
            task = gat
            parameterCount = gat.model.parameterCount
        case .charlm:
            let text = try TextCorpus.tinyShakespeare()
            var config = size.config
            let vocabulary = CharacterVocabulary(text: text)
            config.vocabularySize = vocabulary.count
            let (estimate, advice) = config.memoryEstimate(options: options, ranks: communicator.size)
            try estimate.check("this benchmark", localRanks: context.localRanks, advice: advice)
            memory = estimate
            let charlm = try CharLMTask(text: text, vocabulary: vocabulary, dataDescription: "Tiny Shakespeare", config: config,
                                        options: options, rank: communicator.rank, ranks: communicator.size)
            task = charlm
            parameterCount = charlm.model.parameterCount
        }
        // MFU's reference: one BLAS thread's sgemm rate on this machine now (after the memory
        // preflight, so that a refused configuration does not wait for it).
        var sgemm = [GEMMBenchmark.singleThreadGFLOPs(restoringThreads: context.threads)]
        let trainer = try Trainer(task: task, options: options, communicator: communicator)
        try trainer.synchronizeInitialState()
        var results: [Trainer.StepResult] = []
        var counts = [0.0, 0.0]   // this rank's target tokens and padded tokens in the timed steps
        var cpuSeconds = 0.0      // this process's CPU time in the timed steps (robust on a shared machine)
        var flops = 0.0           // this rank's matrix-product FLOPs in the timed steps
        let counting = task as? MatmulCounting
        let bar = ProgressBar(total: warmupSteps + steps, isRoot: communicator.isRoot, mode: progress, toStandardError: runtime.json)
        for step in 0..<(warmupSteps + steps) {
            let cpuStart = processCPUSeconds()
            let result = try trainer.trainStep(step)
            bar.update(step: step + 1, fields: String(format: "%@ %.1f ms", step < warmupSteps ? "warm-up" : "timed", result.seconds * 1e3),
                       unitsPerSecond: Double(task.unitsPerMicroStep * communicator.size) / max(result.seconds, 1e-9), unit: task.throughputUnit)
            if step >= warmupSteps {
                cpuSeconds += processCPUSeconds() - cpuStart
                results.append(result)
                if let counting {
                    flops += (0..<options.gradientAccumulation).reduce(0) { $0 + counting.matmulFLOPs(step: step, micro: $1) }
                }
                if let translation {
                    counts[0] += Double(translation.targetCount(step: step, micro: 0))
                    counts[1] += Double(translation.paddedTokenCount(step: step, micro: 0))
                }
            }
        }
        bar.finish()
        try trainer.timeline?.write(communicator)
        // The slowest rank's median decides the job's pace.
        func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
        var figures = [median(results.map(\.seconds)), median(results.map(\.communicationSeconds)),
                       median(results.map(\.overlapFraction)), median(results.map(\.computeSeconds))]
        try communicator.allReduceMaximum(&figures)
        var summedSeconds = [results.map(\.seconds).reduce(0, +)]   // the slowest rank's
        try communicator.allReduceMaximum(&summedSeconds)
        try communicator.allReduce(&sgemm, .sum)
        let sgemmGFLOPs = sgemm[0] / Double(communicator.size)   // the ranks' mean
        let peakResident = try trainer.peakResidentMegabytes().max() ?? 0
        var tokensPerSecond = Double(task.unitsPerMicroStep * communicator.size) / figures[0]
        var extra: [String: JSONValue] = ["sgemm_gflops": .number(sgemmGFLOPs)]
        var utilisation = ""
        if counting != nil {
            // One rank's FLOPs a step (the ranks' and timed steps' mean) over the time of a step (charlm the
            // median; translate and mlm, whose batches differ, the mean) and the threads' peak.
            var total = [flops]
            try communicator.allReduce(&total, .sum)
            let flopsPerStep = total[0] / Double(communicator.size * steps)
            let secondsPerStep = model == .charlm ? figures[0] : summedSeconds[0] / Double(steps)
            let mfu = flopsPerStep / secondsPerStep / (sgemmGFLOPs * 1e9 * Double(context.threads))
            extra["flops_per_step"] = .number(flopsPerStep)
            extra["mfu"] = .number(mfu)
            utilisation = String(format: ", MFU %.1f%% (%.2f GFLOP/step; sgemm %.1f GFLOP/s a thread)", mfu * 100, flopsPerStep / 1e9, sgemmGFLOPs)
        }
        if model == .charlm { extra["preset"] = .string((size.preset ?? .baby).rawValue) }
        if communication.zero != 0 { extra["zero"] = .integer(communication.zero) }
        if communication.gradCompression != .none { extra["grad_compression"] = .string(communication.gradCompression.rawValue) }
        if let schedule = trainer.allReduceDescription { extra["allreduce"] = .string(schedule) }
        if let memory {
            // The estimate's parts (the runtime part measured at start-up), beside the measured peak.
            extra["memory_mb"] = .object(memory.megabytes.mapValues { .number($0) })
        }
        if translation != nil {
            // Batches differ in size: the tokens of all timed steps over their summed time (the slowest rank's).
            try communicator.allReduce(&counts, .sum)
            tokensPerSecond = counts[0] / summedSeconds[0]
            extra["padded_tokens_per_s"] = .number(counts[1] / summedSeconds[0])
            extra["target_tokens"] = .number(counts[0])
        }
        if model != .gat {
            // The timed steps' tokens over the ranks' summed process CPU time (every thread's,
            // spinning included): steadier than tokens_per_s on a shared machine.
            var cpu = [cpuSeconds]
            try communicator.allReduce(&cpu, .sum)
            let tokens = translation != nil ? counts[0]
                : Double(task.unitsPerMicroStep * options.gradientAccumulation * communicator.size * steps)
            extra["tokens_per_cpu_s"] = .number(tokens / cpu[0])
        }
        context.log(String(format: "%@ step: %.2f ms/step (compute %.2f ms, all-reduce %.2f ms, %.0f%% hidden), %.0f %@/s on %d rank(s) × %d thread(s), %d parameters",
                           model.rawValue, figures[0] * 1e3, figures[3] * 1e3, figures[1] * 1e3, figures[2] * 100, tokensPerSecond,
                           task.throughputUnit, communicator.size, context.threads, parameterCount) + utilisation)
        context.emit(summary: [
            "task": .string("bench step"), "model": .string(model.rawValue), "ranks": .integer(communicator.size),
            "steps": .integer(steps), "seconds": .number(results.map(\.seconds).reduce(0, +)),
            "param_count": .integer(parameterCount), "ms_per_step": .number(figures[0] * 1e3),
            "tokens_per_s": .number(tokensPerSecond), "comm_ms": .number(figures[1] * 1e3),
            "overlap_fraction": .number(figures[2]), "compute_ms": .number(figures[3] * 1e3),
            "threads": .integer(context.threads), "batch_size": .integer(options.batchSize),
            "peak_rss_mb": .number(peakResident),
        ].merging(extra) { first, _ in first })
    }
}

/// CPU time of this process (all its threads) in seconds.
func processCPUSeconds() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}
