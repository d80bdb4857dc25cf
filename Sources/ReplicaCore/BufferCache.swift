import Synchronization

/// Large tensor buffers kept for the next tensor of their size instead of being given back to the system.
///
/// glibc serves an allocation above its mmap threshold (32 MiB at most) with a fresh mapping and
/// unmaps it on free, so a step that builds and drops the same large tensors each time (translate's
/// [N, 8000] logits, gpt2-small's 48 MiB attention probabilities a layer) faults in and clears
/// every page of them again: 8% of translate's 1-thread step and 12% of gpt2-small's. Buffers of at
/// least `minimumBytes` are rounded up to a size class (four a power of two: 2ᵏ, 1.25·2ᵏ, 1.5·2ᵏ,
/// 1.75·2ᵏ, so at most 25% more than asked for) and, when freed, kept here for the next
/// allocation of the same class. The cache holds at most `limitBytes`; beyond it the buffers
/// cached longest ago are freed. Memory already mapped is reused, so a step stops paying for the
/// kernel's page faults and page clearing; the process's peak resident set stays that of the
/// largest step.
enum BufferCache {
    /// Smaller buffers go straight to malloc, whose bins serve them without system calls.
    static let minimumBytes = 1 << 20
    /// The most bytes kept for reuse at once.
    static let limitBytes = 1 << 28

    private struct Entry {
        var pointer: UnsafeMutableRawPointer
        var stamp: Int          // when it was cached; the lowest is evicted first
    }

    private struct State {
        var free: [Int: [Entry]] = [:]   // size class in bytes -> buffers, the most recent last
        var cachedBytes = 0
        var clock = 0
    }

    private static let state = Mutex(State())

    /// The bytes actually allocated for a request of `bytes`: its size class, or `bytes` below `minimumBytes`.
    static func allocationBytes(for bytes: Int) -> Int {
        guard bytes >= minimumBytes else { return bytes }
        let power = Int.bitWidth - 1 - bytes.leadingZeroBitCount      // 2^power ≤ bytes < 2^(power+1)
        let quarter = 1 << (power - 2)
        return (bytes + quarter - 1) / quarter * quarter                  // the next multiple of 2^power / 4
    }

    /// A 64-byte-aligned buffer of `classBytes` (a value of `allocationBytes`), reused when one is cached.
    static func allocate(classBytes: Int) -> UnsafeMutableRawPointer {
        if classBytes >= minimumBytes, let reused = take(classBytes) { return reused }
        return UnsafeMutableRawPointer.allocate(byteCount: classBytes, alignment: 64)
    }

    /// Returns a buffer from `allocate(classBytes:)`: cached when large, freed otherwise.
    static func release(_ pointer: UnsafeMutableRawPointer, classBytes: Int) {
        guard classBytes >= minimumBytes, classBytes <= limitBytes else { pointer.deallocate(); return }
        let evicted: [UnsafeMutableRawPointer] = state.withLock { state in
            state.clock += 1
            state.free[classBytes, default: []].append(Entry(pointer: pointer, stamp: state.clock))
            state.cachedBytes += classBytes
            var evicted: [UnsafeMutableRawPointer] = []
            while state.cachedBytes > limitBytes, let oldest = oldestClass(in: state) {
                let entry = state.free[oldest]!.removeFirst()
                if state.free[oldest]!.isEmpty { state.free[oldest] = nil }
                state.cachedBytes -= oldest
                evicted.append(entry.pointer)
            }
            return evicted
        }
        for pointer in evicted { pointer.deallocate() }
    }

    /// Bytes held for reuse now.
    static var cachedBytes: Int { state.withLock { $0.cachedBytes } }

    private static func take(_ classBytes: Int) -> UnsafeMutableRawPointer? {
        state.withLock { state in
            guard let entry = state.free[classBytes]?.popLast() else { return nil }
            if state.free[classBytes]!.isEmpty { state.free[classBytes] = nil }
            state.cachedBytes -= classBytes
            return entry.pointer
        }
    }

    /// The class whose first (oldest) buffer was cached earliest.
    private static func oldestClass(in state: State) -> Int? {
        state.free.min { $0.value[0].stamp < $1.value[0].stamp }?.key
    }
}
