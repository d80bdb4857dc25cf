/// FNV-1a, 64-bit (Fowler, Noll and Vo): a fast non-cryptographic hash that, unlike Swift's
/// `Hasher`, gives the same value on every machine and in every run, so it may be stored and
/// compared across processes (checkpoints keep the hash of their configuration; ranks compare
/// theirs). Each step is h = (h XOR value) × prime, starting from the offset basis.
public enum FNV1a {
    @inlinable public static var offsetBasis: UInt64 { 0xcbf2_9ce4_8422_2325 }
    @inlinable public static var prime: UInt64 { 0x0000_0100_0000_01b3 }

    /// `hash` with one more value mixed in: a byte, or a whole word at once (a hash table's key).
    @inlinable @inline(__always)
    public static func combine(_ hash: UInt64, _ value: UInt64) -> UInt64 { (hash ^ value) &* prime }
}

/// FNV-1a of a string's UTF-8 bytes.
public func fnv1a(_ text: String) -> UInt64 {
    var hash = FNV1a.offsetBasis
    for byte in text.utf8 { hash = FNV1a.combine(hash, UInt64(byte)) }
    return hash
}
