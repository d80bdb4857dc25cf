import Foundation
import MPIWrapper

/// MPI, initialised once per process (thread-safe) on first use; never finalised by tests.
public enum MPIEnvironment {
    /// The thread level MPI provided: 0 single, 1 funneled, 2 serialized, 3 multiple.
    public static func initialize() throws -> Int {
        var provided: Int32 = 0
        try check(mpiw_init(&provided), "MPI_Init_thread")
        return Int(provided)
    }

    /// Finalises MPI if it was initialised; idempotent. Call once at the end of `main`.
    public static func finalize() {
        _ = mpiw_finalize()
    }

    public static var isInitialized: Bool { mpiw_is_initialized() != 0 }

    /// True when this process was started by a launcher (mpirun, srun) as one rank of a job.
    public static var isLaunchedByMPI: Bool {
        let environment = ProcessInfo.processInfo.environment
        return ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "SLURM_PROCID"].contains { environment[$0] != nil }
    }

    /// MPI's wall clock, in seconds.
    public static var wallTime: Double { mpiw_wtime() }

    /// The largest element count one MPI call carries (INT_MAX unless a test lowered it).
    public static var maximumChunkElements: Int {
        get { Int(mpiw_max_chunk()) }
        set { mpiw_set_max_chunk(newValue) }
    }

    /// Under `--debug-collectives`: before every collective, the ranks compare (sequence number,
    /// operation, element count) in one small all-reduce, and a mismatch is an error naming the
    /// ranks and their operations instead of a hang or silent corruption.
    nonisolated(unsafe) public static var debugCollectives = false

    /// The watchdog's limits (seconds): a collective waiting longer than `timeout` ends the job
    /// with a report of the ranks that have not arrived (0: never); a rank silent for `silence`
    /// seconds while this one waits for it counts as dead.
    public static func configureWatchdog(timeout: Double, silence: Double = 10) {
        mpiw_watchdog_configure(timeout, silence)
    }

    /// Hands `observer` what the watchdog reports, on the watchdog's thread (nil: nobody): a
    /// notice (`fatal` false) when this rank has waited over a second in one collective, naming
    /// the ranks that have not arrived, and the report that ends the job, just before the abort.
    /// The `--timeline`'s watchdog events.
    public static func observeWatchdog(_ observer: (@Sendable (_ fatal: Bool, _ report: String) -> Void)?) {
        watchdogLock.withLock { watchdogObserver = observer }
        mpiw_watchdog_observe(observer == nil ? nil : { fatal, report in
            let text = report.map { String(cString: $0) } ?? ""
            MPIEnvironment.watchdogLock.withLock { MPIEnvironment.watchdogObserver }?(fatal != 0, text)
        })
    }

    private static let watchdogLock = NSLock()
    nonisolated(unsafe) private static var watchdogObserver: (@Sendable (Bool, String) -> Void)?

    /// Under mpirun or srun, runs this program again as a supervised worker and returns the exit
    /// status this (supervising) process must end with; nil in the worker, or when not launched.
    /// A worker killed by a signal then ends the job with status 2 and a message naming its rank.
    public static func superviseIfLaunched() -> Int32? {
        let environment = ProcessInfo.processInfo.environment
        guard isLaunchedByMPI, environment["REPLICA_NO_SUPERVISOR"] == nil else { return nil }
        let rank = ["OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"].lazy.compactMap { environment[$0] }.first ?? "?"
        let status = mpiw_supervise(CommandLine.unsafeArgv, "rank \(rank)")
        return status < 0 ? nil : status
    }

    static func check(_ code: Int32, _ operation: @autoclosure () -> String, rank: Int? = nil, size: Int? = nil) throws {
        guard code != 0 else { return }
        var message = [CChar](repeating: 0, count: 512)
        mpiw_error_string(code, &message, message.count)
        let text = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let prefix = rank.map { "[rank \($0)/\(size ?? 0)] " } ?? ""
        throw DistributedError("\(prefix)\(operation()) failed: \(text) (MPI error \(code))")
    }
}

/// The world communicator of an MPI job.
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int
    /// The thread level MPI provided (3 = MPI_THREAD_MULTIPLE).
    public let threadLevel: Int
    public let nodeLayout: NodeLayout

    public init() throws {
        threadLevel = try MPIEnvironment.initialize()
        var rank: Int32 = 0
        var size: Int32 = 0
        try MPIEnvironment.check(mpiw_rank(&rank), "MPI_Comm_rank")
        try MPIEnvironment.check(mpiw_size(&size), "MPI_Comm_size")
        self.rank = Int(rank)
        self.size = Int(size)
        var rankInNode: Int32 = 0, ranksInNode: Int32 = 1, nodes: Int32 = 1
        mpiw_node_layout(&rankInNode, &ranksInNode, &nodes)
        nodeLayout = NodeLayout(rankInNode: Int(rankInNode), ranksInNode: Int(ranksInNode), nodes: Int(nodes))
    }

    private func check(_ code: Int32, _ operation: @autoclosure () -> String) throws {
        try MPIEnvironment.check(code, operation(), rank: rank, size: size)
    }

    /// Numbers the collective, compares fingerprints under `--debug-collectives`, and tells the
    /// watchdog while `body` blocks.
    private func collective<T>(_ operation: Int32, count: Int, _ body: (Int64) throws -> T) throws -> T {
        let sequence = mpiw_next_sequence()
        mpiw_watch_enter(sequence, operation, Int64(count))
        defer { mpiw_watch_leave() }
        if MPIEnvironment.debugCollectives { try compareFingerprints(sequence: sequence, operation: operation, count: count) }
        return try body(sequence)
    }

    /// One all-reduce of the maximum of (sequence, operation, count) and of their negations: equal
    /// everywhere unless some rank called another collective. Then every rank gathers them all
    /// and throws the same error, naming each rank's call.
    func compareFingerprints(sequence: Int64, operation: Int32, count: Int) throws {
        let mine = [Double(sequence), Double(operation), Double(count)]
        var extremes = mine + mine.map { -$0 }
        try check(mpiw_allreduce_max_f64(&extremes, 6), "fingerprint all-reduce of collective #\(sequence)")
        guard (0..<3).contains(where: { extremes[$0] != -extremes[$0 + 3] }) else { return }
        var record = [Int64(sequence), Int64(operation), Int64(count)]
        var gathered = [Int64](repeating: 0, count: 3 * size)
        try gathered.withUnsafeMutableBytes { output in
            try check(mpiw_allgather(&record, 24, output.baseAddress), "all-gather of collective fingerprints")
        }
        let calls = (0..<size).map { r in
            "rank \(r): #\(gathered[3 * r]) \(String(cString: mpiw_operation_name(Int32(gathered[3 * r + 1])))) of \(gathered[3 * r + 2])"
        }
        throw DistributedError("\(messagePrefix)collective mismatch: the ranks called different collectives (\(calls.joined(separator: "; ")))")
    }

    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Float>, _ operation: ReduceOperation) throws {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        try collective(Int32(MPIW_OP_ALLREDUCE_F32), count: buffer.count) { _ in
            try check(mpiw_allreduce_sum_f32(base, buffer.count), "all-reduce of \(buffer.count) floats")
        }
        if operation == .mean { scale(buffer, by: 1 / Float(size)) }
    }

    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Double>, _ operation: ReduceOperation) throws {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        try collective(Int32(MPIW_OP_ALLREDUCE_F64), count: buffer.count) { _ in
            try check(mpiw_allreduce_sum_f64(base, buffer.count), "all-reduce of \(buffer.count) doubles")
        }
        if operation == .mean {
            let factor = 1 / Double(size)
            for i in buffer.indices { buffer[i] *= factor }
        }
    }

    public func allReduceMaximum(_ buffer: UnsafeMutableBufferPointer<Double>) throws {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        try collective(Int32(MPIW_OP_ALLREDUCE_MAX_F64), count: buffer.count) { _ in
            try check(mpiw_allreduce_max_f64(base, buffer.count), "maximum all-reduce of \(buffer.count) doubles")
        }
    }

    /// Starts the non-blocking collective `operation` on `buffer` with `start` (the C call, given
    /// the buffer and the request to fill); `completion` runs once when it is complete.
    private func startNonBlocking<T>(_ buffer: UnsafeMutableBufferPointer<T>, _ operation: Int32, _ description: String,
                                     start: (UnsafeMutablePointer<T>, UnsafeMutablePointer<mpiw_request?>) -> Int32,
                                     completion: @escaping (UnsafeMutablePointer<T>) -> Void = { _ in }) throws -> PendingCollective {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return CompletedCollective() }
        var request: mpiw_request? = nil
        let sequence = try collective(operation, count: buffer.count) { sequence throws -> Int64 in
            try check(start(base, &request), "start of \(description)")
            return sequence
        }
        return MPIPendingCollective(request: request, sequence: sequence, operation: operation, count: buffer.count,
                                    communicator: self) { completion(base) }
    }

    /// A reduce-scatter through `start`: MPI puts this rank's sum at the start of the buffer; it
    /// belongs at the piece's offset (Replica's ring leaves it there already).
    private func startReduceScatter<T>(_ buffer: UnsafeMutableBufferPointer<T>, counts: [Int], _ operation: Int32, _ description: String,
                                       schedule: CollectiveSchedule,
                                       start: (UnsafeMutablePointer<T>, UnsafeMutablePointer<mpiw_request?>) -> Int32) throws -> PendingCollective {
        precondition(counts.count == size && counts.reduce(0, +) == buffer.count,
                     "reduce-scatter counts \(counts) do not split \(buffer.count) elements over \(size) ranks")
        let offset = pieceOffset(of: rank, in: counts), length = counts[rank]
        return try startNonBlocking(buffer, operation, description, start: start) { base in
            if !schedule.ring && offset > 0 && length > 0 { (base + offset).update(from: base, count: length) }
        }
    }

    /// Starts the all-reduce of `count` elements in `format` (0: float32) at `base` as `schedule`
    /// says: Replica's hierarchy or ring, else `library` (Open MPI's own).
    private func startScheduled(_ base: UnsafeMutableRawPointer, count: Int, format: Int32, schedule: CollectiveSchedule,
                                request: UnsafeMutablePointer<mpiw_request?>, library: () -> Int32) -> Int32 {
        if schedule.hierarchical { return mpiw_hierarchical_iallreduce(base, count, format, schedule.ring ? 1 : 0, request) }
        if schedule.ring { return mpiw_ring_iallreduce(base, count, format, request) }
        return library()
    }

    public func startAllReduce(_ buffer: UnsafeMutableBufferPointer<Float>, _ operation: ReduceOperation, schedule: CollectiveSchedule) throws -> PendingCollective {
        let factor: Float? = operation == .mean ? 1 / Float(size) : nil
        return try startNonBlocking(buffer, Int32(MPIW_OP_IALLREDUCE_F32), "\(schedule) all-reduce of \(buffer.count) floats",
                                    start: { base, request in
            startScheduled(base, count: buffer.count, format: 0, schedule: schedule, request: request) { mpiw_iallreduce_sum_f32(base, buffer.count, request) }
        }) { _ in
            if let factor { scale(buffer, by: factor) }
        }
    }

    public func startAllReduce(_ buffer: UnsafeMutableBufferPointer<UInt16>, summingAs format: HalfPrecision, schedule: CollectiveSchedule) throws -> PendingCollective {
        try startNonBlocking(buffer, Int32(MPIW_OP_IALLREDUCE_16), "16-bit \(schedule) all-reduce of \(buffer.count) values") { base, request in
            startScheduled(base, count: buffer.count, format: format.format, schedule: schedule, request: request) {
                mpiw_iallreduce_sum16(base, buffer.count, format.format, request)
            }
        }
    }

    public func startReduceScatter(_ buffer: UnsafeMutableBufferPointer<UInt16>, counts: [Int], summingAs format: HalfPrecision,
                                   schedule: CollectiveSchedule) throws -> PendingCollective {
        try startReduceScatter(buffer, counts: counts, Int32(MPIW_OP_IREDUCE_SCATTER_16), "16-bit \(schedule.ring ? "ring " : "")reduce-scatter of \(buffer.count) values",
                               schedule: schedule) {
            schedule.ring ? mpiw_ring_ireduce_scatter($0, counts, format.format, $1) : mpiw_ireduce_scatter_sum16($0, counts, format.format, $1)
        }
    }

    public func startReduceScatter(_ buffer: UnsafeMutableBufferPointer<Float>, counts: [Int], schedule: CollectiveSchedule) throws -> PendingCollective {
        try startReduceScatter(buffer, counts: counts, Int32(MPIW_OP_IREDUCE_SCATTER_F32), "\(schedule.ring ? "ring " : "")reduce-scatter of \(buffer.count) floats",
                               schedule: schedule) {
            schedule.ring ? mpiw_ring_ireduce_scatter($0, counts, 0, $1) : mpiw_ireduce_scatter_sum_f32($0, counts, $1)
        }
    }

    public func startAllGather(_ buffer: UnsafeMutableBufferPointer<Float>, counts: [Int]) throws -> PendingCollective {
        precondition(counts.count == size && counts.reduce(0, +) == buffer.count,
                     "all-gather counts \(counts) do not split \(buffer.count) elements over \(size) ranks")
        return try startNonBlocking(buffer, Int32(MPIW_OP_IALLGATHER_F32), "all-gather of \(buffer.count) floats") {
            mpiw_iallgather_f32($0, counts, $1)
        }
    }

    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, from root: Int) throws {
        precondition(root >= 0 && root < size, "broadcast root \(root) out of range for \(size) ranks")
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        try collective(Int32(MPIW_OP_BROADCAST), count: buffer.count) { _ in
            try check(mpiw_broadcast(base, buffer.count, Int32(root)), "broadcast of \(buffer.count) bytes from rank \(root)")
        }
    }

    public func barrier() throws {
        try collective(Int32(MPIW_OP_BARRIER), count: 0) { _ in try check(mpiw_barrier(), "barrier") }
    }

    public func allGather(_ record: [UInt8]) throws -> [[UInt8]] {
        // Lengths first, so a rank with a different record length is an error, not corruption.
        var length = UInt64(record.count)
        var lengths = [UInt64](repeating: 0, count: size)
        try collective(Int32(MPIW_OP_ALLGATHER), count: 8) { _ in
            try lengths.withUnsafeMutableBytes { output in
                try check(mpiw_allgather(&length, 8, output.baseAddress), "all-gather of record lengths")
            }
        }
        guard Set(lengths).count == 1 else {
            throw DistributedError("\(messagePrefix)all-gather records differ in length across ranks: \(lengths)")
        }
        var output = [UInt8](repeating: 0, count: record.count * size)
        try collective(Int32(MPIW_OP_ALLGATHER), count: record.count) { _ in
            try record.withUnsafeBytes { input in
                try output.withUnsafeMutableBytes { out in
                    try check(mpiw_allgather(input.baseAddress, record.count, out.baseAddress), "all-gather of \(record.count)-byte records")
                }
            }
        }
        return (0..<size).map { Array(output[($0 * record.count)..<(($0 + 1) * record.count)]) }
    }

    public func abort(_ message: String, exitCode: Int32) -> Never {
        fputs("\(messagePrefix)\(message)\n", stderr)
        fflush(stderr)
        mpiw_abort(exitCode)
        exit(exitCode)
    }
}

/// A non-blocking collective over one or more MPI requests; `completion` runs once, when it is done.
final class MPIPendingCollective: PendingCollective {
    private var request: mpiw_request?
    /// The collective's number, operation and element count, for the watchdog while `wait()` blocks.
    private let sequence: Int64
    private let operation: Int32
    private let count: Int
    private let communicator: MPICommunicator
    private let completion: () -> Void
    private var finished = false

    init(request: mpiw_request?, sequence: Int64, operation: Int32, count: Int, communicator: MPICommunicator,
         completion: @escaping () -> Void) {
        self.request = request
        self.sequence = sequence
        self.operation = operation
        self.count = count
        self.communicator = communicator
        self.completion = completion
    }

    private var name: String { String(cString: mpiw_operation_name(operation)) }

    func test() throws -> Bool {
        if finished { return true }
        var done: Int32 = 0
        try MPIEnvironment.check(mpiw_test(&request, &done), "test of \(name)",
                                 rank: communicator.rank, size: communicator.size)
        if done != 0 { complete() }
        return finished
    }

    func wait() throws {
        if finished { return }
        mpiw_watch_enter(sequence, operation, Int64(count))
        defer { mpiw_watch_leave() }
        try MPIEnvironment.check(mpiw_wait(&request), "wait for \(name)",
                                 rank: communicator.rank, size: communicator.size)
        complete()
    }

    private func complete() {
        finished = true
        completion()
    }

    deinit {
        // A request dropped unfinished would leave MPI writing into freed memory.
        if !finished { _ = mpiw_wait(&request) }
    }
}

/// Multiplies every element by `factor`.
func scale(_ buffer: UnsafeMutableBufferPointer<Float>, by factor: Float) {
    for i in buffer.indices { buffer[i] *= factor }
}
