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
        Times steps of the real training loop on the embedded data at the task's default configuration.
        Under mpirun, tokens/s is global and comm_ms / overlap_fraction show the all-reduce.
          replica bench step --model charlm --threads 1 --json
          mpirun -np 2 replica bench step --model charlm --json
        """
    )

    @Option(help: "Model: charlm or gat.") var model = "charlm"
    @Option(help: "Timed steps (the median is reported).") var steps = 30
    @Option(help: "Untimed steps first.") var warmupSteps = 5
    @Option(help: "Examples per rank.") var batchSize = 12
    @Option(help: "All-reduce bucket size in MiB.") var bucketMb: Double = 25
    @Flag(help: "All-reduce after backward instead of during it.") var noOverlap = false
    @Option(help: "Normalisation: layer or batch.") var norm = "layer"
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        guard ["charlm", "gat"].contains(model) else { throw ValidationError("--model \(model): the benchmark knows charlm and gat.") }
        guard steps >= 1, warmupSteps >= 0, batchSize >= 1 else {
            throw ValidationError("--steps and --batch-size must be at least 1, --warmup-steps not negative.")
        }
        guard bucketMb > 0 else { throw ValidationError("--bucket-mb \(bucketMb) must be positive.") }
        guard ["layer", "batch"].contains(norm) else { throw ValidationError("--norm \(norm): use layer or batch.") }
    }

    func run() throws {
        let context = try Runtime(runtime)
        let communicator = context.communicator
        var options = TrainingOptions()
        options.steps = warmupSteps + steps
        options.batchSize = batchSize
        options.bucketBytes = Int(bucketMb * 1024 * 1024)
        options.overlap = !noOverlap
        options.quiet = true
        let task: DataParallelTask
        let parameterCount: Int
        if model == "gat" {
            options.optimizer = .adam
            options.learningRate = 0.005
            options.weightDecay = 5e-4
            options.clip = 0
            let gat = try GATTask(dataset: try NodePropertyDataset.cora(), config: GATConfig(), options: options, fanout: nil,
                                  patience: 0, rank: communicator.rank, ranks: communicator.size)
            task = gat
            parameterCount = gat.model.parameterCount
        } else {
            var config = GPTConfig()
            config.norm = NormKind(rawValue: norm) ?? .layer
            let charlm = try CharLMTask(text: try TextCorpus.tinyShakespeare(), dataDescription: "Tiny Shakespeare", config: config,
                                        options: options, rank: communicator.rank, ranks: communicator.size)
            task = charlm
            parameterCount = charlm.model.parameterCount
        }
        let trainer = try Trainer(task: task, options: options, communicator: communicator)
        try trainer.synchronizeInitialState()
        var results: [Trainer.StepResult] = []
        for step in 0..<(warmupSteps + steps) {
            let result = try trainer.trainStep(step)
            if step >= warmupSteps { results.append(result) }
        }
        // The slowest rank's median decides the job's pace.
        func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
        var figures = [median(results.map(\.seconds)), median(results.map(\.communicationSeconds)),
                       median(results.map(\.overlapFraction)), median(results.map(\.computeSeconds))]
        try communicator.allReduceMaximum(&figures)
        let tokens = Double(task.unitsPerMicroStep * communicator.size)
        context.log(String(format: "%@ step: %.2f ms/step (compute %.2f ms, all-reduce %.2f ms, %.0f%% hidden), %.0f %@/s on %d rank(s) × %d thread(s), %d parameters",
                           model, figures[0] * 1e3, figures[3] * 1e3, figures[1] * 1e3, figures[2] * 100, tokens / figures[0],
                           task.throughputUnit, communicator.size, context.threads, parameterCount))
        context.emit(summary: [
            "task": .string("bench step"), "model": .string(model), "ranks": .integer(communicator.size),
            "steps": .integer(steps), "seconds": .number(results.map(\.seconds).reduce(0, +)),
            "param_count": .integer(parameterCount), "ms_per_step": .number(figures[0] * 1e3),
            "tokens_per_s": .number(tokens / figures[0]), "comm_ms": .number(figures[1] * 1e3),
            "overlap_fraction": .number(figures[2]), "compute_ms": .number(figures[3] * 1e3),
            "threads": .integer(context.threads), "batch_size": .integer(batchSize),
        ])
    }
}
