import Foundation
import Testing
import ReplicaCore
import ReplicaDistributed
import ReplicaModels
import ReplicaTrain
import _ReplicaTestSupport

/// `--threads T` inside one rank: training on 3 threads (products split by rows or columns, the
/// attention heads, GELU, LayerNorm, AdamW, the gradient norm and clipping split across the pool)
/// ends where 1 thread does. The split changes only the order of a few sums (LayerNorm's dγ,
/// the gradient norm's partial sums), so after 4 AdamW steps the parameters agree to 1e-5 global
/// relative L2, the bound DESIGN-NOTES gives for reordered sums under Adam.
@Suite(.serialized) struct ThreadsTests {
    func train(threads: Int) throws -> CharLMTask {
        var config = DataParallelEngineTests.config()
        config.embedding = 64
        config.blockSize = 32
        var options = DataParallelEngineTests.options(batch: 16, steps: 4)
        options.clip = 0.5
        BLAS.setThreadCount(threads)
        defer { BLAS.setThreadCount(1) }
        let task = try CharLMTask(text: DataParallelEngineTests.text.get(), dataDescription: "test", config: config, options: options,
                                  rank: 0, ranks: 1)
        _ = try Trainer(task: task, options: options, communicator: LocalCommunicator()).run()
        return task
    }

    @Test func threeThreadsTrainAsOneThreadDoes() throws {
        let one = try train(threads: 1), three = try train(threads: 3)
        let difference = DataParallelEngineTests.relativeDifference(three, one)
        #expect(difference < DataParallelEngineTests.equivalenceTolerance, "relative L2 \(difference)")
    }
}
