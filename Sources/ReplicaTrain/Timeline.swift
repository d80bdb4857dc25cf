import Foundation
import ReplicaCore
import ReplicaDistributed

/// `--timeline FILE`: what every rank did when, as Chrome trace-event JSON (Perfetto,
/// chrome://tracing), the format of Horovod's timeline and PyTorch's profiler traces.
///
/// One process a rank, two threads: compute (each micro-step's forward and backward; within the
/// step's last, the data preparation, forward per block or layer (`PhaseMarker`), the loss, and
/// backward cut at every point where it reports finished gradients — per weight for the
/// Transformers —; the optimizer step, evaluation, checkpoint writes) and communication (the
/// start-up broadcast, the step's agreement all-reduce, the final wait for the buckets, the
/// consistency checks, the watchdog's events). Each bucket is an async
/// span from its start to the poll that saw it complete, so buckets in flight at once show as
/// separate rows. Every event carries its step in `args`.
///
/// Clocks: each rank's monotonic clock, aligned to rank 0's at start-up: eight rounds of a barrier
/// followed by an all-gather of every rank's reading right after it; a rank's offset is the median
/// of its readings minus rank 0's, and the spread of those differences is the stated alignment
/// (the file's `metadata.clock_alignment_us`). Rank 0 gathers every rank's events and writes one
/// file at the end. Until then the file holds rank 0's own events, appended after every step in
/// the format's JSON-array form, whose closing bracket may be missing (the trace-event format
/// allows it for exactly this): so a job that fails, even one killed by mpirun after another
/// rank died, leaves what rank 0 had. The watchdog's notices (a wait of over a second in one
/// collective, naming who has not arrived) and its report that ends a job are instant events.
/// With `steps` (`--timeline-steps A:B`) only those steps
/// (counted from 1) are kept.
public final class Timeline {
    public enum Track: Int, Sendable {
        case compute = 1, communication = 2
        var name: String { self == .compute ? "compute" : "communication" }
    }

    struct Event {
        /// The index of its name in `names` (a watchdog event's: in `watchdogNames`).
        let name: Int
        let track: Track
        let start: Double
        let end: Double
        let step: Int
        /// An async span (buckets in flight at once) with this id, else a complete event.
        let asyncID: Int?
        /// An instant event (the watchdog's) with this text in its `args`, else a span.
        var report: String? = nil
    }

    public let path: String
    public let steps: ClosedRange<Int>?
    /// The step now running, counted from 1 (0: before the first).
    public var step = 0
    private var events: [Event] = []
    /// Every name recorded, once: events hold its index. A string kept per event would pin the
    /// heap between the step's temporary tensors, and the process grew by some 300 KB a step.
    private var names: [String] = []
    private var nameIndices: [String: Int] = [:]
    /// The watchdog's event names, by `fatal` (0, 1): constants, since its thread must not read
    /// `names` while the main thread appends to it.
    static let watchdogNames = ["watchdog: long wait", "watchdog: ending the job"]
    /// The watchdog's events, recorded on its thread (under `lock`, as are rank 0's file writes).
    private var watchdogEvents: [Event] = []
    private let lock = NSLock()
    private var nextAsyncID = 0
    /// Rank 0's file while the run goes on, the events written to it so far, and its time origin.
    private var live: FileHandle?
    private var written = 0
    private var wroteNames = false
    private let liveOrigin = Timeline.now()
    /// This rank's clock minus rank 0's, and the alignment's uncertainty, in seconds.
    public private(set) var clockOffset = 0.0
    public private(set) var clockUncertainty = 0.0

    public init(path: String, steps: ClosedRange<Int>?) {
        self.path = path
        self.steps = steps
    }

    /// Seconds on the machine's monotonic clock.
    public static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    public var isRecording: Bool { steps?.contains(step) ?? true }

    /// Records `name` on `track` from `start` to `end` (seconds of `now()`), if this step is kept.
    public func record(_ name: String, _ track: Track, from start: Double, to end: Double) {
        guard isRecording else { return }
        events.append(Event(name: index(of: name), track: track, start: start, end: end, step: step, asyncID: nil))
    }

    /// Records a bucket's collective: an async span on the communication track.
    public func recordCollective(_ name: String, from start: Double, to end: Double) {
        guard isRecording else { return }
        nextAsyncID += 1
        events.append(Event(name: index(of: name), track: .communication, start: start, end: end, step: step, asyncID: nextAsyncID))
    }

    /// `name`'s index in `names`, added if new (on the main thread).
    private func index(of name: String) -> Int {
        if let index = nameIndices[name] { return index }
        names.append(name)
        nameIndices[name] = names.count - 1
        return names.count - 1
    }

    /// Records what the watchdog reports (`MPIEnvironment.observeWatchdog`, on its thread): an
    /// instant event on the communication track, in every step window. Rank 0 writes it to its
    /// file at once, since the report that ends the job is followed by the abort.
    public func recordWatchdog(fatal: Bool, report: String) {
        let time = Self.now()
        let event = Event(name: fatal ? 1 : 0, track: .communication,
                          start: time, end: time, step: step, asyncID: nil, report: report)
        lock.withLock {
            watchdogEvents.append(event)
            live?.write(Data(lines(for: event, rank: 0, origin: liveOrigin - clockOffset).map { $0 + ",\n" }.joined().utf8))
        }
    }

    /// Runs `body` and records it as one span.
    public func span<T>(_ name: String, _ track: Track, _ body: () throws -> T) rethrows -> T {
        let start = Self.now()
        defer { record(name, track, from: start, to: Self.now()) }
        return try body()
    }

    // MARK: - Clocks

    /// Measures this rank's clock offset to rank 0's (see the type's comment). Every rank calls it.
    public func alignClocks(_ communicator: Communicator) throws {
        guard communicator.size > 1 else { return }
        var differences: [[Double]] = Array(repeating: [], count: communicator.size)
        for _ in 0..<8 {
            try communicator.barrier()
            var reading = Self.now().bitPattern
            let record = withUnsafeBytes(of: &reading) { Array($0) }
            let readings = try communicator.allGather(record).map { bytes in
                Double(bitPattern: bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
            }
            for rank in readings.indices { differences[rank].append(readings[rank] - readings[0]) }
        }
        let mine = differences[communicator.rank].sorted()
        clockOffset = mine[mine.count / 2]
        clockUncertainty = differences.map { ($0.max() ?? 0) - ($0.min() ?? 0) }.max() ?? 0
    }

    // MARK: - The file

    /// Rank 0: starts the file in the array form (its own process and track names).
    public func start(rank: Int) throws {
        guard rank == 0 else { return }
        guard FileManager.default.createFile(atPath: path, contents: Data("[\n".utf8)), let handle = FileHandle(forWritingAtPath: path) else {
            throw UserError("\(path): cannot write the timeline there; choose another --timeline FILE")
        }
        handle.seekToEndOfFile()
        live = handle
    }

    /// Rank 0: appends the events recorded since the last call to the file (after every step).
    public func appendOwn() {
        guard let live, written < events.count || !wroteNames else { return }
        let text = (wroteNames ? [] : metadataLines(rank: 0)) + events[written...].flatMap { lines(for: $0, rank: 0, origin: liveOrigin - clockOffset) }
        written = events.count
        wroteNames = true
        lock.withLock { live.write(Data(text.map { $0 + ",\n" }.joined().utf8)) }
    }

    func metadataLines(rank: Int) -> [String] {
        ["{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":\(rank),\"args\":{\"name\":\"rank \(rank)\"}}"]
            + [Track.compute, .communication].map {
                "{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":\(rank),\"tid\":\($0.rawValue),\"args\":{\"name\":\"\($0.name)\"}}"
            }
    }

    /// One event as trace-event JSON (two for an async span), times in µs on rank 0's clock from `origin`.
    func lines(for event: Event, rank: Int, origin: Double) -> [String] {
        func microseconds(_ time: Double) -> String { Self.tenths((time - clockOffset - origin) * 1e6) }
        let name = jsonString(event.report == nil ? names[event.name] : Self.watchdogNames[event.name]), common = "\"pid\":\(rank),\"tid\":\(event.track.rawValue),\"cat\":\"\(event.track.name)\""
        if let report = event.report {
            return ["{\"ph\":\"i\",\"s\":\"p\",\"name\":\(name),\(common),\"ts\":\(microseconds(event.start)),\"args\":{\"step\":\(event.step),\"report\":\(jsonString(report))}}"]
        }
        if let id = event.asyncID {
            return ["{\"ph\":\"b\",\"name\":\(name),\(common),\"id\":\(id),\"ts\":\(microseconds(event.start)),\"args\":{\"step\":\(event.step)}}",
                    "{\"ph\":\"e\",\"name\":\(name),\(common),\"id\":\(id),\"ts\":\(microseconds(event.end))}"]
        }
        return ["{\"ph\":\"X\",\"name\":\(name),\(common),\"ts\":\(microseconds(event.start)),\"dur\":\(Self.tenths(max(0, event.end - event.start) * 1e6)),\"args\":{\"step\":\(event.step)}}"]
    }

    /// `value` with one decimal, as "%.1f" writes it but without `String(format:)`'s cost (rank 0
    /// formats its events at every step).
    static func tenths(_ value: Double) -> String {
        let tenths = Int64((abs(value) * 10).rounded(.toNearestOrEven))
        return (value < 0 && tenths > 0 ? "-" : "") + "\(tenths / 10).\(tenths % 10)"
    }

    /// This rank's events as trace-event JSON objects, one a line, times in µs on rank 0's clock
    /// from `origin`.
    func encodedEvents(rank: Int, origin: Double) -> String {
        let all = events + lock.withLock { watchdogEvents }
        return (metadataLines(rank: rank) + all.flatMap { lines(for: $0, rank: rank, origin: origin) }).joined(separator: ",\n")
    }

    /// Every rank hands rank 0 its events (one all-gather, padded to the longest); rank 0 writes
    /// the merged file. Every rank calls it.
    public func write(_ communicator: Communicator) throws {
        var origin = [events.map(\.start).min().map { $0 - clockOffset } ?? Self.now() - clockOffset]
        var minimum = origin.map { -$0 }
        try communicator.allReduceMaximum(&minimum)
        origin = [-minimum[0]]
        let mine = Array(encodedEvents(rank: communicator.rank, origin: origin[0]).utf8)
        var longest = [Double(mine.count)]
        try communicator.allReduceMaximum(&longest)
        let padded = mine + Array(repeating: UInt8(ascii: " "), count: Int(longest[0]) - mine.count)
        let all = try communicator.allGather(padded)
        guard communicator.isRoot else { return }
        lock.withLock {
            try? live?.close()
            live = nil
        }
        let parts = all.map { String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespaces) }
        try save(parts, ranks: communicator.size)
    }

    private func save(_ parts: [String], ranks: Int) throws {
        let metadata = String(format: "{\"ranks\":%d,\"clock_alignment_us\":%.1f}", ranks, clockUncertainty * 1e6)
        let text = "{\"displayTimeUnit\":\"ms\",\"metadata\":\(metadata),\"traceEvents\":[\n" + parts.filter { !$0.isEmpty }.joined(separator: ",\n") + "\n]}\n"
        do {
            try AtomicDirectory.writeFileAtomically(Data(text.utf8), to: URL(fileURLWithPath: path))
        } catch {
            throw UserError("\(path): cannot write the timeline (\(error))")
        }
    }
}
