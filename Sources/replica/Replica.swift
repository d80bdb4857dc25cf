import ArgumentParser
import Foundation
import ReplicaCore
import ReplicaDistributed

/// The `replica` command line. Only argument parsing and printing live here.
struct Replica: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replica",
        abstract: "Data-parallel training of Transformers and graph attention networks on CPUs with MPI.",
        discussion: """
        Runs alone (one rank) or under mpirun: `mpirun -np 2 replica bench allreduce`. Exit status: 0 success, 1 a user error, 2 a distributed failure, 3 a training run stopped on request (SIGTERM, SIGINT, SIGUSR1, SIGUSR2) after writing a checkpoint.
        """,
        subcommands: [Train.self, DataCommand.self, Generate.self, Translate.self, Bench.self, SelfTest.self, BLEUCommand.self, Analyze.self, Study.self, Plot.self]
    )
}

@main
enum ReplicaMain {
    static func main() {
        // Under mpirun, this process supervises a worker copy of itself, so a rank killed by a
        // signal still ends the job with status 2 and a message naming it (docs/interface.md).
        if let status = MPIEnvironment.superviseIfLaunched() { exit(status) }
        #if os(Linux)
        // Activations of a step are freed and allocated again every step; keep blocks up to
        // 32 MiB on the heap (not fresh mmaps that fault in every page each time). Larger ones
        // (the arena's buffers, MPI's bucket-sized temporaries, long blocks' attention
        // probabilities) are mapped, so that freeing them returns the memory: on the heap they
        // left holes that made the peak grow step after step (docs/memory.md, ZeRO at gpt2-small).
        _ = glibcMallopt(-3 /* M_MMAP_THRESHOLD */, 32 << 20)
        _ = glibcMallopt(-1 /* M_TRIM_THRESHOLD */, 1 << 30)
        #endif
        BLAS.preferFasterKernels()   // OpenBLAS's Haswell kernels on a Zen 4 (BLASKernelChoice.swift)
        let status: Int32
        do {
            var command = try Replica.parseAsRoot()
            // A training run stops on SIGTERM, SIGINT, SIGUSR1 or SIGUSR2 after the step in progress,
            // with a checkpoint, and exits 3; every other command ends on them at once.
            if Train.configuration.subcommands.contains(where: { $0 == type(of: command) }) { StopRequest.catchSignals() }
            try command.run()
            status = 0
        } catch {
            status = report(error)
        }
        MPIEnvironment.finalize()
        exit(status)
    }

    /// Prints one message for `error` (rank 0 only for errors every rank sees alike) and returns the exit status.
    static func report(_ error: Error) -> Int32 {
        switch error {
        case let error as UserError:
            printError(error.description, everyRank: false)
            return 1
        case let error as DistributedError:
            printError(error.description, everyRank: true)
            return 2
        case let stop as StoppedOnRequest:
            if isFirstRank { FileHandle.standardError.write(Data((stop.description + "\n").utf8)) }
            return 3
        default:
            let code = Replica.exitCode(for: error)
            let message = Replica.fullMessage(for: error)
            if code == .success {
                if isFirstRank && !message.isEmpty { print(message) }
                return 0
            }
            printError(message, everyRank: false)
            return 1
        }
    }

    /// Whether this process is rank 0 (or alone), known before MPI starts from the launcher's environment.
    static var isFirstRank: Bool {
        let environment = ProcessInfo.processInfo.environment
        let rank = environment["OMPI_COMM_WORLD_RANK"] ?? environment["PMIX_RANK"] ?? environment["PMI_RANK"] ?? "0"
        return rank == "0"
    }

    static func printError(_ message: String, everyRank: Bool) {
        guard everyRank || isFirstRank else { return }
        let text = message.hasPrefix("Error:") || message.hasPrefix("[rank") ? message : "Error: \(message)"
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }
}

/// glibc's mallopt (malloc.h is not part of Swift's Glibc module).
@_silgen_name("mallopt")
func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32
