import Foundation
import Testing
@testable import ReplicaNN

/// The exponential has one formula for one float and for eight lanes; the row kernel built on the
/// eight-lane form must equal the scalar one entry by entry, whatever the row's length.
@Suite struct ExponentialTests {
    static let inputs: [Float] = [-.infinity, -100, -87.4, -87.3, -20.5, -1, -0.25, 0, 1e-8, 0.3, 1, 7.75, 88.3, 88.4, 1000,
                                  .infinity, .nan, -3.1e-3, 42.125, -55.5, 2.5, -0.693, 0.693, 16]

    @Test func eightLanesEqualTheScalarFormulaBitForBit() {
        for start in stride(from: 0, to: Self.inputs.count, by: 8) {
            var x = SIMD8<Float>()
            for lane in 0..<8 { x[lane] = Self.inputs[start + lane] }
            let y = exponential(x)
            for lane in 0..<8 {
                let expected = fastExp(x[lane])
                #expect(y[lane].bitPattern == expected.bitPattern || (y[lane].isNaN && expected.isNaN), "exp(\(x[lane]))")
            }
        }
    }

    @Test func theScalarFormulaIsWithinTwoUlpsOfExp() {
        for x in stride(from: Float(-87), through: 88, by: 0.37) {
            let reference = Float(Foundation.exp(Double(x)))
            #expect(abs(fastExp(x) - reference) <= 2 * reference.ulp, "exp(\(x))")
        }
        #expect(fastExp(-.infinity) == 0 && fastExp(-90) == 0 && fastExp(89) == .infinity && fastExp(.nan).isNaN)
    }

    /// Without the overflow guard (GELU's exp(−x²/2)), every x ≤ 0 and NaN give what `fastExp` gives.
    @Test func theUnguardedFormulaEqualsTheGuardedOneWhereXIsNotPositive() {
        for x in Self.inputs where !(x > 0) {
            let expected = fastExp(x), scalar = exponential(x, guardsOverflow: false)
            let lanes = exponential(SIMD8<Float>(repeating: x), guardsOverflow: false)
            #expect(scalar.bitPattern == expected.bitPattern || (scalar.isNaN && expected.isNaN), "exp(\(x))")
            #expect(lanes[3].bitPattern == expected.bitPattern || (lanes[3].isNaN && expected.isNaN), "exp(\(x)), eight lanes")
        }
    }

    /// Every length from 0 to 19 (full chunks and a padded last one), with masked (−∞) entries,
    /// minus the row's maximum (or more, as a log-sum-exp): what every caller passes, so the
    /// row's exponential may leave out the overflow guard. The row's width past its count (as
    /// a causal row's past the diagonal) holds NaN, which must become zeros, with room for the
    /// last chunk read whole or (width − count < 8 past a chunk boundary) a lane at a time. A
    /// shift of +∞ makes every entry 0.
    @Test func aRowsExponentialsAndSumEqualTheEntryByEntryOnes() {
        for count in 0..<20 {
            for width in [count, count + 3, count + 11] {
                for extra: Float in [0, 1.5] {
                    let visible = (0..<count).map { i in i % 5 == 3 ? -Float.infinity : Float(i) * 0.75 - 6 }
                    var row = visible + [Float](repeating: .nan, count: width - count)
                    let shift = (visible.max() ?? 0) + extra
                    let expected = visible.map { fastExp($0 - shift) } + [Float](repeating: 0, count: width - count)
                    let sum = exponentiateRow(&row, count: count, width: width, minus: shift)
                    #expect(row == expected, "count \(count), width \(width), shift \(shift)")
                    #expect(abs(sum - expected.reduce(0, +)) <= 1e-6 * max(1, sum), "count \(count), width \(width)")
                }
            }
        }
        var row: [Float] = [3, -.infinity, 80, -2]
        #expect(exponentiateRow(&row, count: 4, width: 4, minus: .infinity) == 0 && row == [0, 0, 0, 0])
    }

    /// A chunk's first lanes kept, the others set to the padding, for every count of lanes.
    @Test func firstLanesKeepsTheLanesBelowItsCount() {
        let chunk = SIMD8<Float>(1, 2, 3, 4, 5, 6, 7, 8)
        for lanes in 0...8 {
            let kept = firstLanes(chunk, lanes, padding: -.infinity)
            #expect((0..<8).allSatisfy { kept[$0] == ($0 < lanes ? chunk[$0] : -.infinity) }, "\(lanes) lanes")
        }
    }
}
