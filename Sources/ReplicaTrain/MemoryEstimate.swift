import Foundation
import ReplicaCore
import ReplicaModels

/// What one rank of a training run holds in memory, in bytes, by kind (DeepSpeed's
/// `estimate_zero2_model_states_mem_needs` counts the same model states: 4 bytes a parameter
/// each for the values, the gradients and each of AdamW's two moments in float32).
public struct MemoryEstimate: Sendable, Equatable {
    public var parameters: Int
    public var gradients: Int
    public var optimizerState: Int
    /// What forward keeps for backward, and the largest transient buffers of backward.
    public var activations: Int
    /// MPI's temporaries beyond the gradients themselves: Open MPI's non-blocking collectives
    /// allocate one the size of each bucket they reduce, and with overlap every bucket can be in
    /// flight at once, so as much as the gradients (docs/memory.md: measured at gpt2-small).
    public var communication: Int
    /// The process itself: code, libraries, MPI, the embedded data (measured at start-up).
    public var runtime: Int

    public var total: Int { parameters + gradients + optimizerState + activations + communication + runtime }

    /// The model states of `parameterCount` float32 parameters trained by Adam(W), with `activations`,
    /// MPI's temporaries when there is more than one rank, and this process's present
    /// resident set as the runtime. Under ZeRO-1 the moments are split over `optimizerShards` ranks.
    public static func dataParallel(parameterCount: Int, bufferCount: Int = 0, activations: Int,
                                    ranks: Int, optimizerShards: Int = 1, runtime: Int = MemoryEstimate.currentResidentBytes()) -> MemoryEstimate {
        let shardSize = (parameterCount + max(optimizerShards, 1) - 1) / max(optimizerShards, 1)
        return MemoryEstimate(parameters: 4 * (parameterCount + bufferCount), gradients: 4 * parameterCount, optimizerState: 8 * shardSize,
                       activations: activations, communication: ranks > 1 ? 4 * parameterCount : 0, runtime: runtime)
    }

    /// The same for a run with `options`: ZeRO-1 splits the moments over the ranks, and PowerSGD
    /// keeps an error buffer of one float a parameter (counted with the communication).
    public static func dataParallel(parameterCount: Int, bufferCount: Int = 0, activations: Int, ranks: Int,
                                    options: TrainingOptions) -> MemoryEstimate {
        var estimate = dataParallel(parameterCount: parameterCount, bufferCount: bufferCount, activations: activations, ranks: ranks,
                                    optimizerShards: options.zeroStage >= 1 ? ranks : 1)
        if options.gradientCompression == .powersgd && ranks > 1 { estimate.communication += 4 * parameterCount }
        return estimate
    }

    /// The parts in MiB, for summaries.
    public var megabytes: [String: Double] {
        func mb(_ bytes: Int) -> Double { Double(bytes) / 1_048_576 }
        return ["parameters": mb(parameters), "gradients": mb(gradients), "optimizer": mb(optimizerState),
                "activations": mb(activations), "communication": mb(communication), "runtime": mb(runtime), "total": mb(total)]
    }

    /// Refuses (a UserError) a run whose `localRanks` ranks on this machine would need more than the
    /// memory available: what it needs, by part, next to what there is, and what to lower.
    /// Refused above 90% of what is available: the rest is the other processes' room to grow and
    /// the estimate's margin. The runtime is already resident, so it is no longer in what is
    /// available: only the rest of each rank's estimate is still to be allocated (a rank's data
    /// set, such as the 2.4 GB of a graph of ogbn-products' size, was counted twice before). The
    /// caller makes sure every local rank has started (and loaded its data) first.
    public func check(_ what: String, localRanks: Int, available: Int? = MemoryEstimate.availableBytes(), advice: String) throws {
        guard let available else { return }
        let needed = max(total - runtime, 0).multipliedReportingOverflow(by: max(localRanks, 1))
        guard needed.overflow || Double(needed.partialValue) > 0.9 * Double(available) else { return }
        func gib(_ bytes: Int) -> String { String(format: "%.1f GiB", Double(bytes) / 1_073_741_824) }
        let parts = "parameters \(gib(parameters)), gradients \(gib(gradients)), optimizer state \(gib(optimizerState)), "
            + "activations \(gib(activations)), communication \(gib(communication)), runtime \(gib(runtime))"
        let ranks = localRanks > 1 ? " × \(localRanks) ranks on this machine" : ""
        throw UserError("\(what) needs about \(gib(total)) a rank (\(parts))\(ranks), of which \(gib(total - runtime)) a rank is still to be allocated, but this machine has \(gib(available)) available (a run may use 90% of it); \(advice)")
    }

    /// MemAvailable of /proc/meminfo (what can be allocated without swapping), or nil if unknown.
    public static func availableBytes() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("MemAvailable:") }),
              let kib = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else { return nil }
        return kib * 1024
    }

    /// This process's resident set now (/proc/self/statm), or 0 if unknown.
    public static func currentResidentBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
              let pages = text.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}

extension GPTConfig {
    /// Parameters of the GPT of this shape: token and position tables, 12C² + 2C a block
    /// (attention 4C², MLP 8C², two norm weights; BatchNorm adds a bias each), the final norm.
    public var parameterCount: Int {
        let C = embedding, normWeights = norm == .batch ? 2 * C : C   // BatchNorm: weight and bias
        return vocabularySize * C + blockSize * C + layerCount * (12 * C * C + 2 * normWeights) + normWeights
    }

    /// Bytes of activations of one micro-batch of `batch` sequences of the block size, float32:
    /// per block what forward keeps for backward (with N = B·T: the two norms' normalised inputs
    /// and outputs, q·k·v, the attention output, the MLP's GELU output and derivative (4C each), the
    /// projections and residual sums: 20·N·C; the attention's log-sum-exp a query and head, N·H
    /// (the tiled kernel keeps no T×T probabilities); dropout masks
    /// 2·N·C), the embeddings and the head (the logits and their probabilities, which backward
    /// turns into their gradient: 2·N·V), and
    /// backward's largest transient buffers (8·N·C). One block more than the model has: the next
    /// forward (the next step's, or the evaluation's) allocates a block's new activations before
    /// that block's old ones are released.
    public func activationBytes(batch B: Int) -> Int {
        // In Double: an absurd block size must give an absurd estimate, not an overflow trap.
        let N = Double(B) * Double(blockSize), C = Double(embedding)
        let perBlock = (dropout > 0 ? 22 : 20) * N * C + N * Double(headCount)
        let bytes = 4 * (Double(layerCount + 1) * perBlock + 12 * N * C + 2 * N * Double(vocabularySize))
        return bytes < 1e18 ? Int(bytes) : Int(1e18)
    }
}

extension GPTConfig {
    /// A charlm rank's memory with these training options (its vocabulary is the data's, about
    /// the size of `vocabularySize`), and what to lower when it does not fit.
    public func memoryEstimate(options: TrainingOptions, ranks: Int) -> (estimate: MemoryEstimate, advice: String) {
        let estimate = MemoryEstimate.dataParallel(parameterCount: parameterCount, bufferCount: norm == .batch ? 2 * embedding * (2 * layerCount + 1) : 0,
                                                   activations: activationBytes(batch: options.batchSize), ranks: ranks,
                                                   options: options)
        return (estimate, "lower --batch-size (\(options.batchSize)) or --block-size (\(blockSize)), or choose a smaller model")
    }
}
