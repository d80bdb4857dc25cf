/// Walker's alias method (Vose's construction): draws index i of 0..<n with probability
/// weights[i] / Σ weights in O(1), two generator words a draw. [n]
///
/// Each slot i keeps i with probability `keep[i]` and otherwise gives `alias[i]`; built in O(n)
/// with plain Double arithmetic, so the same weights give the same table (and draws) everywhere.
public struct AliasTable: Sendable {
    public let count: Int                 // n
    @usableFromInline let keep: [Double]  // [n] the chance that slot i yields i
    @usableFromInline let alias: [Int32]  // [n] what slot i yields otherwise

    /// `weights` are finite, non-negative, and not all zero; n ≤ 2³¹.
    public init(weights: [Double]) {
        let n = weights.count
        precondition(n > 0 && n <= 1 << 31, "AliasTable: \(n) weights; expected 1...2³¹")
        var total = 0.0
        for weight in weights {
            precondition(weight >= 0 && weight.isFinite, "AliasTable: weight \(weight) is not finite and non-negative")
            total += weight
        }
        precondition(total > 0, "AliasTable: the weights sum to 0")
        var keep = weights.map { $0 * Double(n) / total }   // mean 1
        var alias = [Int32](repeating: 0, count: n)
        // One worklist: slots below 1 ("small") from the front, the others ("large") from the back.
        var work = [Int32](repeating: 0, count: n)
        var smallCount = 0, largeStart = n
        for i in 0..<n {
            if keep[i] < 1 {
                work[smallCount] = Int32(truncatingIfNeeded: i); smallCount += 1
            } else {
                largeStart -= 1; work[largeStart] = Int32(truncatingIfNeeded: i)
            }
        }
        // Pair each small slot with a large one, which gives up what the small one lacks.
        while smallCount > 0 && largeStart < n {
            smallCount -= 1
            let small = Int(work[smallCount])
            let large = Int(work[largeStart])
            alias[small] = Int32(truncatingIfNeeded: large)
            keep[large] -= 1 - keep[small]
            if keep[large] < 1 {
                largeStart += 1
                work[smallCount] = Int32(truncatingIfNeeded: large); smallCount += 1
            }
        }
        // What is left is 1 up to rounding: those slots always yield themselves.
        for k in 0..<smallCount { keep[Int(work[k])] = 1 }
        for k in largeStart..<n { keep[Int(work[k])] = 1 }
        self.count = n
        self.keep = keep
        self.alias = alias
    }

    /// One index in 0..<n, drawn with probability ∝ its weight.
    @inlinable
    public func sample(using generator: inout SeededGenerator) -> Int {
        let slot = Int(truncatingIfNeeded: UInt64(count).multipliedFullWidth(by: generator.next()).high)
        let coin = Double(generator.next() >> 11) * 0x1p-53   // uniform in [0, 1)
        return coin < keep[slot] ? slot : Int(alias[slot])
    }
}
