import Foundation
import ReplicaCore

/// How the learning rate changes after warmup; the command-line spelling is the raw value.
public enum LearningRateSchedule: String, CaseIterable, Sendable {
    /// Linear warmup, then the base rate.
    case constant
    /// Linear warmup, then cosine decay from the base to the minimum rate (nanoGPT's `get_lr`).
    case cosine
    /// Linear warmup, then base·√(warmup/(step+1)) (Vaswani et al. 2017, peak = base).
    case inverseSquareRoot = "inverse-sqrt"

    /// The schedule spelled `argument` ("constant", "cosine", "inverse-sqrt"), or nil.
    public init?(argument: String) { self.init(rawValue: argument) }

    /// The schedule spelled `argument`; throws `UserError` listing the allowed spellings.
    public static func parse(_ argument: String) throws -> LearningRateSchedule {
        guard let schedule = LearningRateSchedule(argument: argument) else {
            let allowed = allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
            throw UserError("unknown learning-rate schedule \"\(argument)\"; use one of \(allowed).")
        }
        return schedule
    }
}

/// The learning rate for each optimiser step, counted from 0.
public struct LearningRatePolicy: Sendable, Equatable {
    public var baseRate: Float          // peak rate; nanoGPT shakespeare-char: 1e-3
    public var warmupSteps: Int         // linear ramp length; nanoGPT shakespeare-char: 100
    public var totalSteps: Int          // cosine reaches minimumRate here (nanoGPT's lr_decay_iters)
    public var minimumRate: Float       // cosine floor; default baseRate / 10 (nanoGPT's min_lr)
    public var schedule: LearningRateSchedule

    public init(baseRate: Float, warmupSteps: Int = 0, totalSteps: Int, minimumRate: Float? = nil,
                schedule: LearningRateSchedule = .cosine) {
        precondition(warmupSteps >= 0 && totalSteps >= 0,
                     "LearningRatePolicy: warmup \(warmupSteps) and total \(totalSteps) steps must be non-negative")
        self.baseRate = baseRate
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
        self.minimumRate = minimumRate ?? baseRate / 10
        self.schedule = schedule
    }

    /// The rate for step `step` (0-based): warmup base·(step+1)/warmup, then the schedule.
    public func rate(atStep step: Int) -> Float {
        precondition(step >= 0, "LearningRatePolicy: step must be non-negative, got \(step)")
        let base = Double(baseRate), s = Double(step + 1)
        switch schedule {
        case .constant:
            return step < warmupSteps ? Float(base * s / Double(warmupSteps)) : baseRate
        case .cosine:
            if step < warmupSteps { return Float(base * s / Double(warmupSteps)) }
            if step >= totalSteps { return minimumRate }
            let minimum = Double(minimumRate)
            let ratio = Double(step - warmupSteps) / Double(totalSteps - warmupSteps)   // in [0, 1)
            let coefficient = 0.5 * (1 + cos(Double.pi * ratio))
            return Float(minimum + coefficient * (base - minimum))
        case .inverseSquareRoot:
            // With no warmup, peak at step 0: the same as a one-step warmup.
            let warmup = Double(max(warmupSteps, 1))
            return Float(base * min(s / warmup, (warmup / s).squareRoot()))
        }
    }
}
