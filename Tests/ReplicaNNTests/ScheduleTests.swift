import Testing
import ReplicaCore
import ReplicaNN

/// Rates are computed in Double and rounded once to Float.
private let rateTolerance: Float = 1e-6

private func expectRates(_ policy: LearningRatePolicy, _ expected: [Int: Float], sourceLocation: SourceLocation = #_sourceLocation) {
    for (step, rate) in expected.sorted(by: { $0.key < $1.key }) {
        let actual = policy.rate(atStep: step)
        #expect(abs(actual - rate) <= rateTolerance * max(abs(rate), 1e-3), "step \(step): \(actual) vs \(rate)",
                sourceLocation: sourceLocation)
    }
}

@Suite struct ScheduleTests {
    @Test func constantWarmsUpLinearlyThenHolds() {
        let policy = LearningRatePolicy(baseRate: 1e-3, warmupSteps: 10, totalSteps: 100, schedule: .constant)
        expectRates(policy, [0: 1e-4, 4: 5e-4, 9: 1e-3, 10: 1e-3, 99: 1e-3, 1000: 1e-3])
    }

    @Test func constantWithoutWarmupStartsAtTheBaseRate() {
        let policy = LearningRatePolicy(baseRate: 0.5, totalSteps: 10, schedule: .constant)
        expectRates(policy, [0: 0.5, 7: 0.5])
    }

    @Test func cosineFollowsNanoGPTFromBaseToMinimum() {
        let policy = LearningRatePolicy(baseRate: 1, warmupSteps: 10, totalSteps: 110, schedule: .cosine)
        #expect(policy.minimumRate == 0.1)
        // Decay ratio (step − 10) / 100; rate = 0.1 + ½(1 + cos πr) · 0.9.
        expectRates(policy, [
            0: 0.1, 4: 0.5, 9: 1, 10: 1,
            35: 0.1 + 0.45 * (1 + Float(0.5.squareRoot())),
            60: 0.55,
            85: 0.1 + 0.45 * (1 - Float(0.5.squareRoot())),
            110: 0.1, 500: 0.1,
        ])
    }

    @Test func cosineUsesAnExplicitMinimumRate() {
        let policy = LearningRatePolicy(baseRate: 6e-4, warmupSteps: 0, totalSteps: 100, minimumRate: 0, schedule: .cosine)
        expectRates(policy, [0: 6e-4, 50: 3e-4, 100: 0, 101: 0])
    }

    @Test func inverseSquareRootPeaksAtTheBaseRateWhenWarmupEnds() {
        let policy = LearningRatePolicy(baseRate: 1, warmupSteps: 4, totalSteps: 100, schedule: .inverseSquareRoot)
        expectRates(policy, [0: 0.25, 1: 0.5, 3: 1, 15: 0.5, 99: 0.2])
        let noWarmup = LearningRatePolicy(baseRate: 1, totalSteps: 100, schedule: .inverseSquareRoot)
        expectRates(noWarmup, [0: 1, 3: 0.5, 8: 1 / 3])
    }

    @Test func schedulesParseFromTheirCommandLineSpelling() throws {
        #expect(try LearningRateSchedule.parse("constant") == .constant)
        #expect(try LearningRateSchedule.parse("cosine") == .cosine)
        #expect(try LearningRateSchedule.parse("inverse-sqrt") == .inverseSquareRoot)
        #expect(LearningRateSchedule(argument: "inverseSquareRoot") == nil)
        let error = #expect(throws: UserError.self) { try LearningRateSchedule.parse("linear") }
        for spelling in ["linear", "constant", "cosine", "inverse-sqrt"] {
            #expect(error?.description.contains(spelling) == true, "\(error?.description ?? "")")
        }
    }
}
