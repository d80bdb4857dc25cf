import ArgumentParser
import Foundation
import ReplicaCore
import ReplicaDistributed

/// Hidden: checks every collective on known data; the mpirun integration tests read its output.
struct SelfTest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest",
        abstract: "Check MPI collectives on this job (prints one JSON line per rank).",
        shouldDisplay: false,
        subcommands: [Collectives.self, Mismatch.self]
    )

    struct Collectives: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "All-reduce, broadcast and all-gather on exact data.")

        @Option(help: "Elements per buffer.")
        var count = 10_000

        @Option(help: "Largest element count one MPI call carries (lower it to exercise chunking).")
        var chunkElements: Int?

        func validate() throws {
            guard count >= 1 else { throw ValidationError("--count \(count) must be at least 1.") }
            if let chunkElements, chunkElements < 1 { throw ValidationError("--chunk-elements must be at least 1.") }
        }

        func run() throws {
            let communicator = try MPICommunicator()
            if let chunkElements { MPIEnvironment.maximumChunkElements = chunkElements }
            let report = try CollectiveSelfTest.run(count: count, communicator: communicator)
            let encoder = JSONEncoder()
            encoder.keyEncodingStrategy = .convertToSnakeCase
            encoder.outputFormatting = .sortedKeys
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
            fflush(stdout)
        }
    }

    struct Mismatch: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Rank 1 broadcasts while the others all-reduce: the watchdog (or --debug-collectives) must end the job.")

        @OptionGroup var runtime: RuntimeOptions

        func run() throws {
            let communicator = try Runtime(runtime, requireMPI: true).communicator
            guard communicator.size > 1 else { throw ValidationError("run it under mpirun with 2 or more ranks") }
            if communicator.rank == 1 {
                var bytes = [UInt8](repeating: 0, count: 64)
                try communicator.broadcast(&bytes, from: 0)
            } else {
                var values = [Double](repeating: 1, count: 16)
                try communicator.allReduce(&values, .sum)
            }
        }
    }
}
