import Foundation
import Testing
import ReplicaCore
import ReplicaDistributed
import ReplicaModels
import ReplicaTrain
import _ReplicaTestSupport

/// A stop request (a signal, `Trainer.stopRequest`) on any rank stops every rank after the same
/// step, with a checkpoint of it, and a resumed run ends where an uninterrupted one does, bit for
/// bit. On thread ranks; StopSignalCommandTests sends real signals under mpirun.
@Suite struct StopRequestTests {
    func temporaryDirectory() -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("replica-stop-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    func options(steps: Int, directory: URL, resume: Bool = false) -> TrainingOptions {
        var options = DataParallelEngineTests.options(batch: 8, steps: steps)
        options.checkpointDirectory = directory.path
        options.resume = resume
        return options
    }

    /// Trains on 2 thread ranks; `request(rank, asked)` is a rank's answer the `asked`-th time the
    /// trainer asks (0: before the first step, then once a step). Every rank's outcome and parameters.
    func train(_ options: TrainingOptions, request: @escaping @Sendable (Int, Int) -> Int32 = { _, _ in 0 })
        throws -> [(outcome: Trainer.Outcome, parameters: [Float])] {
        let group = ThreadCommunicatorGroup(size: 2)
        let results = Locked<[Int: (Trainer.Outcome, [Float])]>([:])
        try group.run { rank in
            let communicator = group.communicator(rank: rank)
            let task = try CharLMTask(text: DataParallelEngineTests.text.get(), dataDescription: "test",
                                      config: DataParallelEngineTests.config(), options: options, rank: rank, ranks: 2)
            let trainer = try Trainer(task: task, options: options, communicator: communicator)
            var asked = 0
            trainer.stopRequest = {
                defer { asked += 1 }
                return request(rank, asked)
            }
            try trainer.synchronizeInitialState()
            try trainer.resumeIfAsked()
            let outcome = try trainer.run()
            results.update { $0[rank] = (outcome, task.arena.allValues.scalars) }
        }
        return (0..<2).map { results.value[$0]! }
    }

    @Test func aRequestOnOneRankStopsEveryRankAfterTheSameStepAndResumingEndsBitForBit() throws {
        let straight = temporaryDirectory(), stopped = temporaryDirectory()
        let reference = try train(options(steps: 16, directory: straight))
        #expect(reference.allSatisfy { $0.outcome.stopSignal == 0 && $0.outcome.steps == 16 })

        // Rank 1 alone is asked to stop during step 7 (the 7th time a step asks).
        let first = try train(options(steps: 16, directory: stopped)) { rank, asked in rank == 1 && asked >= 7 ? SIGUSR1 : 0 }
        for (rank, result) in first.enumerated() {
            #expect(result.outcome.stopSignal == SIGUSR1, "rank \(rank)")
            #expect(result.outcome.steps == 7, "rank \(rank) stopped after step \(result.outcome.steps)")
        }
        #expect(first[0].parameters == first[1].parameters)
        let newest = try #require(Checkpoint.newest(in: stopped))
        #expect(newest.lastPathComponent == "step-00000007")
        #expect(!FileManager.default.fileExists(atPath: stopped.appendingPathComponent("step-00000016").path))

        let resumed = try train(options(steps: 16, directory: stopped, resume: true))
        #expect(resumed.allSatisfy { $0.outcome.stopSignal == 0 && $0.outcome.steps == 16 })
        #expect(resumed[0].parameters == reference[0].parameters, "the resumed run must end where the uninterrupted one does")
        for file in ["model.safetensors", "optimizer.safetensors"] {
            let a = try Data(contentsOf: straight.appendingPathComponent("step-00000016/\(file)"))
            let b = try Data(contentsOf: stopped.appendingPathComponent("step-00000016/\(file)"))
            #expect(a == b, "\(file) differs after the stop and resume")
        }
    }

    @Test func aRequestBeforeTheFirstStepStopsWithoutTrainingOrWriting() throws {
        let directory = temporaryDirectory()
        let results = try train(options(steps: 16, directory: directory)) { rank, _ in rank == 0 ? SIGTERM : 0 }
        #expect(results.allSatisfy { $0.outcome.stopSignal == SIGTERM && $0.outcome.steps == 0 })
        #expect(Checkpoint.newest(in: directory) == nil, "nothing trained, nothing written")
    }

    @Test func theAgreedSignalIsTheRequestersWhenTheyAgree() {
        #expect(Trainer.agreedSignal(ranks: 0, sum: 0) == 0)
        #expect(Trainer.agreedSignal(ranks: 1, sum: Double(SIGUSR1)) == SIGUSR1)
        #expect(Trainer.agreedSignal(ranks: 3, sum: Double(3 * SIGINT)) == SIGINT)
        #expect(Trainer.agreedSignal(ranks: 2, sum: Double(SIGUSR1 + SIGUSR2)) == SIGTERM)
    }
}
