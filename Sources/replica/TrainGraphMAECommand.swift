import ArgumentParser
import Foundation
import ReplicaCore
import ReplicaData
import ReplicaDistributed
import ReplicaModels
import ReplicaTrain

struct TrainGraphMAE: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "graphmae",
        abstract: "GraphMAE self-supervised pre-training, then a linear probe (default: the embedded Cora).",
        discussion: """
        Defaults are the authors' Cora configuration: a 2-layer GAT encoder of 4 heads × 128 with PReLU, a 1-layer GAT decoder, mask rate 0.5 (5% of the masked nodes replaced by random nodes), scaled cosine error with γ = 3, dropout 0.2 on inputs and 0.1 on attention, Adam lr 1e-3 with L2 weight decay 2e-4 and cosine decay to 0 over 1500 epochs. Then a logistic regression on the frozen embeddings (Adam lr 0.01, weight decay 1e-4, 300 epochs); reports the test accuracy at its best validation epoch. Each rank draws its own mask; the gradient is the mean over all ranks' masks.
          replica train graphmae --seed 0 --json
          mpirun -np 2 replica train graphmae --epochs 500
        --data takes a folder in the OGB raw layout (raw/*.csv.gz, split/<name>/*.csv.gz).
        """
    )

    @OptionGroup var common: CommonTrainOptions
    @Option(help: "Encoder width: heads × features per head (concatenated).") var hidden = 512
    @Option(help: "Encoder attention heads.") var heads = 4
    @Option(help: "Encoder GAT layers.") var layers = 2
    @Option(help: "Dropout on every layer's input.") var dropout: Float = 0.2
    @Option(help: "Dropout on attention coefficients.") var attentionDropout: Float = 0.1
    @Option(help: "Fraction of nodes masked per epoch.") var maskRate: Float = 0.5
    @Option(help: "Fraction of the masked nodes given a random node's features instead of the mask token.")
    var replaceRate: Float = 0.05
    @Option(help: "Exponent of the scaled cosine error.") var gamma: Float = 3
    @Flag(inversion: .prefixedNo, help: "Divide each node's features by their sum.") var normalizeFeatures = true
    @Option(help: "Linear-probe epochs.") var probeEpochs = 300
    @Option(help: "Linear-probe learning rate (Adam).") var probeLr: Float = 0.01
    @Option(help: "Linear-probe L2 weight decay.") var probeWeightDecay: Float = 1e-4

    func validate() throws {
        try CommonTrainOptions.refuseBatchSize(common.batchSize, task: "train graphmae")
        guard hidden >= 1, heads >= 1, layers >= 1 else {
            throw ValidationError("--hidden, --heads and --layers must be at least 1.")
        }
        guard hidden % heads == 0 else { throw ValidationError("--hidden \(hidden) is not divisible by --heads \(heads).") }
        guard (0..<1).contains(dropout), (0..<1).contains(attentionDropout) else {
            throw ValidationError("--dropout and --attention-dropout must be in [0, 1).")
        }
        guard maskRate > 0 && maskRate <= 1 else { throw ValidationError("--mask-rate \(maskRate) must be in (0, 1].") }
        guard (0...1).contains(replaceRate) else { throw ValidationError("--replace-rate \(replaceRate) must be in [0, 1].") }
        guard gamma >= 1 else { throw ValidationError("--gamma \(gamma) must be at least 1.") }
        guard probeEpochs >= 1 else { throw ValidationError("--probe-epochs must be at least 1.") }
        guard probeLr > 0, probeWeightDecay >= 0 else {
            throw ValidationError("--probe-lr must be positive and --probe-weight-decay not negative.")
        }
    }

    func run() throws {
        let started = Date()
        var config = GraphMAEConfig()
        config.hidden = hidden
        config.heads = heads
        config.layerCount = layers
        config.inputDropout = dropout
        config.attentionDropout = attentionDropout
        config.maskRate = maskRate
        config.replaceRate = replaceRate
        config.gamma = gamma
        let (dataset, load) = try LoadedGraph.load(common.data)
        let run = try TrainingRun(common, defaults: .graphMAE(), augmentations: ["drop-edge"], memory: { options, communicator in
            var sized = config
            sized.featureCount = dataset.featureCount
            return sized.memoryEstimate(graph: GraphSize(dataset), options: options, ranks: communicator.size)
        }) { options, communicator in
            try GraphMAETask(dataset: dataset, config: config, options: options, normalizeFeatures: normalizeFeatures,
                             rank: communicator.rank, ranks: communicator.size)
        }
        try run.train(banner: "graphmae: \(run.task.model.parameterCount) parameters, \(dataset.name): \(dataset.nodeCount) nodes, "
            + "\(dataset.featureCount) features, \(run.communicator.size) rank(s) × \(run.runtime.threads) thread(s), "
            + "\(run.task.mask(step: 0).maskNodes.count) mask nodes per rank, \(run.options.steps) epochs, \(load)") { outcome in
            run.runtime.log(String(format: "done: %d epochs, reconstruction loss %.4f, %.2f ms/epoch, %.1f s",
                                   outcome.steps, outcome.evaluation["reconstruction_loss"] ?? .nan, outcome.secondsPerStep * 1e3,
                                   outcome.seconds))
            var probeOptions = LinearProbeOptions()
            probeOptions.epochs = probeEpochs
            probeOptions.learningRate = probeLr
            probeOptions.weightDecay = probeWeightDecay
            probeOptions.seed = run.options.seed
            let probeStarted = Date()
            let probe = run.task.probe(options: probeOptions)
            let probeSeconds = Date().timeIntervalSince(probeStarted)
            return (String(format: "linear probe: test accuracy %.4f at the best validation accuracy %.4f (epoch %d of %d); final test accuracy %.4f",
                           probe.testAccuracy, probe.validationAccuracy, probe.bestEpoch, probeEpochs, probe.finalTestAccuracy),
                    ["seconds": .number(Date().timeIntervalSince(started)),
                     "test_accuracy": .number(probe.testAccuracy), "val_accuracy": .number(probe.validationAccuracy),
                     "probe_test_accuracy": .number(probe.finalTestAccuracy), "probe_best_epoch": .integer(probe.bestEpoch),
                     "epoch_ms": .number(outcome.secondsPerStep * 1e3), "train_loss": .number(outcome.trainLoss),
                     "reconstruction_loss": .number(outcome.evaluation["reconstruction_loss"] ?? .nan),
                     "probe_seconds": .number(probeSeconds), "load_seconds": .number(load.seconds)])
        }
    }
}
