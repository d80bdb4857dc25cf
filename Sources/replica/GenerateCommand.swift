import ArgumentParser
import Foundation
import ReplicaCore
import ReplicaTrain

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sample text from a charlm checkpoint.",
        discussion: "Example: replica generate --checkpoint runs/charlm/step-00002000 --prompt 'ROMEO:' --tokens 300 --temperature 0.8"
    )

    @Option(help: "A checkpoint folder (step-NNNNNNNN) or a --checkpoint-dir (its newest checkpoint).")
    var checkpoint: String
    @Option(help: "Text to continue.") var prompt = "\n"
    @Option(help: "Characters to generate.") var tokens = 500
    @Option(help: "Softmax temperature; 0 is greedy.") var temperature: Float = 0.8
    @Option(help: "Sample only among the K most likely characters.") var topK: Int?
    @Option(help: "Seed of the sampling.") var seed: UInt64 = 1337
    @Option(help: "Compute threads.") var threads: Int?

    func validate() throws {
        guard tokens >= 0 else { throw ValidationError("--tokens \(tokens) must not be negative.") }
        guard temperature >= 0, temperature.isFinite else { throw ValidationError("--temperature \(temperature) must be ≥ 0.") }
        if let topK, topK < 1 { throw ValidationError("--top-k \(topK) must be at least 1.") }
        if let threads, threads < 1 { throw ValidationError("--threads \(threads) must be at least 1.") }
    }

    func run() throws {
        BLAS.setThreadCount(threads ?? 1)
        let folder = Checkpoint.folder(forPath: checkpoint)
        let generator = try TextGenerator(checkpoint: folder)
        _ = try generator.vocabulary.encode(prompt)   // a character outside the vocabulary fails before any output
        print(prompt, terminator: "")
        _ = try generator.generate(prompt: prompt, count: tokens, temperature: temperature, topK: topK, seed: seed) {
            print($0, terminator: "")
            fflush(stdout)
        }
        print()
    }
}
