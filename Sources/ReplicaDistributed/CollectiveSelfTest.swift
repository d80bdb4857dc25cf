import ReplicaCore

/// Runs every collective on rank-dependent data whose exact result is known, and reports what
/// each rank received (`replica selftest collectives`, used by the mpirun integration tests).
public enum CollectiveSelfTest {
    public struct Report: Codable, Sendable {
        public var rank: Int
        public var size: Int
        public var count: Int
        public var maxChunkElements: Int
        /// Elements that differ from the exact expected value, per operation.
        public var sumErrors: Int
        public var meanErrors: Int
        public var doubleSumErrors: Int
        public var nonBlockingErrors: Int
        public var broadcastErrors: Int
        /// The first elements of the summed buffer, for the test to check itself.
        public var sumSample: [Float]
        public var broadcastSample: [Float]
        /// Rank numbers gathered from every rank, in rank order.
        public var gathered: [Int]
    }

    /// Rank r's value at index i: (r + 1) · (i mod 17 + 1). The sum over p ranks is p(p+1)/2 · (i mod 17 + 1).
    public static func contribution(rank: Int, index: Int) -> Float { Float(rank + 1) * Float(index % 17 + 1) }
    public static func expectedSum(size: Int, index: Int) -> Float { Float(size * (size + 1) / 2) * Float(index % 17 + 1) }
    /// What the root broadcasts at index i.
    public static func broadcastValue(index: Int) -> Float { Float(index % 1000) * 3 + 7 }

    public static func run(count: Int, communicator: Communicator) throws -> Report {
        let rank = communicator.rank, size = communicator.size
        func filled() -> Tensor {
            let tensor = Tensor(zeros: [count])
            for i in 0..<count { tensor[i] = contribution(rank: rank, index: i) }
            return tensor
        }
        func errors(_ tensor: Tensor, _ expected: (Int) -> Float) -> Int {
            (0..<count).reduce(0) { $0 + (tensor[$1] == expected($1) ? 0 : 1) }
        }

        let summed = filled()
        try communicator.allReduce(summed, .sum)
        let sumErrors = errors(summed) { expectedSum(size: size, index: $0) }

        let averaged = filled()
        try communicator.allReduce(averaged, .mean)
        let meanErrors = errors(averaged) { expectedSum(size: size, index: $0) * (1 / Float(size)) }

        var doubles = (0..<count).map { Double(contribution(rank: rank, index: $0)) }
        try communicator.allReduce(&doubles, .sum)
        let doubleSumErrors = (0..<count).reduce(0) { $0 + (doubles[$1] == Double(expectedSum(size: size, index: $1)) ? 0 : 1) }

        let started = filled()
        let pending = try communicator.startAllReduce(started.buffer, .sum)
        while try !pending.test() {}
        try pending.wait()
        let nonBlockingErrors = errors(started) { expectedSum(size: size, index: $0) }

        let root = size - 1
        let broadcasted = Tensor(zeros: [count])
        if rank == root { for i in 0..<count { broadcasted[i] = broadcastValue(index: i) } }
        try communicator.broadcast(broadcasted, from: root)
        let broadcastErrors = errors(broadcasted) { broadcastValue(index: $0) }

        var record = [UInt8](repeating: 0, count: 8)
        withUnsafeBytes(of: UInt64(rank).littleEndian) { record = Array($0) }
        let gathered = try communicator.allGather(record).map { bytes in
            Int(bytes.enumerated().reduce(UInt64(0)) { $0 | (UInt64($1.element) << (8 * UInt64($1.offset))) })
        }
        try communicator.barrier()

        return Report(
            rank: rank, size: size, count: count,
            maxChunkElements: MPIEnvironment.isInitialized ? MPIEnvironment.maximumChunkElements : count,
            sumErrors: sumErrors, meanErrors: meanErrors, doubleSumErrors: doubleSumErrors,
            nonBlockingErrors: nonBlockingErrors, broadcastErrors: broadcastErrors,
            sumSample: Array(summed.scalars.prefix(4)), broadcastSample: Array(broadcasted.scalars.prefix(4)),
            gathered: gathered)
    }
}
