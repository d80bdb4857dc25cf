import ReplicaData
import ReplicaDistributed
import ReplicaModels

// Node classification (GAT, GCN) on one in-process rank: a one-call training run with the loop
// settings of `replica train gat` (`TrainingOptions.nodeClassification`, TaskDefaults.swift), for
// the graph studies and the tests.

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
