import Testing
import MPIWrapper
import ReplicaCore
@testable import ReplicaDistributed

/// Every MPI test lives in this one serialized suite: MPI initialises once per process and the
/// ranks must run the same collectives in the same order. World-size-aware: it also runs under
/// `mpirun -np N` (launch/test.sh).
@Suite(.serialized) struct MPICollectiveTests {
    let communicator: MPICommunicator

    init() throws { communicator = try MPICommunicator() }

    @Test func sumAndMeanAreExactOnRankDependentData() throws {
        let report = try CollectiveSelfTest.run(count: 1000, communicator: communicator)
        #expect(report.sumErrors == 0)
        #expect(report.meanErrors == 0)
        #expect(report.doubleSumErrors == 0)
        #expect(report.nonBlockingErrors == 0)
        #expect(report.broadcastErrors == 0)
        #expect(report.gathered == Array(0..<communicator.size))
    }

    @Test func messagesLargerThanTheChunkGoInSeveralCalls() throws {
        let saved = MPIEnvironment.maximumChunkElements
        MPIEnvironment.maximumChunkElements = 1000
        defer { MPIEnvironment.maximumChunkElements = saved }
        #expect(MPIEnvironment.maximumChunkElements == 1000)
        // 2,500 elements: two full chunks and a partial one, blocking and non-blocking.
        let report = try CollectiveSelfTest.run(count: 2500, communicator: communicator)
        #expect(report.sumErrors == 0 && report.meanErrors == 0 && report.doubleSumErrors == 0)
        #expect(report.nonBlockingErrors == 0)
        let p = Float(communicator.size)
        #expect(report.sumSample == [1, 2, 3, 4].map { p * (p + 1) / 2 * $0 })
    }

    @Test func chunkLimitIsClampedToMPIsIntRange() {
        let saved = MPIEnvironment.maximumChunkElements
        defer { MPIEnvironment.maximumChunkElements = saved }
        MPIEnvironment.maximumChunkElements = 0
        #expect(MPIEnvironment.maximumChunkElements == Int(Int32.max))
        MPIEnvironment.maximumChunkElements = Int(Int32.max) + 10
        #expect(MPIEnvironment.maximumChunkElements == Int(Int32.max))
    }

    @Test func nonBlockingAllReduceCompletesUnderTestPolling() throws {
        let tensor = Tensor(zeros: [50_000])
        tensor.fill(Float(communicator.rank + 1))
        let pending = try communicator.startAllReduce(tensor.buffer, .mean)
        var polls = 0
        while try !pending.test() { polls += 1 }
        try pending.wait()  // a second completion is harmless
        let p = Float(communicator.size)
        #expect(tensor.scalars.allSatisfy { $0 == (p + 1) / 2 })
    }

    /// Unequal pieces (rank r gets 7 + r elements; the last rank's piece is empty on 2 ranks'
    /// split below), so the in-place rule (MPI puts the sum at the buffer's start) is exercised.
    static func pieces(size: Int) -> [Int] { (0..<size).map { $0 == size - 1 && size == 2 ? 0 : 7 + $0 } }

    @Test(arguments: [false, true], [false, true]) func reduceScatterLeavesEachRanksSumAtItsOffset(polled: Bool, ring: Bool) throws {
        let p = communicator.size, counts = Self.pieces(size: p), total = counts.reduce(0, +)
        guard total > 0 else { return }
        let tensor = Tensor(zeros: [total])
        for i in 0..<total { tensor[i] = Float(communicator.rank + 1) * Float(i + 1) }
        let pending = try communicator.startReduceScatter(tensor.buffer, counts: counts, schedule: CollectiveSchedule(ring: ring))
        if polled { while try !pending.test() {} } else { try pending.wait() }
        let offset = pieceOffset(of: communicator.rank, in: counts)
        let ranksSum = Float(p * (p + 1) / 2)
        let mine = (offset..<(offset + counts[communicator.rank])).map { tensor[$0] }
        #expect(mine == (offset..<(offset + counts[communicator.rank])).map { ranksSum * Float($0 + 1) })
    }

    /// The 16-bit reduce-scatter: each rank's piece of exact small sums (integers below 256 are
    /// exact in both formats), at its offset, in unequal pieces.
    @Test(arguments: HalfPrecision.allCases, [false, true]) func sixteenBitReduceScatterLeavesEachRanksSumAtItsOffset(format: HalfPrecision, ring: Bool) throws {
        let p = communicator.size, counts = Self.pieces(size: p), total = counts.reduce(0, +)
        guard total > 0 else { return }
        let values = (0..<total).map { Float((communicator.rank + 1) * ($0 % 8 + 1)) }
        var halves = [UInt16](repeating: 0, count: total)
        values.withUnsafeBufferPointer { v in halves.withUnsafeMutableBufferPointer { format.compress(v, into: $0) } }
        let pending = try halves.withUnsafeMutableBufferPointer {
            try communicator.startReduceScatter($0, counts: counts, summingAs: format, schedule: CollectiveSchedule(ring: ring))
        }
        try pending.wait()
        var sums = [Float](repeating: 0, count: total)
        halves.withUnsafeBufferPointer { h in sums.withUnsafeMutableBufferPointer { format.decompress(h, into: $0) } }
        let offset = pieceOffset(of: communicator.rank, in: counts), piece = offset..<(offset + counts[communicator.rank])
        #expect(Array(sums[piece]) == piece.map { Float(p * (p + 1) / 2 * ($0 % 8 + 1)) }, "\(format)")
    }

    /// The 16-bit all-reduce on rank-dependent values whose sums are exact in both formats (small
    /// multiples of 1/8), so that any order of addition gives the same bits; and one value per
    /// rank that must round (1 + 2^-9 in bf16 is a tie, kept at 1 by ties-to-even, on every rank).
    @Test(arguments: HalfPrecision.allCases) func sixteenBitAllReduceSumsInFloat32(format: HalfPrecision) throws {
        let count = 3000, p = communicator.size, r = communicator.rank
        var values = (0..<count).map { Float(($0 % 16) + r) / 8 }
        var halves = [UInt16](repeating: 0, count: count)
        values.withUnsafeBufferPointer { v in halves.withUnsafeMutableBufferPointer { format.compress(v, into: $0) } }
        let pending = try halves.withUnsafeMutableBufferPointer { try communicator.startAllReduce($0, summingAs: format) }
        while try !pending.test() {}
        halves.withUnsafeBufferPointer { h in values.withUnsafeMutableBufferPointer { format.decompress(h, into: $0) } }
        let expected = (0..<count).map { i in Float(p * (i % 16) + p * (p - 1) / 2) / 8 }
        #expect(values == expected, "\(format): \(zip(values, expected).filter { $0 != $1 }.prefix(3))")
        let gathered = try communicator.allGather(halves.withUnsafeBytes { Array($0) })
        #expect(gathered.allSatisfy { $0 == gathered[0] }, "every rank holds the same bits")
    }

    static let schedules = [CollectiveSchedule.library, CollectiveSchedule(ring: true), CollectiveSchedule(hierarchical: true),
                            CollectiveSchedule(ring: true, hierarchical: true)]

    /// Every schedule (Open MPI's, the ring, each with the node-local stages) with five buckets in
    /// flight at once, fewer elements than ranks among them, polled newest first so that they
    /// complete out of order; float32 and bf16, on values whose sums are exact in any order
    /// (integers below 256), so that every schedule must give the same bits.
    @Test(arguments: schedules) func everyScheduleSumsBucketsInFlightAtOnce(schedule: CollectiveSchedule) throws {
        let p = communicator.size, r = communicator.rank
        let sizes = [10_007, 1, 0, 4096, 2]
        let tensors = sizes.map { Tensor(zeros: [max($0, 1)]) }
        for (tensor, size) in zip(tensors, sizes) { for i in 0..<size { tensor[i] = Float((r + 1) * (i % 13 + 1)) } }
        // Buffers of their own: a collective in flight holds its pointer past any closure.
        func bf16(_ values: [Float]) -> UnsafeMutableBufferPointer<UInt16> {
            let halves = UnsafeMutableBufferPointer<UInt16>.allocate(capacity: values.count)
            values.withUnsafeBufferPointer { HalfPrecision.bf16.compress($0, into: halves) }
            return halves
        }
        let halves = sizes.map { size in bf16((0..<size).map { Float((r + 1) * ($0 % 8 + 1)) }) }
        defer { halves.forEach { $0.deallocate() } }
        var pending = try zip(tensors, sizes).map { try communicator.startAllReduce(UnsafeMutableBufferPointer(rebasing: $0.buffer[0..<$1]), .sum, schedule: schedule) }
        for index in halves.indices {
            pending.append(try communicator.startAllReduce(halves[index], summingAs: .bf16, schedule: schedule))
        }
        var done = Set<Int>()
        while done.count < pending.count {
            for index in pending.indices.reversed() where !done.contains(index) { if try pending[index].test() { done.insert(index) } }
        }
        let ranks = Float(p * (p + 1) / 2)
        for (tensor, size) in zip(tensors, sizes) {
            #expect((0..<size).allSatisfy { tensor[$0] == ranks * Float($0 % 13 + 1) }, "\(schedule): \(size) floats")
        }
        for (values, size) in zip(halves, sizes) {
            var sums = [Float](repeating: 0, count: size)
            sums.withUnsafeMutableBufferPointer { HalfPrecision.bf16.decompress(UnsafeBufferPointer(values), into: $0) }
            #expect(sums == (0..<size).map { ranks * Float($0 % 8 + 1) }, "\(schedule): \(size) bf16 values")
        }
    }

    @Test func allGatherFillsEveryRanksPieceEverywhere() throws {
        let p = communicator.size, counts = (0..<p).map { 5 + 3 * $0 }, total = counts.reduce(0, +)
        let tensor = Tensor(zeros: [total])
        tensor.fill(-1)
        let offset = pieceOffset(of: communicator.rank, in: counts)
        for i in offset..<(offset + counts[communicator.rank]) { tensor[i] = Float(communicator.rank * 1000 + i) }
        try communicator.startAllGather(tensor.buffer, counts: counts).wait()
        var expected: [Float] = []
        for r in 0..<p {
            let start = pieceOffset(of: r, in: counts)
            expected += (start..<(start + counts[r])).map { Float(r * 1000 + $0) }
        }
        #expect(tensor.scalars == expected)
    }

    @Test func allGatherRejectsRecordsOfDifferentLengths() throws {
        // Same length everywhere: fine. (Different lengths need two ranks to disagree; the
        // length exchange is what makes that an error instead of a truncation.)
        let records = try communicator.allGather([UInt8(communicator.rank), 7, 7])
        #expect(records.count == communicator.size)
        #expect(records.enumerated().allSatisfy { $0.element == [UInt8($0.offset), 7, 7] })
    }

    @Test func broadcastOverwritesNonRootBuffers() throws {
        var bytes = [UInt8](repeating: UInt8(communicator.rank), count: 33)
        if communicator.rank == 0 { bytes = (0..<33).map { UInt8($0) } }
        try communicator.broadcast(&bytes, from: 0)
        #expect(bytes == (0..<33).map { UInt8($0) })
    }

    @Test func debugCollectivesNamesEveryRanksCallWhenTheyDiffer() throws {
        guard communicator.size > 1 else { return }   // needs mpirun -np 2 or more (launch/test.sh)
        MPIEnvironment.debugCollectives = true
        defer { MPIEnvironment.debugCollectives = false }
        // Rank 1 sums 4 floats where the others sum 3: an error on every rank, not corruption.
        let tensor = Tensor(zeros: [communicator.rank == 1 ? 4 : 3])
        #expect {
            try communicator.allReduce(tensor)
        } throws: { error in
            let text = "\(error)"
            return text.contains("collective mismatch") && text.contains("rank 1: #") && text.contains("of 4")
                && text.contains("rank 0: #") && text.contains("of 3")
        }
        // Matching calls still pass the check, and the ranks are still in step afterwards.
        let same = Tensor(zeros: [5])
        same.fill(1)
        try communicator.allReduce(same)
        #expect(same.buffer.allSatisfy { $0 == Float(communicator.size) })
    }
}

@Suite struct LocalCommunicatorTests {
    @Test func oneRankCollectivesAreTheIdentity() throws {
        let local = LocalCommunicator()
        let report = try CollectiveSelfTest.run(count: 100, communicator: local)
        #expect(report.sumErrors == 0 && report.meanErrors == 0 && report.broadcastErrors == 0)
        #expect(report.gathered == [0])
    }

    @Test func busBandwidthFollowsTheRingFormula() {
        #expect(AllReduceBenchmark.busBandwidth(bytes: 1_000_000_000, seconds: 1, ranks: 2) == 1)
        #expect(AllReduceBenchmark.busBandwidth(bytes: 1_000_000_000, seconds: 1, ranks: 4) == 1.5)
        #expect(AllReduceBenchmark.busBandwidth(bytes: 1_000_000_000, seconds: 1, ranks: 1) == 0)
    }
}
