import Foundation

/// Integers and floats from ASCII bytes, without Foundation: a field is optional spaces, the
/// number, optional spaces, then "," or the end of the line.
enum ASCIINumber {
    /// An optionally signed decimal integer of at most 18 digits at `position`, which moves past it.
    @inline(__always)
    static func parseInteger(_ bytes: UnsafeBufferPointer<UInt8>, at position: inout Int) -> Int? {
        var i = position
        let count = bytes.count
        while i < count && (bytes[i] == 0x20 || bytes[i] == 0x09) { i += 1 }
        var negative = false
        if i < count && (bytes[i] == UInt8(ascii: "-") || bytes[i] == UInt8(ascii: "+")) {
            negative = bytes[i] == UInt8(ascii: "-")
            i += 1
        }
        let digitsStart = i
        var value = 0
        while i < count {
            let digit = bytes[i] &- 0x30
            guard digit < 10 else { break }
            value = value &* 10 &+ Int(digit)
            i += 1
        }
        guard i > digitsStart && i - digitsStart <= 18 else { return nil }
        position = i
        return negative ? -value : value
    }

    /// The powers of ten that Float and Double hold exactly.
    private static let floatPowers: [Float] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10]
    private static let doublePowers: [Double] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
        1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ]

    /// A decimal float ("1", "-0.25", "1.5e-3", ".5", "3.") at `position`, which moves past it;
    /// rounded correctly to the nearest Float.
    ///
    /// Up to 19 significant digits are exact in a UInt64; then one exact multiply or divide by a
    /// power of ten in Float or Double rounds once (Clinger's fast path). Other numbers (longer,
    /// or with larger exponents) go to strtof.
    @inline(__always)
    static func parseFloat(_ bytes: UnsafeBufferPointer<UInt8>, at position: inout Int) -> Float? {
        var i = position
        let count = bytes.count
        while i < count && (bytes[i] == 0x20 || bytes[i] == 0x09) { i += 1 }
        let start = i
        var negative = false
        if i < count && (bytes[i] == UInt8(ascii: "-") || bytes[i] == UInt8(ascii: "+")) {
            negative = bytes[i] == UInt8(ascii: "-")
            i += 1
        }
        var mantissa: UInt64 = 0
        var exponent = 0
        var sawDigit = false
        var inexact = false   // digits beyond the 19th were not zero
        while i < count {
            let digit = bytes[i] &- 0x30
            guard digit < 10 else { break }
            sawDigit = true
            if mantissa < 1_000_000_000_000_000_000 {
                mantissa = mantissa &* 10 &+ UInt64(digit)
            } else {
                exponent += 1
                if digit != 0 { inexact = true }
            }
            i += 1
        }
        if i < count && bytes[i] == UInt8(ascii: ".") {
            i += 1
            while i < count {
                let digit = bytes[i] &- 0x30
                guard digit < 10 else { break }
                sawDigit = true
                if mantissa < 1_000_000_000_000_000_000 {
                    mantissa = mantissa &* 10 &+ UInt64(digit)
                    exponent -= 1
                } else if digit != 0 {
                    inexact = true
                }
                i += 1
            }
        }
        guard sawDigit else { return nil }
        if i < count && (bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E")) {
            i += 1
            var exponentNegative = false
            if i < count && (bytes[i] == UInt8(ascii: "-") || bytes[i] == UInt8(ascii: "+")) {
                exponentNegative = bytes[i] == UInt8(ascii: "-")
                i += 1
            }
            let digitsStart = i
            var written = 0
            while i < count {
                let digit = bytes[i] &- 0x30
                guard digit < 10 else { break }
                if written < 100_000 { written = written * 10 + Int(digit) }
                i += 1
            }
            guard i > digitsStart else { return nil }
            exponent += exponentNegative ? -written : written
        }
        position = i
        if mantissa == 0 { return negative ? -0.0 : 0.0 }
        if !inexact {
            if mantissa <= 1 << 24 && exponent >= -10 && exponent <= 10 {
                let value = exponent >= 0 ? Float(mantissa) * floatPowers[exponent] : Float(mantissa) / floatPowers[-exponent]
                return negative ? -value : value
            }
            if mantissa <= 1 << 53 && exponent >= -22 && exponent <= 22 {
                let double = exponent >= 0 ? Double(mantissa) * doublePowers[exponent] : Double(mantissa) / doublePowers[-exponent]
                // Rounding the correctly rounded Double to Float is exact unless it lies halfway
                // between two Floats (the low 29 of its 52 fraction bits are 1 followed by zeros).
                if double.bitPattern & 0x1FFF_FFFF != 0x1000_0000 {
                    let value = Float(double)
                    return negative ? -value : value
                }
            }
        }
        return slowFloat(bytes, from: start, to: i)
    }

    /// strtof on a copy of the bytes (it needs a terminating zero).
    private static func slowFloat(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int, to end: Int) -> Float? {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: end - start + 1) { text in
            for k in start..<end { text[k - start] = CChar(bitPattern: bytes[k]) }
            text[end - start] = 0
            var stop: UnsafeMutablePointer<CChar>?
            let value = strtof(text.baseAddress!, &stop)
            return stop == text.baseAddress! + (end - start) ? value : nil
        }
    }

    /// Skips spaces after a number; true if a "," or the end of the line follows (`position` is there).
    @inline(__always)
    static func endsField(_ bytes: UnsafeBufferPointer<UInt8>, at position: inout Int) -> Bool {
        let count = bytes.count
        while position < count && (bytes[position] == 0x20 || bytes[position] == 0x09) { position += 1 }
        return position == count || bytes[position] == UInt8(ascii: ",")
    }
}
