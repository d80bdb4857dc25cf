import Foundation
import ReplicaCore
import ReplicaNN

/// Tensors streamed into one safetensors file of a checkpoint: names and shapes, and their bytes,
/// produced in entry order (`SafeTensors.write(streaming:)`). When producing them takes part in
/// collectives (ZeRO's gathers of the optimizer state, PowerSGD's error buffers of every rank),
/// every rank must run all of them, in order: rank 0 writes, the others call `finish()`, and so
/// does rank 0 after a failed write, running those it had not reached with their bytes discarded.
public final class TensorStream {
    public let entries: [(name: String, shape: [Int])]
    private let produceEntry: (Int, (UnsafeRawBufferPointer) throws -> Void) throws -> Void
    private var next = 0

    public init(entries: [(name: String, shape: [Int])], produce: @escaping (Int, (UnsafeRawBufferPointer) throws -> Void) throws -> Void) {
        self.entries = entries
        self.produceEntry = produce
    }

    /// Hands `write` tensor `index`'s bytes; entries are produced once each, in order.
    public func produce(_ index: Int, _ write: (UnsafeRawBufferPointer) throws -> Void) throws {
        precondition(index == next, "TensorStream: entry \(index) produced out of order (next is \(next))")
        next += 1
        try produceEntry(index, write)
    }

    /// Produces the entries not produced yet, discarding their bytes (the collectives still run).
    public func finish() throws {
        while next < entries.count { try produce(next) { _ in } }
    }

    /// An optimizer that holds its whole state (no ZeRO): its buffers as they are.
    public static func whole(_ optimizer: Optimizer) -> TensorStream {
        let state = optimizer.stateBuffers().sorted { $0.key < $1.key }
        return TensorStream(entries: state.map { ($0.key, $0.value.shape) }) { index, write in
            try write(UnsafeRawBufferPointer(state[index].value.buffer))
        }
    }
}

/// Checkpoint folders (docs/interface.md): `step-NNNNNNNN/` with `model.safetensors`, `optimizer.safetensors`
/// and `state.json` (and `compression.safetensors` with PowerSGD), written atomically, and a
/// `latest` file naming the newest complete one.
public enum Checkpoint {
    public static let formatVersion = 1

    /// What a checkpoint holds once read and checked.
    public struct Contents {
        public let folder: URL
        public let model: [String: Tensor]
        public let optimizer: [String: Tensor]
        public let state: [String: Any]
        public var step: Int { state["step"] as? Int ?? 0 }
        public var task: String { state["task"] as? String ?? "" }
    }

    /// PowerSGD's state (`--grad-compression powersgd`): its warm-start matrices and every rank's error buffer.
    public static let compressionFile = "compression.safetensors"

    public static func folderName(step: Int) -> String { String(format: "step-%08d", step) }

    /// Fails before training if `directory` cannot be created or written (full, read-only).
    public static func preflight(_ directory: URL, bytesNeeded: Int = 0,
                                 availableBytes: (URL) -> Int? = Checkpoint.availableBytes) throws {
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let probe = directory.appendingPathComponent(".write-test-\(getpid())")
            try AtomicDirectory.writeFileAtomically(Data(repeating: 0, count: 4096), to: probe)
            try FileManager.default.removeItem(at: probe)
            // Half-written folders of runs that died while writing a checkpoint.
            AtomicDirectory.removeLeftovers(in: directory)
        } catch {
            throw UserError("\(directory.path): the checkpoint directory is not writable (\(error)); choose another --checkpoint-dir")
        }
        // The new checkpoint is written beside the last one before the rename: room for two.
        if bytesNeeded > 0, let free = availableBytes(directory), free < 2 * bytesNeeded {
            throw UserError(String(format: "%@: the checkpoint directory has %.1f MB free, but a checkpoint needs %.1f MB (and room for two while one is written); free space or choose another --checkpoint-dir",
                                   directory.path, Double(free) / 1e6, Double(bytesNeeded) / 1e6))
        }
    }

    /// Bytes the file system holding `directory` has free for this user, or nil if unknown.
    public static func availableBytes(_ directory: URL) -> Int? {
        var status = statvfs()
        guard statvfs(directory.path, &status) == 0 else { return nil }
        return Int(status.f_bavail) * Int(status.f_frsize)
    }

    /// About how large a checkpoint of `arena` is: the model (parameters and buffers) and the
    /// optimizer's moments (two per parameter for Adam), as float32, plus headers and state.json,
    /// and with PowerSGD the `errorBuffers` ranks' error feedback (one float a parameter each).
    public static func estimatedBytes(arena: ParameterArena, errorBuffers: Int = 0) -> Int {
        4 * ((3 + errorBuffers) * arena.count + arena.bufferCount) + (1 << 20)
    }

    /// Writes the checkpoint of `step` atomically and points `latest` at it. Returns its folder.
    @discardableResult
    public static func save(in directory: URL, step: Int, arena: ParameterArena, extraTensors: [(String, Tensor)] = [],
                            optimizer: TensorStream, compression: TensorStream? = nil, state: [String: Any],
                            beforeRename: (() -> Void)? = nil) throws -> URL {
        let name = folderName(step: step)
        let folder = directory.appendingPathComponent(name)
        try AtomicDirectory.write(to: folder) { temporary in
            var modelTensors = arena.slots.map { ($0.name, arena.value($0)) }
            modelTensors += arena.bufferSlots.map { ($0.name, arena.buffer($0)) }
            modelTensors += extraTensors
            try SafeTensors.write(modelTensors.map { (name: $0.0, tensor: $0.1) }, metadata: ["format": "pt"],
                                  to: temporary.appendingPathComponent("model.safetensors"))
            try SafeTensors.write(streaming: optimizer.entries, to: temporary.appendingPathComponent("optimizer.safetensors"),
                                  produce: optimizer.produce)
            if let compression {
                try SafeTensors.write(streaming: compression.entries, to: temporary.appendingPathComponent(compressionFile),
                                      produce: compression.produce)
            }
            var fullState = state
            fullState["step"] = step
            fullState["format_version"] = formatVersion
            let json = try JSONSerialization.data(withJSONObject: fullState, options: [.sortedKeys, .prettyPrinted])
            try json.write(to: temporary.appendingPathComponent("state.json"))
            beforeRename?()
        }
        try AtomicDirectory.writeFileAtomically(Data((name + "\n").utf8), to: directory.appendingPathComponent("latest"))
        return folder
    }

    /// `path` itself when it is a checkpoint folder, else the newest complete checkpoint inside it
    /// (so commands take a step folder or a --checkpoint-dir alike).
    public static func folder(forPath path: String) -> URL {
        let url = URL(fileURLWithPath: path)
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("state.json").path) { return url }
        return newest(in: url) ?? url
    }

    /// The newest complete checkpoint folder in `directory`: the one `latest` names, else the highest step folder.
    public static func newest(in directory: URL) -> URL? {
        let latest = directory.appendingPathComponent("latest")
        if let text = try? String(contentsOf: latest, encoding: .utf8) {
            let folder = directory.appendingPathComponent(text.trimmingCharacters(in: .whitespacesAndNewlines))
            if isComplete(folder) { return folder }
        }
        return CheckpointFolder.stepFolders(in: directory).reversed().first(where: isComplete)
    }

    static func isComplete(_ folder: URL) -> Bool {
        ["model.safetensors", "optimizer.safetensors", "state.json"].allSatisfy {
            FileManager.default.fileExists(atPath: folder.appendingPathComponent($0).path)
        }
    }

    /// Reads and checks a checkpoint folder; anything missing or malformed is a UserError naming the file.
    /// Without `readingOptimizer` the optimizer state is left in its file (a ZeRO rank reads only its shard).
    public static func load(_ folder: URL, readingOptimizer: Bool = true) throws -> Contents {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw UserError("\(folder.path): no checkpoint folder there")
        }
        let stateURL = folder.appendingPathComponent("state.json")
        guard let stateData = FileManager.default.contents(atPath: stateURL.path) else {
            throw UserError("\(stateURL.path): missing; not a complete checkpoint")
        }
        guard let state = (try? JSONSerialization.jsonObject(with: stateData)) as? [String: Any] else {
            throw UserError("\(stateURL.path): not a JSON object; the checkpoint is damaged")
        }
        guard let version = state["format_version"] as? Int, version == formatVersion else {
            throw UserError("\(stateURL.path): checkpoint format \(state["format_version"] ?? "none") is not \(formatVersion), the format this replica reads")
        }
        guard state["task"] is String, state["step"] is Int else {
            throw UserError("\(stateURL.path): lacks \"task\" or \"step\"; the checkpoint is damaged")
        }
        let model = try SafeTensors.read(from: folder.appendingPathComponent("model.safetensors")).tensors
        let optimizerURL = folder.appendingPathComponent("optimizer.safetensors")
        let optimizer = readingOptimizer && FileManager.default.fileExists(atPath: optimizerURL.path) ? try SafeTensors.read(from: optimizerURL).tensors : [:]
        return Contents(folder: folder, model: model, optimizer: optimizer, state: state)
    }

    /// Copies the checkpoint's parameters and buffers into `arena`; every name must be there with its shape.
    public static func restore(_ contents: Contents, into arena: ParameterArena) throws {
        let file = contents.folder.appendingPathComponent("model.safetensors").path
        for (slot, isBuffer) in arena.slots.map({ ($0, false) }) + arena.bufferSlots.map({ ($0, true) }) {
            guard let tensor = contents.model[slot.name] else {
                throw UserError("\(file): has no tensor \(slot.name); the checkpoint is of another model or configuration")
            }
            guard tensor.shape == slot.shape else {
                throw UserError("\(file): \(slot.name) has shape \(tensor.shape), the model needs \(slot.shape)")
            }
            (isBuffer ? arena.buffer(slot) : arena.value(slot)).assign(tensor)
        }
    }

    /// The task the checkpoint was written by must be `task`.
    public static func requireTask(_ contents: Contents, _ task: String) throws {
        guard contents.task == task else {
            throw UserError("\(contents.folder.path): is a checkpoint of task '\(contents.task)', not '\(task)'")
        }
    }
}
