import Foundation

/// One panel of a line chart, drawn as SVG without any plotting library (the studies' figures).
public struct LinePlot: Sendable {
    public struct Series: Sendable {
        public var name: String
        public var points: [(x: Double, y: Double)]
        public var dashed = false
        public init(name: String, points: [(x: Double, y: Double)], dashed: Bool = false) {
            self.name = name
            self.points = points
            self.dashed = dashed
        }
    }
    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var logX = false
    public var logY = false
    public var series: [Series] = []
    public init(title: String, xLabel: String, yLabel: String, logX: Bool = false, logY: Bool = false) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.logX = logX
        self.logY = logY
    }

    static let colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]

    /// Round tick values (1, 2 or 5 × 10ᵏ apart) covering [lower, upper], about `target` of them, and
    /// their spacing; a value within a billionth of a step of 0 is 0.
    public static func niceTicks(lower: Double, upper: Double, target: Int = 5) -> (values: [Double], step: Double) {
        let span = max(upper - lower, 1e-300)
        let raw = span / Double(max(target, 1))
        let magnitude = pow(10, floor(log10(raw)))
        let residual = raw / magnitude
        let step = (residual <= 1 ? 1 : residual <= 2 ? 2 : residual <= 5 ? 5 : 10) * magnitude
        var values: [Double] = []
        var value = ceil(lower / step - 1e-9) * step
        while value <= upper + step * 1e-9 {
            values.append(abs(value) < step * 1e-9 ? 0 : value)
            value += step
        }
        return (values, step)
    }

    /// A tick label with as many decimals as the spacing `step` needs.
    public static func label(_ value: Double, step: Double) -> String {
        if abs(value) >= 1e6 || (step < 1e-4 && value != 0) { return String(format: "%.1e", value) }
        let decimals = max(0, Int(-floor(log10(step) + 1e-9)))
        return String(format: "%.\(decimals)f", value)
    }

    /// The panel as an SVG group at (originX, originY), `width` × `height` pixels: the title
    /// shrunk to fit, round ticks, and the legend in rows under the axis, clear of the data.
    func group(originX: Double, originY: Double, width: Double, height: Double) -> String {
        let legendRows = series.count > 1 || series.contains { !$0.name.isEmpty } ? series.count : 0
        let left = 62.0, right = 12.0, top = 28.0, bottom = 44.0 + 14 * Double(legendRows)
        let plotWidth = width - left - right, plotHeight = height - top - bottom
        func tx(_ x: Double) -> Double { logX ? log2(x) : x }
        func ty(_ y: Double) -> Double { logY ? log10(y) : y }
        let finite = series.flatMap(\.points).filter { $0.x.isFinite && $0.y.isFinite && (!logX || $0.x > 0) && (!logY || $0.y > 0) }
        var xs = finite.map { tx($0.x) }, ys = finite.map { ty($0.y) }
        if xs.isEmpty { xs = [0, 1]; ys = [0, 1] }
        var (xMin, xMax) = (xs.min()!, xs.max()!), (yMin, yMax) = (ys.min()!, ys.max()!)
        if xMax == xMin { xMin -= 0.5; xMax += 0.5 }
        if yMax == yMin { yMin -= 0.5; yMax += 0.5 }
        let yPad = (yMax - yMin) * 0.06
        yMin -= yPad; yMax += yPad
        func px(_ x: Double) -> Double { originX + left + (tx(x) - xMin) / (xMax - xMin) * plotWidth }
        func py(_ y: Double) -> Double { originY + top + (1 - (ty(y) - yMin) / (yMax - yMin)) * plotHeight }
        var svg = "<g font-family=\"sans-serif\" font-size=\"11\">\n"
        svg += String(format: "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#444\"/>\n",
                      originX + left, originY + top, plotWidth, plotHeight)
        let titleSize = Self.fittedFontSize(title, width: width - 8, largest: 13)
        svg += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"%.1f\">%@</text>\n",
                      originX + width / 2, originY + 17, titleSize, Self.escaped(title))
        svg += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%@</text>\n",
                      originX + left + plotWidth / 2, originY + top + plotHeight + 32, Self.escaped(xLabel))
        svg += String(format: "<text transform=\"translate(%.1f,%.1f) rotate(-90)\" text-anchor=\"middle\">%@</text>\n",
                      originX + 13, originY + top + plotHeight / 2, Self.escaped(yLabel))
        // x ticks: the data's values when there are few (ranks, layers, sizes), else round ones;
        // y ticks: round values, or the powers of ten on a log axis.
        let distinctX = Array(Set(finite.map(\.x))).sorted()
        let xTicks: [(Double, String)]
        if logX || distinctX.count <= 8 {
            xTicks = Array(zip(distinctX, Self.labels(ofValues: distinctX)))
        } else {
            let ticks = Self.niceTicks(lower: xMin, upper: xMax)
            xTicks = ticks.values.map { ($0, Self.label($0, step: ticks.step)) }
        }
        for (x, text) in xTicks {
            svg += String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444\"/>", px(x), originY + top + plotHeight,
                          px(x), originY + top + plotHeight + 4)
            svg += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%@</text>\n", px(x),
                          originY + top + plotHeight + 16, text)
        }
        let yTicks: [(Double, String)]
        if logY {
            let exponents = stride(from: ceil(yMin), through: floor(yMax), by: 1).map { Int($0) }
            yTicks = Array(zip(exponents.map { pow(10, Double($0)) }, Self.labels(ofPowersOfTen: exponents)))
        } else {
            let ticks = Self.niceTicks(lower: yMin, upper: yMax)
            yTicks = ticks.values.map { ($0, Self.label($0, step: ticks.step)) }
        }
        for (y, text) in yTicks {
            svg += String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>", originX + left, py(y),
                          originX + left + plotWidth, py(y))
            svg += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%@</text>\n", originX + left - 4, py(y) + 4, text)
        }
        for (index, line) in series.enumerated() {
            let colour = Self.colours[index % Self.colours.count]
            let points = line.points.filter { $0.x.isFinite && $0.y.isFinite && (!logX || $0.x > 0) && (!logY || $0.y > 0) }
            let path = points.map { String(format: "%.1f,%.1f", px($0.x), py($0.y)) }.joined(separator: " ")
            svg += "<polyline fill=\"none\" stroke=\"\(colour)\" stroke-width=\"2\"\(line.dashed ? " stroke-dasharray=\"6,4\"" : "") points=\"\(path)\"/>\n"
            if points.count <= 60 {
                for point in points {
                    svg += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%@\"/>", px(point.x), py(point.y), colour)
                }
            }
            guard legendRows > 0 else { continue }
            let legendY = originY + top + plotHeight + 48 + Double(index) * 14
            let legendX = originX + left
            svg += String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%@\" stroke-width=\"2\"%@/>",
                          legendX, legendY - 4, legendX + 20, legendY - 4, colour, line.dashed ? " stroke-dasharray=\"6,4\"" : "")
            svg += String(format: "<text x=\"%.1f\" y=\"%.1f\">%@</text>\n", legendX + 24, legendY, Self.escaped(line.name))
        }
        return svg + "</g>\n"
    }

    func inverseY(_ value: Double) -> Double { logY ? pow(10, value) : value }

    /// Labels of ticks at the data's own values (ranks, layers, fractions): one number of decimals
    /// for all, the fewest that writes each exactly (at most 4).
    static func labels(ofValues values: [Double]) -> [String] {
        let decimals = (0...4).first { d in
            let scale = pow(10, Double(d))
            return values.allSatisfy { abs($0 * scale - ($0 * scale).rounded()) < 1e-6 * max(1, abs($0 * scale)) }
        } ?? 4
        return values.map { abs($0) >= 1e6 ? String(format: "%.0e", $0) : String(format: "%.\(decimals)f", $0) }
    }

    /// Labels of a log axis's powers of ten, one notation for all: plain numbers (0.001 … 100000)
    /// when every exponent allows, else 10 with a superscript exponent.
    static func labels(ofPowersOfTen exponents: [Int]) -> [String] {
        if exponents.allSatisfy({ (-3...5).contains($0) }) {
            return exponents.map { $0 < 0 ? String(format: "%.\(-$0)f", pow(10, Double($0))) : String(format: "%.0f", pow(10, Double($0))) }
        }
        let superscripts: [Character: Character] = ["-": "⁻", "0": "⁰", "1": "¹", "2": "²", "3": "³", "4": "⁴", "5": "⁵",
                                                    "6": "⁶", "7": "⁷", "8": "⁸", "9": "⁹"]
        return exponents.map { "10" + String(String($0).map { superscripts[$0] ?? $0 }) }
    }

    /// The font size at which `text` fits `width` pixels, at most `largest`: about 0.6 em a
    /// character, so a long title gets a smaller font rather than being cut.
    static func fittedFontSize(_ text: String, width: Double, largest: Double) -> Double {
        min(largest, width / (0.6 * Double(max(text.count, 1))))
    }

    /// `text` safe inside an SVG element (the charts' titles, labels and tooltips).
    static func escaped(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
    }
}

/// Panels side by side in one SVG document.
public func svgDocument(_ panels: [LinePlot], panelWidth: Double = 380, panelHeight: Double = 290) -> String {
    let width = panelWidth * Double(panels.count)
    var svg = String(format: "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\">\n",
                     width, panelHeight, width, panelHeight)
    svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    for (index, panel) in panels.enumerated() {
        svg += panel.group(originX: Double(index) * panelWidth, originY: 0, width: panelWidth, height: panelHeight)
    }
    return svg + "</svg>\n"
}
