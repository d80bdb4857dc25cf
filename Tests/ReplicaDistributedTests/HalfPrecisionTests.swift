import Testing
import ReplicaCore
import ReplicaDistributed

/// The 16-bit conversions of `--grad-compression` (MPIWrapper's half.c): exact where the value is
/// representable, round to nearest with ties to even, overflow to infinity, subnormal fp16, NaN
/// kept; fp16 agrees with Swift's own Float16 on every float tried.
@Suite struct HalfPrecisionTests {
    @Test func representableValuesRoundTripExactly() {
        for value: Float in [0, -0, 1, -2, 0.5, 65504, -65504, 6.103515625e-05, 5.9604644775390625e-08, 1023.5, .infinity, -.infinity] {
            #expect(HalfPrecision.fp16.round(value) == value, "fp16 \(value)")
        }
        for value: Float in [0, 1, -3.5, 3.3895314e38, 1.1754944e-38, 0.0078125, .infinity] {
            #expect(HalfPrecision.bf16.round(value) == value, "bf16 \(value)")
        }
    }

    @Test func tiesGoToEvenAndOverflowGoesToInfinity() {
        // fp16 near 1 has steps of 2^-10: 1 + 2^-11 is a tie between 1 (even) and 1 + 2^-10.
        #expect(HalfPrecision.fp16.round(1 + 0x1p-11) == 1)
        #expect(HalfPrecision.fp16.round(1 + 3 * 0x1p-11) == 1 + 2 * 0x1p-10)
        #expect(HalfPrecision.fp16.round(65519) == 65504)
        #expect(HalfPrecision.fp16.round(65520) == .infinity)
        #expect(HalfPrecision.fp16.round(-1e6) == -.infinity)
        // Subnormal fp16: multiples of 2^-24; 2^-25 is a tie with 0 (even), above it rounds up.
        #expect(HalfPrecision.fp16.round(0x1p-25) == 0)
        #expect(HalfPrecision.fp16.round(0x1.8p-25) == 0x1p-24)
        #expect(HalfPrecision.fp16.round(3 * 0x1p-25) == 2 * 0x1p-24)
        // bf16 near 1 has steps of 2^-7.
        #expect(HalfPrecision.bf16.round(1 + 0x1p-8) == 1)
        #expect(HalfPrecision.bf16.round(1 + 3 * 0x1p-8) == 1 + 2 * 0x1p-7)
        #expect(HalfPrecision.bf16.round(Float.greatestFiniteMagnitude) == .infinity)
        #expect(HalfPrecision.fp16.round(.nan).isNaN && HalfPrecision.bf16.round(.nan).isNaN)
    }

    @Test func fp16AgreesWithSwiftsFloat16() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<100_000 {
            let value = Float(bitPattern: generator.next() as UInt32)
            guard !value.isNaN else { continue }
            let ours = HalfPrecision.fp16.round(value), swift = Float(Float16(value))
            #expect(ours == swift || (ours.isNaN && swift.isNaN), "\(value) (bits \(value.bitPattern)): \(ours) against \(swift)")
        }
    }

    /// Arrays go 8 at a time through F16C where the processor has it; single values (and
    /// tails) through the scalar code: both must give the same bits, sums included.
    @Test func vectorAndScalarFp16ConversionsAgreeBitForBit() {
        var generator = SeededGenerator(seed: 3)
        let count = 100_003
        // Random bit patterns (every exponent, NaNs, infinities) and gradient-sized values.
        let values = (0..<count).map { i -> Float in
            i % 2 == 0 ? Float(bitPattern: UInt32(truncatingIfNeeded: generator.next()))
                       : (generator.nextUniform() - 0.5) * Float(1 << (i % 24)) * 1e-6
        }
        func run(vector: Bool) -> ([UInt16], [Float], [UInt16]) {
            HalfPrecision.useVectorInstructions(vector)
            defer { HalfPrecision.useVectorInstructions(true) }
            var halves = [UInt16](repeating: 0, count: count), back = [Float](repeating: 0, count: count)
            values.withUnsafeBufferPointer { v in halves.withUnsafeMutableBufferPointer { HalfPrecision.fp16.compress(v, into: $0, scale: 0.5) } }
            halves.withUnsafeBufferPointer { h in back.withUnsafeMutableBufferPointer { HalfPrecision.fp16.decompress(h, into: $0, scale: 2) } }
            var sums = halves
            halves.reversed().withUnsafeBufferPointer { h in sums.withUnsafeMutableBufferPointer { HalfPrecision.fp16.accumulate(h, into: $0) } }
            return (halves, back, sums)
        }
        let vector = run(vector: true), scalar = run(vector: false)
        #expect(vector.0 == scalar.0, "compressed")
        #expect(vector.1.map(\.bitPattern) == scalar.1.map(\.bitPattern), "decompressed")
        #expect(vector.2 == scalar.2, "summed")
    }

    @Test func theSumWidensAddsAndRoundsOnce() {
        for format in HalfPrecision.allCases {
            let a: [Float] = [1, 0.1, 1000, -3, 1e-3], b: [Float] = [0x1p-9, 0.2, 1, 3, 7]
            var x = [UInt16](repeating: 0, count: a.count), y = x
            a.withUnsafeBufferPointer { v in x.withUnsafeMutableBufferPointer { format.compress(v, into: $0) } }
            b.withUnsafeBufferPointer { v in y.withUnsafeMutableBufferPointer { format.compress(v, into: $0) } }
            x.withUnsafeBufferPointer { xs in y.withUnsafeMutableBufferPointer { format.accumulate(xs, into: $0) } }
            var sums = [Float](repeating: 0, count: a.count)
            y.withUnsafeBufferPointer { ys in sums.withUnsafeMutableBufferPointer { format.decompress(ys, into: $0) } }
            let expected = zip(a, b).map { format.round(format.round($0) + format.round($1)) }
            #expect(sums == expected, "\(format)")
        }
    }

    @Test func compressionScalesBeforeRoundingAndDecompressionAfter() {
        let values: [Float] = [3, -6, 1e-3]
        var halves = [UInt16](repeating: 0, count: 3), back = [Float](repeating: 0, count: 3)
        values.withUnsafeBufferPointer { v in halves.withUnsafeMutableBufferPointer { HalfPrecision.fp16.compress(v, into: $0, scale: 0.5) } }
        halves.withUnsafeBufferPointer { h in back.withUnsafeMutableBufferPointer { HalfPrecision.fp16.decompress(h, into: $0, scale: 2) } }
        #expect(back == values.map { 2 * HalfPrecision.fp16.round($0 * 0.5) })
    }
}
