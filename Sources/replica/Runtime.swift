import ArgumentParser
import Foundation
import ReplicaCore
import ReplicaDistributed

/// Options every command that computes takes.
struct RuntimeOptions: ParsableArguments {
    @Option(help: "BLAS/compute threads per rank (default: 1 under mpirun, all cores alone).")
    var threads: Int?

    @Flag(help: "Rank 0 prints the final summary as one JSON object, the last line of stdout.")
    var json = false

    @Option(help: "A collective waiting longer than this many seconds ends the job with a report of the ranks that have not arrived (0: never).")
    var timeout: Double = 300

    @Flag(help: "Ranks compare (sequence, operation, size) before every collective; a mismatch ends the job naming both calls.")
    var debugCollectives = false

    func validate() throws {
        guard timeout >= 0, timeout.isFinite else {
            throw ValidationError("--timeout \(timeout) is not a number of seconds; use 0 (never) or more.")
        }
        if let threads, threads < 1 {
            throw ValidationError("--threads \(threads) is not a thread count; use 1 or more.")
        }
    }
}

/// What a command runs with: the communicator and the thread count it chose.
struct Runtime {
    let communicator: Communicator
    let threads: Int
    let options: RuntimeOptions
    /// Ranks of this job on this machine (Open MPI's local size; 1 alone).
    let localRanks: Int

    /// MPI when launched by mpirun/srun (or when `requireMPI`), otherwise one local rank.
    init(_ options: RuntimeOptions, requireMPI: Bool = false) throws {
        self.options = options
        communicator = requireMPI || MPIEnvironment.isLaunchedByMPI ? try MPICommunicator() : LocalCommunicator()
        MPIEnvironment.configureWatchdog(timeout: options.timeout)
        MPIEnvironment.debugCollectives = options.debugCollectives
        let cores = ProcessInfo.processInfo.activeProcessorCount
        threads = options.threads ?? (MPIEnvironment.isLaunchedByMPI ? 1 : cores)
        BLAS.setThreadCount(threads)
        let environment = ProcessInfo.processInfo.environment
        let localRanks = Int(environment["OMPI_COMM_WORLD_LOCAL_SIZE"] ?? "") ?? 1
        self.localRanks = localRanks
        let localRank = Int(environment["OMPI_COMM_WORLD_LOCAL_RANK"] ?? "") ?? 0
        if localRank == 0 && localRanks * threads > cores {
            // One warning per node, from that node's first rank.
            FileHandle.standardError.write(Data(("\(communicator.messagePrefix)warning: \(localRanks) ranks × \(threads) threads on "
                + "\(cores) cores oversubscribes this node; use --threads \(max(1, cores / localRanks))\n").utf8))
        }
    }

    /// Prints a line from rank 0 (human-readable output; goes to stderr under --json so stdout ends with the summary).
    func log(_ line: String) {
        guard communicator.isRoot else { return }
        if options.json {
            FileHandle.standardError.write(Data((line + "\n").utf8))
        } else {
            // Flushed at once: the progress lines and notices go out unbuffered on the same
            // stream, and in a file (Slurm's replica-%j.out) a buffered line would come last.
            print(line)
            fflush(stdout)
        }
    }

    /// Rank 0 prints `summary` as one JSON line when --json is given.
    func emit(summary: [String: JSONValue]) {
        guard communicator.isRoot, options.json else { return }
        print(JSONValue.object(summary).serialized())
        fflush(stdout)
    }
}

/// A JSON value with stable key order (sorted), for summaries and metrics lines.
enum JSONValue {
    case number(Double)
    case integer(Int)
    case string(String)
    case bool(Bool)
    case array([JSONValue])
    case object([String: JSONValue])
    case null

    func serialized() -> String {
        switch self {
        case .number(let value):
            guard value.isFinite else { return "null" }
            if value == value.rounded() && abs(value) < 1e15 { return String(format: "%.1f", value) }
            return "\(value)"
        case .integer(let value): return "\(value)"
        case .string(let value): return jsonString(value)
        case .bool(let value): return value ? "true" : "false"
        case .array(let values): return "[" + values.map { $0.serialized() }.joined(separator: ",") + "]"
        case .object(let fields):
            return "{" + fields.keys.sorted().map { jsonString($0) + ":" + fields[$0]!.serialized() }.joined(separator: ",") + "}"
        case .null: return "null"
        }
    }

}
