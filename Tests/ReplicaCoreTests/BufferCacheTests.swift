import Testing
@testable import ReplicaCore

/// Large tensor buffers are kept for reuse: sizes round up to one of four classes a power of two
/// (never more than 25% above the request), a freed buffer serves the next request of its class,
/// the cache never holds more than its limit, and a reused buffer asked for zeroed is zeroed.
/// Other suites allocate at the same time, so the tests use class sizes no model here asks for
/// (160 MiB and up, a class a test; the buffers are never touched, so they cost address space, not memory).
@Suite(.serialized) struct BufferCacheTests {
    @Test func sizeClassesRoundUpByAtMostAQuarter() {
        for bytes in [BufferCache.minimumBytes, BufferCache.minimumBytes + 1, 3_000_000, 48 << 20, (48 << 20) + 4, 1 << 31, (1 << 31) + 1] {
            let allocated = BufferCache.allocationBytes(for: bytes)
            #expect(allocated >= bytes && Double(allocated) <= 1.25 * Double(bytes), "\(bytes) -> \(allocated)")
            #expect(allocated % 64 == 0, "\(bytes) -> \(allocated)")
            #expect(BufferCache.allocationBytes(for: allocated) == allocated, "a class is its own class: \(allocated)")
        }
        // Four classes between two powers of two.
        let classes = Set(stride(from: 1 << 24, through: 1 << 25, by: 4096).map(BufferCache.allocationBytes(for:)))
        #expect(classes.sorted() == [16, 20, 24, 28, 32].map { $0 << 20 })
        // Below the threshold, malloc's own size.
        #expect(BufferCache.allocationBytes(for: 1000) == 1000)
    }

    @Test func aFreedBufferServesTheNextRequestOfItsClass() {
        let classBytes = BufferCache.allocationBytes(for: 130 << 20)   // 160 MiB
        let first = BufferCache.allocate(classBytes: classBytes)
        BufferCache.release(first, classBytes: classBytes)
        let second = BufferCache.allocate(classBytes: classBytes)
        #expect(second == first)
        BufferCache.release(second, classBytes: classBytes)
    }

    @Test func theCacheNeverHoldsMoreThanItsLimit() {
        let classBytes = BufferCache.allocationBytes(for: 200 << 20)      // 224 MiB
        let count = BufferCache.limitBytes / classBytes + 3
        let buffers = (0..<count).map { _ in BufferCache.allocate(classBytes: classBytes) }
        for buffer in buffers {
            BufferCache.release(buffer, classBytes: classBytes)
            #expect(BufferCache.cachedBytes <= BufferCache.limitBytes)
        }
    }

    @Test func aReusedBufferAskedForZeroedIsZero() {
        let count = (170 << 20) / 4 + 5                                           // 192 MiB
        let pointer: UnsafeMutablePointer<Float>
        do {
            let dirty = TensorStorage(count: count, zeroed: false)
            pointer = dirty.pointer
            for i in stride(from: 0, to: count, by: 4096) { dirty.pointer[i] = 7 }
            dirty.pointer[count - 1] = 7
        }
        let reused = TensorStorage(count: count)
        #expect(reused.pointer == pointer, "the freed buffer is reused")
        var nonzero = 0
        for i in stride(from: 0, to: count, by: 4096) where reused.pointer[i] != 0 { nonzero += 1 }
        #expect(nonzero == 0 && reused.pointer[count - 1] == 0)
    }
}
