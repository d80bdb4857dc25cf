import ReplicaCore
import ReplicaNN

// Legend: B rows (hypotheses) in the cache, N sentences, S source length, P capacity (longest
// prefix), C embedding, V vocabulary.

/// A key/value cache for incremental decoding: what the decoder keeps between steps so that each
/// step computes only the new position.
///
/// Per decoder layer it holds the self-attention keys and values of every decoded position of
/// every row, and the cross-attention keys and values of each sentence's encoder output,
/// computed once. Rows are hypotheses; several rows (a beam) may share one sentence. After a
/// step, `select(rows:)` keeps, reorders or duplicates rows (beam search's parent pointers).
public final class DecoderCache {
    /// Rows (hypotheses) now in the cache.
    public private(set) var rowCount: Int
    /// Positions decoded so far: the next step writes position `length`.
    public internal(set) var length = 0
    /// The longest prefix the cache holds.
    public let capacity: Int
    /// The sentence (encoder output row block) each row attends to. [B]
    public private(set) var sentence: [Int]
    let maximumRows: Int
    let sourceLength: Int                 // S
    let width: Int                        // 2C: key then value
    var selfKeysValues: [Tensor]          // per layer [maximumRows, P, 2C]; rows < rowCount are live
    var spare: [Tensor]                   // per layer, the other buffer of select(rows:)
    let memoryKeysValues: [Tensor]        // per layer [N·S, 2C]
    let memoryMask: [[Bool]]              // per sentence [S]

    init(layers: Int, embedding C: Int, sentences N: Int, sourceLength S: Int, capacity: Int, maximumRows: Int,
         memoryKeysValues: [Tensor], memoryMask: [Bool]) {
        precondition(maximumRows >= N, "a decoder cache needs room for its \(N) sentences, got \(maximumRows) rows")
        rowCount = N
        sentence = Array(0..<N)
        self.capacity = capacity
        self.maximumRows = maximumRows
        sourceLength = S
        width = 2 * C
        // Uninitialized: pages are touched only as positions are written.
        selfKeysValues = (0..<layers).map { _ in Tensor(uninitialized: [maximumRows, capacity, 2 * C]) }
        spare = (0..<layers).map { _ in Tensor(uninitialized: [maximumRows, capacity, 2 * C]) }
        self.memoryKeysValues = memoryKeysValues
        self.memoryMask = (0..<N).map { Array(memoryMask[($0 * S)..<(($0 + 1) * S)]) }
    }

    /// Floats between rows of a layer's self-attention buffer.
    var rowStride: Int { capacity * width }

    /// Keeps rows `rows` of the cache in that order (a row may appear several times or not at all).
    public func select(rows: [Int]) {
        precondition(rows.count <= maximumRows, "decoder cache: \(rows.count) rows exceed its \(maximumRows)")
        precondition(rows.allSatisfy { (0..<rowCount).contains($0) }, "decoder cache: a selected row is outside 0..<\(rowCount)")
        if rows.count == rowCount && rows.elementsEqual(0..<rowCount) { return }
        let used = length * width
        for layer in selfKeysValues.indices {
            let from = selfKeysValues[layer].data, to = spare[layer].data
            for (newRow, oldRow) in rows.enumerated() where used > 0 {
                (to + newRow * rowStride).update(from: from + oldRow * rowStride, count: used)
            }
            swap(&selfKeysValues[layer], &spare[layer])
        }
        sentence = rows.map { sentence[$0] }
        rowCount = rows.count
    }
}

extension Seq2SeqTransformer {
    /// A cache for decoding `N` sentences whose encoder output is `memory` [N·S, C] (from `encode`),
    /// one row per sentence to start with; `maximumRows` bounds the rows `select(rows:)` may keep
    /// (N·K for a beam of K).
    public func makeDecoderCache(memory: Tensor, memoryMask: [Bool], sentences N: Int, sourceLength S: Int,
                                 capacity: Int, maximumRows: Int? = nil) -> DecoderCache {
        precondition(memory.shape == [N * S, config.embedding] || memory.shape == [N, S, config.embedding],
                     "decoder cache: memory \(memory.shape) is not [\(N)·\(S), \(config.embedding)]")
        precondition(memoryMask.count == N * S, "decoder cache: the memory mask needs \(N * S) entries")
        let keysValues = decoderLayers.map { $0.crossAttention.keyValue.forward(memory.reshaped([N * S, config.embedding])) }
        return DecoderCache(layers: decoderLayers.count, embedding: config.embedding, sentences: N, sourceLength: S,
                            capacity: capacity, maximumRows: maximumRows ?? N, memoryKeysValues: keysValues,
                            memoryMask: memoryMask)
    }

    /// Logits [B, V] of the next token for each row of `cache`, given each row's latest token
    /// (`<s>` first), at position `cache.length`; appends that position to the cache. Evaluation
    /// mode only. The same numbers as `decode` over the whole prefix, up to sgemm rounding.
    public func decodeStep(_ tokens: [Int32], cache: DecoderCache) -> Tensor {
        precondition(mode == .evaluation, "decodeStep needs evaluation mode (no dropout, BatchNorm running statistics)")
        precondition(tokens.count == cache.rowCount, "decodeStep: \(tokens.count) tokens for \(cache.rowCount) cached rows")
        precondition(cache.length < cache.capacity, "decodeStep: the cache holds \(cache.capacity) positions")
        var x = embed(tokens, position: cache.length)
        for (index, layer) in decoderLayers.enumerated() { x = layer.step(x, cache: cache, layer: index) }
        let hidden = decoderNorm.forward(x)
        let logits = Tensor(uninitialized: [tokens.count, config.vocabularySize])
        gemm(hidden, arena.value(embedding.weight), transposingB: true, into: logits)
        cache.length += 1
        return logits
    }

    /// √C · E[id] + PE(position) for every id at one position. [B] -> [B, C]
    func embed(_ ids: [Int32], position: Int) -> Tensor {
        let C = config.embedding
        let x = Tensor(uninitialized: [ids.count, C])
        let table = arena.value(embedding.weight).data
        let scale = Float(C).squareRoot()
        precondition(position < config.maximumLength, "position \(position) exceeds the model's maximum \(config.maximumLength)")
        let encoding = Array(positionTable[(position * C)..<((position + 1) * C)])
        for (row, id) in ids.enumerated() {
            precondition(id >= 0 && Int(id) < config.vocabularySize, "token id \(id) outside the vocabulary")
            let source = table + Int(id) * C, target = x.data + row * C
            for j in 0..<C { target[j] = scale * source[j] + encoding[j] }
        }
        return x
    }
}

extension DecoderLayer {
    /// One new position of every cached row, as `forward` computes it at that position in
    /// evaluation mode (dropout is the identity there). x [B, C] -> [B, C]
    func step(_ x: Tensor, cache: DecoderCache, layer: Int) -> Tensor {
        let B = cache.rowCount, position = cache.length, C = x.columnCount, S = cache.sourceLength
        // Self-attention: store this position's key and value, attend over positions 0...position.
        let fused = selfAttention.qkv.forward(norm1.forward(x))          // [B, 3C]
        let store = cache.selfKeysValues[layer], rowStride = cache.rowStride
        for b in 0..<B {
            (store.data + b * rowStride + position * 2 * C).update(from: fused.data + b * 3 * C + C, count: 2 * C)
        }
        let attended = Tensor(uninitialized: [B, C])
        selfAttention.kernel.forward(q: StridedOperand(fused.data, rowStride: 3 * C),
                                     k: StridedOperand(store.data, rowStride: 2 * C, offset: 0, batchStride: rowStride),
                                     v: StridedOperand(store.data, rowStride: 2 * C, offset: C, batchStride: rowStride),
                                     output: StridedOperand(attended.data, rowStride: C),
                                     batch: B, queryLength: 1, keyLength: position + 1, causal: false, keyMask: nil)
        let afterSelf = selfAttention.projection.forward(attended)
        add(x, into: afterSelf)
        // Cross-attention: each run of rows of one sentence queries that sentence's keys and values together.
        let queries = crossAttention.query.forward(norm2.forward(afterSelf))   // [B, C]
        let crossed = Tensor(uninitialized: [B, C])
        let memory = cache.memoryKeysValues[layer].data
        var start = 0
        while start < B {
            let sentence = cache.sentence[start]
            var end = start + 1
            while end < B && cache.sentence[end] == sentence { end += 1 }
            let keysValues = memory + sentence * S * 2 * C
            crossAttention.kernel.forward(q: StridedOperand(queries.data + start * C, rowStride: C),
                                          k: StridedOperand(keysValues, rowStride: 2 * C, offset: 0),
                                          v: StridedOperand(keysValues, rowStride: 2 * C, offset: C),
                                          output: StridedOperand(crossed.data + start * C, rowStride: C),
                                          batch: 1, queryLength: end - start, keyLength: S, causal: false,
                                          keyMask: cache.memoryMask[sentence])
            start = end
        }
        let afterCross = crossAttention.projection.forward(crossed)
        add(afterSelf, into: afterCross)
        let output = feedForward.forward(norm3.forward(afterCross))
        add(afterCross, into: output)
        return output
    }
}
