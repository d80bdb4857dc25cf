import ReplicaData
import ReplicaDistributed
import ReplicaModels

// Node classification (GAT, GCN) on one in-process rank: the loop settings of `replica train gat`
// and a one-call training run, for the graph studies and the tests.

extension TrainingOptions {
    /// The loop settings of `replica train gat` (`gcn`: false) or `--model gcn` (true): Adam with
    /// L2 5e-4, no warmup or clipping, evaluation every epoch; GAT lr 0.005 up to 100,000 epochs
    /// (early stopping ends it), GCN lr 0.01 for 200 epochs (Kipf & Welling's).
    public static func nodeClassification(gcn: Bool) -> TrainingOptions {
        var options = TrainingOptions()
        options.steps = gcn ? 200 : 100_000
        options.learningRate = gcn ? 0.01 : 0.005
        options.weightDecay = 5e-4
        options.warmupSteps = 0
        options.schedule = .constant
        options.optimizer = .adam
        options.beta2 = 0.999
        options.evaluationInterval = 1
        options.clip = 0
        return options
    }
}

/// Trains `model` on `dataset` alone (one in-process rank, the data-parallel loop) and puts the
/// selected epoch's parameters back. Returns the task, ready to evaluate.
public func trainNodeClassifier(_ model: NodeClassifier, dataset: NodePropertyDataset, options: TrainingOptions,
                                patience: Int) throws -> GATTask {
    var options = options
    options.progress = .none
    let task = try GATTask(dataset: dataset, model: model, options: options, fanout: nil, patience: patience, rank: 0, ranks: 1)
    let trainer = try Trainer(task: task, options: options, communicator: LocalCommunicator())
    try trainer.synchronizeInitialState()
    _ = try trainer.run()
    task.restoreSelectedParameters()
    return task
}
