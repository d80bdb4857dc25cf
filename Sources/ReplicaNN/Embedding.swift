import ReplicaCore

/// A lookup table: row `id` of the weight for each id. Used for tokens and learned positions.
/// ids [N] -> [N, C]
public final class Embedding {
    public let weight: ParameterSlot      // [count, C]
    public let count: Int
    public let dimension: Int
    let arena: ParameterArena
    var ids: [Int32] = []

    public init(_ name: String, count: Int, dimension: Int, arena: ParameterArena) {
        self.arena = arena
        self.count = count
        self.dimension = dimension
        // nanoGPT decays embeddings too (every 2-D parameter).
        weight = arena.declare("\(name).weight", shape: [count, dimension], decays: true)
    }

    public func initialize(standardDeviation: Float, using generator: inout SeededGenerator) {
        arena.value(weight).fillNormal(standardDeviation: standardDeviation, using: &generator)
    }

    /// Rows of the table for `ids`, shaped `shape + [C]`.
    public func forward(_ ids: [Int32], shape: [Int]) -> Tensor {
        self.ids = ids
        let output = Tensor(uninitialized: shape + [dimension])
        precondition(output.rowCount == ids.count, "Embedding: \(ids.count) ids for shape \(shape)")
        let table = arena.value(weight).data
        for (row, id) in ids.enumerated() {
            precondition(id >= 0 && Int(id) < count, "Embedding: id \(id) outside 0..<\(count)")
            (output.data + row * dimension).update(from: table + Int(id) * dimension, count: dimension)
        }
        return output
    }

    /// Adds each row of `outputGradient` into the gradient row of its id.
    public func backward(_ outputGradient: Tensor) {
        let table = arena.gradient(weight).data
        for (row, id) in ids.enumerated() {
            let source = outputGradient.data + row * dimension, target = table + Int(id) * dimension
            for j in 0..<dimension { target[j] += source[j] }
        }
    }
}
