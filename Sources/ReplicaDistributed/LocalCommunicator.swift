#if canImport(Glibc)
import Glibc
#endif

/// World size 1 with no MPI at all: every collective is the identity.
public final class LocalCommunicator: Communicator {
    public let rank = 0
    public let size = 1

    public init() {}

    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Float>, _ operation: ReduceOperation) throws {}
    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Double>, _ operation: ReduceOperation) throws {}
    public func allReduceMaximum(_ buffer: UnsafeMutableBufferPointer<Double>) throws {}
    public func startAllReduce(_ buffer: UnsafeMutableBufferPointer<Float>, _ operation: ReduceOperation) throws -> PendingAllReduce {
        CompletedAllReduce()
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

/// An all-reduce with nothing left to do.
final class CompletedAllReduce: PendingAllReduce {
    func test() throws -> Bool { true }
    func wait() throws {}
}
