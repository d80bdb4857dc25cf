import Testing
@testable import ReplicaStudies

/// The charts' ticks (issue 21): round values 1, 2 or 5 × 10ᵏ apart, labelled with the decimals
/// their spacing needs, never "-3e-03" for zero.
@Suite struct PlotTicksTests {
    @Test func ticksAreRoundValues() {
        let small = LinePlot.niceTicks(lower: -0.003, upper: 0.16)
        #expect(small.step == 0.05)
        #expect(small.values.map { LinePlot.label($0, step: small.step) } == ["0.00", "0.05", "0.10", "0.15"])
        let accuracy = LinePlot.niceTicks(lower: 44.7, upper: 87.6)
        #expect(accuracy.values == [50, 60, 70, 80])
        #expect(accuracy.values.map { LinePlot.label($0, step: accuracy.step) } == ["50", "60", "70", "80"])
        let tiny = LinePlot.niceTicks(lower: 0, upper: 3e-4)
        #expect(tiny.values.map { LinePlot.label($0, step: tiny.step) } == ["0.0000", "0.0001", "0.0002", "0.0003"])
    }

    /// One notation an axis: "0.0 0.1 … 0.5", not "0 0.10 0.20"; "0.001 0.01 0.1 1 10", or all as
    /// powers of ten, not "1e-04 … 0.01 0.10 1".
    @Test func labelsOfAnAxisShareOneNotation() {
        #expect(LinePlot.labels(ofValues: [0, 0.1, 0.2, 0.3, 0.4, 0.5]) == ["0.0", "0.1", "0.2", "0.3", "0.4", "0.5"])
        #expect(LinePlot.labels(ofValues: [2, 4, 8, 16]) == ["2", "4", "8", "16"])
        #expect(LinePlot.labels(ofValues: [0.25, 0.5, 1]) == ["0.25", "0.50", "1.00"])
        #expect(LinePlot.labels(ofPowersOfTen: [-3, -2, -1, 0, 1]) == ["0.001", "0.01", "0.1", "1", "10"])
        #expect(LinePlot.labels(ofPowersOfTen: [-4, -3, -2, -1, 0]) == ["10⁻⁴", "10⁻³", "10⁻²", "10⁻¹", "10⁰"])
    }

    @Test func aLongTitleShrinksInsteadOfBeingCut() {
        var plot = LinePlot(title: String(repeating: "Relative Dirichlet energy ", count: 3), xLabel: "layers", yLabel: "energy")
        plot.series = [.init(name: "a", points: [(1, 1), (2, 2)])]
        let svg = svgDocument([plot], panelWidth: 380, panelHeight: 290)
        let size = svg.components(separatedBy: "font-size=\"")[2].prefix { $0 != "\"" }
        #expect((Double(size) ?? 99) < 13 && (Double(size) ?? 99) * 0.6 * 78 <= 380, "title font \(size)")
    }
}
