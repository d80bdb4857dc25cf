import ReplicaCore

// Legend: N rows (nodes), F input features, O outputs, Z stored nonzeros of the input.

/// y = X·W + b for a sparse input X (CSR features, with values or a 0/1 pattern). [N, F] -> [N, O]
///
/// W is stored [inputs, outputs] (the transpose of `Linear`'s and PyTorch's layout; transpose it
/// when exchanging checkpoints): row f of W is what feature f adds, so the forward pass adds one
/// contiguous W row per nonzero and the weight gradient dW = Xᵀ·dY adds one dY row per nonzero,
/// both as axpys. The cost is O(Z·O) each way instead of the dense O(N·F·O); on Cora (2708 × 1433,
/// 98.7 % zeros) that is 77× less. There is no input gradient: the input is data.
///
/// A dense input (at least `denseFraction` of its entries stored, as the synthetic graphs'
/// Gaussian features are) is multiplied by sgemm instead: unpacked into a dense [N, F] block a
/// head at a time, with the same dropout masks, so only the summation order differs.
///
/// `GraphAttention` with `inputs: nil` expects its projection from here: name both layers alike
/// ("conv1") so the weight is "conv1.weight" [F, heads·outputs] either way, and pass `bias: false`.
public final class SparseLinear {
    public let weight: ParameterSlot      // [inputs, outputs]
    public let bias: ParameterSlot?       // [outputs]
    public let inputCount: Int
    public let outputCount: Int
    let arena: ParameterArena
    /// The last forward's input after dropout (kept entries only, scaled). [N, F]
    var input: CSRMatrix?
    /// With per-group dropout: the undropped input, the mask key and the group count.
    var groupDropout: (input: CSRMatrix, key: UInt64, threshold: UInt64, scale: Float, groups: Int)?
    /// Whether the last forward ran dense (sgemm); backward follows it.
    var ranDense = false

    /// The stored fraction of the input's entries from which the product runs dense: a stored
    /// entry costs an O-wide axpy sparse and about a tenth of that in sgemm.
    static let denseFraction = 0.2

    public init(_ name: String, inputs: Int, outputs: Int, bias: Bool = true, arena: ParameterArena) {
        self.arena = arena
        inputCount = inputs
        outputCount = outputs
        weight = arena.declare("\(name).weight", shape: [inputs, outputs], decays: true)
        self.bias = bias ? arena.declare("\(name).bias", shape: [outputs], decays: false) : nil
    }

    /// Glorot (Xavier) uniform weights, U(−√(6/(F+O)), √(6/(F+O))), as PyG's GATConv; zero bias.
    public func initializeGlorot(using generator: inout SeededGenerator) {
        let bound = (6 / Float(inputCount + outputCount)).squareRoot()
        arena.value(weight).fillUniform(bound: bound, using: &generator)
        if let bias { arena.value(bias).zero() }
    }

    /// y = X·W + b. [N, F] -> [N, O]
    public func forward(_ x: CSRMatrix) -> Tensor {
        forward(x, dropout: 0, context: RandomContext(seed: 0), tag: 0, mode: .evaluation)
    }

    /// y = dropout(X)·W + b, where dropout acts on the stored nonzeros only. [N, F] -> [N, O]
    ///
    /// In training mode with `dropout` p > 0 each stored entry k is kept with probability 1 − p and
    /// scaled by 1/(1 − p), by the rule of `Dropout`: kept when the high 32 bits of
    /// splitMix64(key ^ k) are at least p·2³², the key drawn from `context` and `tag`. On a 0/1
    /// feature matrix this equals dense inverted dropout restricted to the nonzeros (dropping a
    /// zero changes nothing), at Z hashes instead of N·F. Dropped entries are skipped by both passes.
    ///
    /// `groups` > 1 splits the outputs into that many equal blocks (attention heads), each with its
    /// own dropout mask (entry k of block g by index k·groups + g), as the GAT paper's code drops
    /// each head's input independently.
    public func forward(_ x: CSRMatrix, dropout: Float, context: RandomContext, tag: UInt64, mode: Mode,
                        groups: Int = 1) -> Tensor {
        precondition(x.columnCount == inputCount, "SparseLinear expects [N, \(inputCount)], got [\(x.rowCount), \(x.columnCount)]")
        precondition(dropout >= 0 && dropout < 1, "SparseLinear dropout must be in [0, 1), got \(dropout)")
        precondition(groups >= 1 && outputCount % groups == 0, "SparseLinear: \(outputCount) outputs in \(groups) groups")
        groupDropout = nil
        ranDense = Double(x.nonzeroCount) >= Self.denseFraction * Double(x.rowCount) * Double(x.columnCount)
        if groups > 1 && mode == .training && dropout > 0 {
            return forwardDroppingPerGroup(x, key: maskKey(context: context, tag: tag), probability: dropout, groups: groups)
        }
        let kept = mode == .training && dropout > 0
            ? x.keepingEntries(probability: dropout, key: maskKey(context: context, tag: tag))
            : x
        input = kept
        if ranDense { return denseForward(kept, groups: 1, mask: nil) }
        let N = kept.rowCount, O = outputCount
        let output = Tensor(uninitialized: [N, O])
        let w = arena.value(weight).data
        let b = bias.map { arena.value($0).data }
        kept.rowOffsets.withUnsafeBufferPointer { offsets in
            kept.columnIndices.withUnsafeBufferPointer { columns in
                kept.values.withUnsafeBufferPointer { values in
                    let hasValues = values.count > 0
                    for n in 0..<N {
                        let y = output.data + n * O
                        if let b { y.update(from: b, count: O) } else { y.update(repeating: 0, count: O) }
                        for k in offsets[n]..<offsets[n + 1] {
                            let row = w + Int(columns[k]) * O
                            let scale = hasValues ? values[k] : 1
                            for o in 0..<O { y[o] += scale * row[o] }
                        }
                    }
                }
            }
        }
        return output
    }

    /// y = X·W + b with entry k of X dropped independently for each block g of outputs.
    func forwardDroppingPerGroup(_ x: CSRMatrix, key: UInt64, probability: Float, groups: Int) -> Tensor {
        let threshold = keepThreshold(probability: probability), scale = 1 / (1 - probability)
        groupDropout = (x, key, threshold, scale, groups)
        input = nil
        if ranDense { return denseForward(x, groups: groups, mask: (key, threshold, scale)) }
        let N = x.rowCount, O = outputCount, width = O / groups
        let output = Tensor(uninitialized: [N, O])
        let w = arena.value(weight).data
        let b = bias.map { arena.value($0).data }
        for n in 0..<N {
            let y = output.data + n * O
            if let b { y.update(from: b, count: O) } else { y.update(repeating: 0, count: O) }
            for k in x.range(ofRow: n) {
                let row = w + Int(x.columnIndices[k]) * O
                let value = (x.values.isEmpty ? 1 : x.values[k]) * scale
                for g in 0..<groups where isKept(k * groups + g, key: key, threshold: threshold) {
                    for o in (g * width)..<((g + 1) * width) { y[o] += value * row[o] }
                }
            }
        }
        return output
    }

    /// Adds dW += Xᵀ·dY and db += Σ_rows dY into the arena. [N, O]
    public func backward(_ outputGradient: Tensor) {
        if ranDense {
            if let (x, key, threshold, scale, groups) = groupDropout {
                denseBackward(outputGradient, x, groups: groups, mask: (key, threshold, scale))
            } else if let input {
                denseBackward(outputGradient, input, groups: 1, mask: nil)
            } else {
                preconditionFailure("SparseLinear.backward before forward")
            }
            if let bias { addColumnSums(outputGradient, into: arena.gradient(bias)) }
            return
        }
        if let (x, key, threshold, scale, groups) = groupDropout {
            let O = outputCount, width = O / groups
            let dW = arena.gradient(weight).data
            for n in 0..<x.rowCount {
                let dy = outputGradient.data + n * O
                for k in x.range(ofRow: n) {
                    let row = dW + Int(x.columnIndices[k]) * O
                    let value = (x.values.isEmpty ? 1 : x.values[k]) * scale
                    for g in 0..<groups where isKept(k * groups + g, key: key, threshold: threshold) {
                        for o in (g * width)..<((g + 1) * width) { row[o] += value * dy[o] }
                    }
                }
            }
            if let bias { addColumnSums(outputGradient, into: arena.gradient(bias)) }
            return
        }
        guard let input else { preconditionFailure("SparseLinear.backward before forward") }
        let N = input.rowCount, O = outputCount
        precondition(outputGradient.rowCount == N && outputGradient.columnCount == O,
                     "SparseLinear.backward expects a gradient of [\(N), \(O)], got \(outputGradient.shape)")
        let dW = arena.gradient(weight).data
        input.rowOffsets.withUnsafeBufferPointer { offsets in
            input.columnIndices.withUnsafeBufferPointer { columns in
                input.values.withUnsafeBufferPointer { values in
                    let hasValues = values.count > 0
                    for n in 0..<N {
                        let dy = outputGradient.data + n * O
                        for k in offsets[n]..<offsets[n + 1] {
                            let row = dW + Int(columns[k]) * O
                            let scale = hasValues ? values[k] : 1
                            for o in 0..<O { row[o] += scale * dy[o] }
                        }
                    }
                }
            }
        }
        if let bias { addColumnSums(outputGradient, into: arena.gradient(bias)) }
    }
}

// MARK: - Dense inputs

extension SparseLinear {
    /// y = X·W + b by sgemm, each of the `groups` blocks of outputs from X with that group's mask
    /// (entry k of group g kept by index k·groups + g, scaled), or from X as it is. [N, F] -> [N, O]
    func denseForward(_ x: CSRMatrix, groups: Int, mask: (key: UInt64, threshold: UInt64, scale: Float)?) -> Tensor {
        let N = x.rowCount, F = inputCount, O = outputCount, width = O / groups
        let output = Tensor(uninitialized: [N, O])
        if let bias { fillRows(output, with: arena.value(bias)) }
        let block = Tensor(uninitialized: [N, F])
        let w = arena.value(weight).data
        for g in 0..<groups {
            x.unpack(into: block.data, group: g, of: groups, mask: mask)
            BLAS.sgemm(m: N, n: width, k: F, a: block.data, lda: F, b: w + g * width, ldb: O,
                       beta: bias == nil ? 0 : 1, c: output.data + g * width, ldc: O)
        }
        return output
    }

    /// dW[:, block g] += X_gᵀ · dY[:, block g], X_g unpacked again with its mask.
    func denseBackward(_ outputGradient: Tensor, _ x: CSRMatrix, groups: Int, mask: (key: UInt64, threshold: UInt64, scale: Float)?) {
        let N = x.rowCount, F = inputCount, O = outputCount, width = O / groups
        precondition(outputGradient.rowCount == N && outputGradient.columnCount == O,
                     "SparseLinear.backward expects a gradient of [\(N), \(O)], got \(outputGradient.shape)")
        let block = Tensor(uninitialized: [N, F])
        let dW = arena.gradient(weight).data
        for g in 0..<groups {
            x.unpack(into: block.data, group: g, of: groups, mask: mask)
            BLAS.sgemm(m: F, n: width, k: N, a: block.data, lda: F, transposingA: true, b: outputGradient.data + g * width, ldb: O,
                       beta: 1, c: dW + g * width, ldc: O)
        }
    }
}

extension CSRMatrix {
    /// Writes this matrix densely into `dense` [rows, columns]: group g of `groups`'s entries, each
    /// stored entry k kept when index k·groups + g survives `mask` (and scaled), or all of them.
    func unpack(into dense: UnsafeMutablePointer<Float>, group g: Int, of groups: Int,
                mask: (key: UInt64, threshold: UInt64, scale: Float)?) {
        dense.update(repeating: 0, count: rowCount * columnCount)
        let hasValues = !values.isEmpty
        rowOffsets.withUnsafeBufferPointer { offsets in
            columnIndices.withUnsafeBufferPointer { columns in
                values.withUnsafeBufferPointer { values in
                    for row in 0..<rowCount {
                        let target = dense + row * columnCount
                        for k in offsets[row]..<offsets[row + 1] {
                            let value = hasValues ? values[k] : 1
                            if let mask {
                                if isKept(k * groups + g, key: mask.key, threshold: mask.threshold) {
                                    target[Int(columns[k])] = value * mask.scale
                                }
                            } else {
                                target[Int(columns[k])] = value
                            }
                        }
                    }
                }
            }
        }
    }
}

// MARK: - Dropout masks (the rule of `Dropout`, shared with GraphAttention)

/// The mask key for `context` and `tag`: the first draw of the layer's generator, as `Dropout`.
func maskKey(context: RandomContext, tag: UInt64) -> UInt64 {
    var generator = context.generator(layer: tag)
    return generator.next()
}

extension CSRMatrix {
    /// The entries that survive dropout under `key`, scaled by 1/(1 − p); always carries values.
    func keepingEntries(probability: Float, key: UInt64) -> CSRMatrix {
        let threshold = keepThreshold(probability: probability)
        let scale = 1 / (1 - probability)
        let Z = nonzeroCount
        var offsets = [Int](repeating: 0, count: rowCount + 1)
        var columns = [Int32](repeating: 0, count: Z)        // at most Z survive; trimmed below
        var kept = [Float](repeating: 0, count: Z)
        var written = 0
        offsets.withUnsafeMutableBufferPointer { o in
            columns.withUnsafeMutableBufferPointer { c in
                kept.withUnsafeMutableBufferPointer { v in
                    columnIndices.withUnsafeBufferPointer { sourceColumns in
                        values.withUnsafeBufferPointer { sourceValues in
                            let hasValues = sourceValues.count > 0
                            for row in 0..<rowCount {
                                for k in rowOffsets[row]..<rowOffsets[row + 1] where isKept(k, key: key, threshold: threshold) {
                                    c[written] = sourceColumns[k]
                                    v[written] = (hasValues ? sourceValues[k] : 1) * scale
                                    written += 1
                                }
                                o[row + 1] = written
                            }
                        }
                    }
                }
            }
        }
        columns.removeLast(Z - written)
        kept.removeLast(Z - written)
        return CSRMatrix(rowCount: rowCount, columnCount: columnCount, rowOffsets: offsets,
                         columnIndices: columns, values: kept)
    }
}
