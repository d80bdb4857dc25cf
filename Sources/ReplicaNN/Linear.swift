import ReplicaCore

/// y = x · Wᵀ + b with W stored [outputs, inputs] (PyTorch's layout). [N, inputs] -> [N, outputs]
public final class Linear: Layer {
    public let weight: ParameterSlot      // [outputs, inputs]
    public let bias: ParameterSlot?       // [outputs]
    public let inputCount: Int
    public let outputCount: Int
    let arena: ParameterArena
    var input: Tensor?                    // [N, inputs], cached by forward

    public init(_ name: String, inputs: Int, outputs: Int, bias: Bool = true, arena: ParameterArena) {
        self.arena = arena
        inputCount = inputs
        outputCount = outputs
        weight = arena.declare("\(name).weight", shape: [outputs, inputs], decays: true)
        self.bias = bias ? arena.declare("\(name).bias", shape: [outputs], decays: false) : nil
    }

    /// N(0, std²) weights (GPT-2 uses 0.02), zero bias.
    public func initialize(standardDeviation: Float, using generator: inout SeededGenerator) {
        arena.value(weight).fillNormal(standardDeviation: standardDeviation, using: &generator)
        if let bias { arena.value(bias).zero() }
    }

    /// Xavier (Glorot) uniform weights U(−√(6/(in+out)), √(6/(in+out))), zero bias: the Transformer's.
    public func initializeXavier(using generator: inout SeededGenerator) {
        arena.value(weight).fillUniform(bound: (6 / Float(inputCount + outputCount)).squareRoot(), using: &generator)
        if let bias { arena.value(bias).zero() }
    }

    /// PyTorch's default: U(−1/√inputs, 1/√inputs) for weight and bias.
    public func initializeUniform(using generator: inout SeededGenerator) {
        let bound = 1 / Float(inputCount).squareRoot()
        arena.value(weight).fillUniform(bound: bound, using: &generator)
        if let bias { arena.value(bias).fillUniform(bound: bound, using: &generator) }
    }

    public func forward(_ input: Tensor) -> Tensor { forward(input, adding: nil) }

    /// `residual` + forward(input), the residual in the product's C with β = 1: it costs a copy
    /// where adding it after cost sgemm's clearing of C and a pass over three tensors.
    /// residual [..., outputs], as the output.
    public func forward(_ input: Tensor, adding residual: Tensor?) -> Tensor {
        precondition(input.columnCount == inputCount, "Linear expects [..., \(inputCount)], got \(input.shape)")
        self.input = input
        let output = Tensor(uninitialized: Array(input.shape.dropLast()) + [outputCount])
        if let residual {
            precondition(residual.count == output.count, "Linear: a residual of \(residual.shape) for an output of \(output.shape)")
            output.data.update(from: residual.data, count: output.count)
            if let bias { addRowVector(arena.value(bias), into: output) }
        } else if let bias {
            fillRows(output, with: arena.value(bias))
        }
        gemm(input, arena.value(weight), transposingB: true, into: output, beta: residual != nil || bias != nil ? 1 : 0)
        return output
    }

    public func backward(_ outputGradient: Tensor) -> Tensor { backward(outputGradient, parametersDone: {}) }

    /// The same; calls `parametersDone` once the weight's and bias's gradients are final, before the
    /// input's gradient is computed (a point where an all-reduce of them can make progress).
    public func backward(_ outputGradient: Tensor, parametersDone: () throws -> Void) rethrows -> Tensor {
        guard let input else { preconditionFailure("Linear.backward before forward") }
        // dW += dyᵀ · x ; dx = dy · W ; db += Σ_rows dy
        gemm(outputGradient, transposingA: true, input, into: arena.gradient(weight), beta: 1)
        if let bias { addColumnSums(outputGradient, into: arena.gradient(bias)) }
        try parametersDone()
        let inputGradient = Tensor(uninitialized: input.shape)
        gemm(outputGradient, arena.value(weight), into: inputGradient)
        return inputGradient
    }
}

/// m[i, j] += v[j] for m [rows, columns], v [columns]: a bias added to every row.
public func addRowVector(_ v: Tensor, into m: Tensor) {
    let columns = m.columnCount
    precondition(v.count == columns, "addRowVector: \(v.shape) into rows of \(columns)")
    for row in 0..<m.rowCount {
        let r = m.data + row * columns
        for j in 0..<columns { r[j] += v.data[j] }
    }
}

/// m[i, j] = v[j] for m [rows, columns], v [columns]: a bias in C before a product with β = 1.
func fillRows(_ m: Tensor, with v: Tensor) {
    let columns = m.columnCount
    precondition(v.count == columns, "fillRows: \(v.shape) into rows of \(columns)")
    for row in 0..<m.rowCount { (m.data + row * columns).update(from: v.data, count: columns) }
}

/// into[j] += Σ_i m[i, j] for m [rows, columns].
public func addColumnSums(_ m: Tensor, into target: Tensor) {
    let columns = m.columnCount
    precondition(target.count == columns, "column sums of \(m.shape) into \(target.shape)")
    for row in 0..<m.rowCount {
        let source = m.data + row * columns
        for j in 0..<columns { target.data[j] += source[j] }
    }
}
