import Foundation
import ReplicaCore

/// Faults for tests and demonstrations, from `REPLICA_FAULT` (docs/interface.md); inert when unset.
///
/// `kill:rank=R:step=S` (SIGKILL before step S), `nan:rank=R:step=S` (NaN loss at step S),
/// `stall:rank=R:step=S:seconds=T`, `crash-during-checkpoint:step=S`; several separated by `;`.
/// Steps are 1-based, as the progress bar counts them.
public struct FaultPlan: Sendable, Equatable {
    public enum Kind: String, Sendable { case kill, nan, stall, crashDuringCheckpoint = "crash-during-checkpoint" }
    public struct Fault: Sendable, Equatable {
        public var kind: Kind
        public var rank: Int?
        public var step: Int
        public var seconds: Double = 0
    }
    public var faults: [Fault] = []

    public init(faults: [Fault] = []) { self.faults = faults }

    /// The plan in `REPLICA_FAULT`, or an empty one.
    public static func fromEnvironment() throws -> FaultPlan {
        guard let text = ProcessInfo.processInfo.environment["REPLICA_FAULT"], !text.isEmpty else { return FaultPlan() }
        return try parse(text)
    }

    public static func parse(_ text: String) throws -> FaultPlan {
        var plan = FaultPlan()
        for item in text.split(separator: ";") where !item.trimmingCharacters(in: .whitespaces).isEmpty {
            let parts = item.trimmingCharacters(in: .whitespaces).split(separator: ":").map(String.init)
            guard let kind = Kind(rawValue: parts[0]) else {
                throw UserError("REPLICA_FAULT: unknown fault '\(parts[0])'; use kill, nan, stall or crash-during-checkpoint")
            }
            var fields: [String: String] = [:]
            for part in parts.dropFirst() {
                let pair = part.split(separator: "=", maxSplits: 1).map(String.init)
                guard pair.count == 2 else { throw UserError("REPLICA_FAULT: '\(part)' in '\(item)' is not key=value") }
                fields[pair[0]] = pair[1]
            }
            guard let step = fields["step"].flatMap(Int.init), step >= 1 else {
                throw UserError("REPLICA_FAULT: '\(item)' needs step=S (S ≥ 1)")
            }
            let rank = try fields["rank"].map { value -> Int in
                guard let rank = Int(value), rank >= 0 else { throw UserError("REPLICA_FAULT: rank=\(value) in '\(item)' is not a rank") }
                return rank
            }
            if kind != .crashDuringCheckpoint && rank == nil { throw UserError("REPLICA_FAULT: '\(item)' needs rank=R") }
            var fault = Fault(kind: kind, rank: rank, step: step)
            if kind == .stall {
                guard let seconds = fields["seconds"].flatMap(Double.init), seconds >= 0 else {
                    throw UserError("REPLICA_FAULT: '\(item)' needs seconds=T")
                }
                fault.seconds = seconds
            }
            plan.faults.append(fault)
        }
        return plan
    }

    func matches(_ kind: Kind, rank: Int, step: Int) -> Fault? {
        faults.first { $0.kind == kind && $0.step == step && ($0.rank == nil || $0.rank == rank) }
    }

    /// Kill or stall this rank before step `step` (1-based) if the plan says so.
    public func beforeStep(_ step: Int, rank: Int) {
        if matches(.kill, rank: rank, step: step) != nil {
            FileHandle.standardError.write(Data("[rank \(rank)] REPLICA_FAULT: killing myself before step \(step)\n".utf8))
            kill(getpid(), SIGKILL)
        }
        if let stall = matches(.stall, rank: rank, step: step) {
            FileHandle.standardError.write(Data("[rank \(rank)] REPLICA_FAULT: stalling \(stall.seconds) s before step \(step)\n".utf8))
            Thread.sleep(forTimeInterval: stall.seconds)
        }
    }

    /// Whether this rank's loss is to be NaN at step `step` (1-based).
    public func poisonsLoss(step: Int, rank: Int) -> Bool { matches(.nan, rank: rank, step: step) != nil }

    /// Whether rank 0 is to die midway through writing the checkpoint of step `step`.
    public func crashesDuringCheckpoint(step: Int) -> Bool { matches(.crashDuringCheckpoint, rank: 0, step: step) != nil }
}
