#if canImport(Glibc)
import Glibc
#endif

/// World size 1 with no MPI at all: every collective is the identity.
public final class LocalCommunicator: Communicator {
    public let rank = 0
    public let size = 1

    public init() {}

    public var nodeLayout: NodeLayout { NodeLayout(rankInNode: 0, ranksInNode: 1, nodes: 1) }

    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Float>, _ operation: ReduceOperation) throws {}
    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Double>, _ operation: ReduceOperation) throws {}
    public func allReduceMaximum(_ buffer: UnsafeMutableBufferPointer<Double>) throws {}
    public func startAllReduce(_ buffer: UnsafeMutableBufferPointer<Float>, _ operation: ReduceOperation, schedule: CollectiveSchedule) throws -> PendingCollective {
        CompletedCollective()
    }
    public func startAllReduce(_ buffer: UnsafeMutableBufferPointer<UInt16>, summingAs format: HalfPrecision, schedule: CollectiveSchedule) throws -> PendingCollective {
        CompletedCollective()
    }
    public func startReduceScatter(_ buffer: UnsafeMutableBufferPointer<UInt16>, counts: [Int], summingAs format: HalfPrecision,
                                   schedule: CollectiveSchedule) throws -> PendingCollective {
        precondition(counts == [buffer.count], "reduce-scatter counts \(counts) do not split \(buffer.count) elements over 1 rank")
        return CompletedCollective()
    }
    public func startReduceScatter(_ buffer: UnsafeMutableBufferPointer<Float>, counts: [Int], schedule: CollectiveSchedule) throws -> PendingCollective {
        precondition(counts == [buffer.count], "reduce-scatter counts \(counts) do not split \(buffer.count) elements over 1 rank")
        return CompletedCollective()
    }
    public func startAllGather(_ buffer: UnsafeMutableBufferPointer<Float>, counts: [Int]) throws -> PendingCollective {
        precondition(counts == [buffer.count], "all-gather counts \(counts) do not split \(buffer.count) elements over 1 rank")
        return CompletedCollective()
    }
    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, from root: Int) throws {
        precondition(root == 0, "broadcast root \(root) out of range for 1 rank")
    }
    public func barrier() throws {}
    public func allGather(_ record: [UInt8]) throws -> [[UInt8]] { [record] }

    public func abort(_ message: String, exitCode: Int32) -> Never {
        fputs("\(messagePrefix)\(message)\n", stderr)
        exit(exitCode)
    }
}

/// A collective with nothing left to do.
final class CompletedCollective: PendingCollective {
    func test() throws -> Bool { true }
    func wait() throws {}
}
