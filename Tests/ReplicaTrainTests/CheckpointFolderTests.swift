import Foundation
import Testing
import ReplicaCore
import ReplicaTrain

/// The checkpoint folder's lock, the refusal of a fresh run on old checkpoints, `--overwrite`
/// and `--keep-checkpoints` (CheckpointFolder); StopRequestTests and the command tests run them in training.
@Suite struct CheckpointFolderTests {
    func temporaryDirectory() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("replica-folder-\(UUID().uuidString)")
    }

    /// A complete-looking checkpoint folder of `step` (the three files, empty).
    func makeCheckpoint(_ directory: URL, step: Int, complete: Bool = true) throws {
        let folder = directory.appendingPathComponent(Checkpoint.folderName(step: step))
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for file in complete ? ["model.safetensors", "optimizer.safetensors", "state.json"] : ["state.json"] {
            try Data().write(to: folder.appendingPathComponent(file))
        }
    }

    @Test func aSecondHolderIsRefusedWithTheFirstsNameUntilTheFirstLetsGo() throws {
        let directory = temporaryDirectory()
        var first: CheckpointFolder? = try CheckpointFolder(directory)
        #expect(first != nil)
        do {
            _ = try CheckpointFolder(directory)
            Issue.record("a second lock on the same folder must fail")
        } catch let error as UserError {
            #expect(error.description.contains("in use by another run"), "\(error)")
            #expect(error.description.contains("pid \(getpid())"), "the holder is named: \(error)")
        }
        first = nil
        _ = try CheckpointFolder(directory)
    }

    @Test func aFreshRunOnOldCheckpointsIsRefusedAndOverwriteDeletesThem() throws {
        let directory = temporaryDirectory()
        let folder = try CheckpointFolder(directory)
        #expect(CheckpointFolder.freshRunError(in: directory) == nil)
        try makeCheckpoint(directory, step: 5)
        try makeCheckpoint(directory, step: 10)
        try Data("step-00000010\n".utf8).write(to: directory.appendingPathComponent("latest"))
        let refusal = try #require(CheckpointFolder.freshRunError(in: directory))
        #expect(refusal.description.contains("step-00000010") && refusal.description.contains("--overwrite"), "\(refusal)")
        #expect(try folder.deleteCheckpoints() == 2)
        #expect(CheckpointFolder.stepFolders(in: directory).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent("latest").path))
    }

    @Test func pruningKeepsTheNewestCompleteOnes() throws {
        let directory = temporaryDirectory()
        let folder = try CheckpointFolder(directory)
        for step in [1, 2, 3, 4] { try makeCheckpoint(directory, step: step) }
        try makeCheckpoint(directory, step: 5, complete: false)   // being written, or left by a crash
        try folder.prune(keeping: 2)
        #expect(CheckpointFolder.stepFolders(in: directory).map(\.lastPathComponent) == ["step-00000003", "step-00000004", "step-00000005"])
        try folder.prune(keeping: 5)
        #expect(CheckpointFolder.stepFolders(in: directory).count == 3)
    }
}
