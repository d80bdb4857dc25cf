import Foundation
import ReplicaCore
import ReplicaDistributed
import ReplicaTrain

/// The one way a `train` command runs a job, in the only valid order: runtime, task, SyncBN,
/// `--epochs` as steps, trainer, rank 0's parameters broadcast, every rank's agreement on the
/// configuration and parameters, resume; then the loop and the summary.
///
/// A command declares its arguments, loads its data (so that bad input fails before MPI starts),
/// and makes one call: `TrainingRun(...).train(...)`.
struct TrainingRun<Task: DataParallelTask> {
    let runtime: Runtime
    let task: Task
    let trainer: Trainer
    var options: TrainingOptions { trainer.options }
    var communicator: Communicator { runtime.communicator }
    /// The global batch: per-rank batch × ranks × micro-steps.
    var globalBatch: Int { options.batchSize * communicator.size * options.gradientAccumulation }

    /// Sets the job up. `defaults` are the task's (`TrainingOptions.characterLanguageModel()`, ...);
    /// `adjust` changes them once the ranks are known (a preset's per-rank batch); `makeTask`
    /// builds this rank's task, after `memory` (what a rank will need, and what to lower if it
    /// does not fit) has been checked against the memory this machine has available;
    /// `adjustForTask` changes the loop's options once the task is known (its epoch's length).
    init(_ common: CommonTrainOptions, defaults: TrainingOptions, augmentations: [String],
         adjust: (inout TrainingOptions, Communicator) -> Void = { _, _ in },
         memory: ((TrainingOptions, Communicator) -> (estimate: MemoryEstimate, advice: String))? = nil,
         makeTask: (TrainingOptions, Communicator) throws -> Task,
         adjustForTask: (inout TrainingOptions, Task) -> Void = { _, _ in }) throws {
        var options = try common.trainingOptions(defaults: defaults, augmentationNames: augmentations)
        runtime = try Runtime(common.runtime)
        adjust(&options, runtime.communicator)
        if let memory {
            let (estimate, advice) = memory(options, runtime.communicator)
            // Every rank has loaded its data before any reads what memory is left.
            try runtime.communicator.barrier()
            try estimate.check("this run", localRanks: runtime.localRanks, advice: advice)
        }
        task = try makeTask(options, runtime.communicator)
        adjustForTask(&options, task)
        if options.syncBatchNorm { task.synchronizeBatchNorm(over: runtime.communicator) }
        if let epochs = common.epochs { options.steps = epochs * task.stepsPerEpoch }
        trainer = try Trainer(task: task, options: options, communicator: runtime.communicator)
        try trainer.synchronizeInitialState()
        try trainer.resumeIfAsked()
    }

    /// Logs `banner`, trains, and hands the outcome to `finish`, which returns the closing line
    /// and the task's summary fields. Every summary also has task, ranks, steps, seconds,
    /// param_count, threads, peak_rss_mb (the largest rank's), zero and grad_compression when set and allreduce
    /// on more than one rank; a field of `finish` with the same key wins.
    func train(banner: String, finish: (Trainer.Outcome) throws -> (line: String, fields: [String: JSONValue])) throws {
        runtime.log(banner)
        let outcome = try trainer.run()
        var common: [String: JSONValue] = [
            "task": .string(task.taskName), "ranks": .integer(communicator.size), "steps": .integer(outcome.steps),
            "seconds": .number(outcome.seconds), "param_count": .integer(task.arena.count),
            "threads": .integer(runtime.threads), "peak_rss_mb": .number(outcome.peakResidentMegabytes.max() ?? 0),
        ]
        if options.zeroStage != 0 { common["zero"] = .integer(options.zeroStage) }
        if options.gradientCompression != .none { common["grad_compression"] = .string(options.gradientCompression.rawValue) }
        if let schedule = trainer.allReduceDescription { common["allreduce"] = .string(schedule) }
        if outcome.stopSignal != 0 {
            // Stopped on request: the summary without the task's evaluation, then exit status 3.
            let signal = StopRequest.name(of: outcome.stopSignal)
            common["stopped"] = .string(signal)
            runtime.emit(summary: common)
            throw StoppedOnRequest(stopMessage(signal: signal, step: outcome.steps))
        }
        let (line, fields) = try finish(outcome)
        runtime.log(line)
        runtime.emit(summary: common.merging(fields) { _, task in task })
    }

    /// What a run stopped by `signal` after `step` says last: where its checkpoint is and how to go on.
    func stopMessage(signal: String, step: Int) -> String {
        guard let directory = options.checkpointDirectory else {
            return "stopped on request (\(signal)) after step \(step); no --checkpoint-dir, so nothing was saved"
        }
        if step == trainer.startStep {
            return "stopped on request (\(signal)) before the first step; the checkpoints in \(directory) are as they were"
        }
        let folder = URL(fileURLWithPath: directory).appendingPathComponent(Checkpoint.folderName(step: step)).path
        return "stopped on request (\(signal)) after step \(step); checkpoint written to \(folder); go on with --resume"
    }
}
