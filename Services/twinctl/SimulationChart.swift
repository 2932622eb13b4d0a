import Foundation
import JSON

/// Renders a completed simulation result as a standalone SVG a browser opens: one panel per
/// series against time (Monte Carlo: the p5–p95 band as a shaded fan around the median), the
/// threshold as a dashed line; a sweep as the final value against its first axis, one line per
/// value of the second.
enum SimulationChart {
    static let width = 900.0
    static let panelHeight = 230.0
    static let left = 80.0, right = 30.0, top = 56.0, gap = 44.0
    static let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"]

    static func svg(_ r: JSON, title: String) -> String {
        var panels: [Panel] = []
        let threshold = r["threshold"]
        let thresholdLevel = threshold?["above"]?.doubleValue ?? threshold?["below"]?.doubleValue
        if let points = r["points"]?.arrayValue, let axes = r["axes"]?.arrayValue?.compactMap(\.stringValue), let first = axes.first {
            // Sweep: final value against the first axis, a line per second-axis value.
            var lines: [String: [(Double, Double)]] = [:]
            var order: [String] = []
            for p in points {
                guard let c = p["coordinates"], let x = c[first]?.doubleValue, let y = p["final"]?.doubleValue else { continue }
                let label = axes.count > 1 ? "\(axes[1]) = \(fmt(c[axes[1]]?.doubleValue ?? .nan))" : "final \(r["quantity"]?.stringValue ?? "")"
                if lines[label] == nil { order.append(label) }
                lines[label, default: []].append((x, y))
            }
            panels.append(Panel(title: "\(r["quantity"]?.stringValue ?? "") at the horizon", xLabel: first,
                                lines: order.map { ($0, lines[$0]!) }, band: nil, level: threshold?["series"]?.stringValue == r["quantity"]?.stringValue ? thresholdLevel : nil, markers: true))
        } else if let times = r["times"]?.arrayValue?.compactMap(\.doubleValue), let series = r["series"]?.objectValue {
            let horizon = times.last ?? 0
            let (unit, scale) = horizon >= 7200 ? ("h", 3600.0) : horizon >= 120 ? ("min", 60.0) : ("s", 1.0)
            let xs = times.map { $0 / scale }
            for (name, values) in series {
                let ys = values.arrayValue?.map { $0.doubleValue ?? .nan } ?? []
                var band: (low: [(Double, Double)], high: [(Double, Double)])?
                if let b = r["bands"]?[name], let p5 = b["p5"]?.arrayValue?.compactMap(\.doubleValue), let p95 = b["p95"]?.arrayValue?.compactMap(\.doubleValue) {
                    band = (Array(zip(xs, p5)), Array(zip(xs, p95)))
                }
                let label = band == nil ? name : "\(name) median (p5–p95 shaded)"
                panels.append(Panel(title: name, xLabel: "time (\(unit))", lines: [(label, Array(zip(xs, ys)))], band: band,
                                    level: threshold?["series"]?.stringValue == name ? thresholdLevel : nil, markers: false))
            }
        }
        let height = top + Double(max(1, panels.count)) * (panelHeight + gap) + 10
        var s = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="Helvetica, Arial, sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(left)" y="26" font-size="17" font-weight="bold">\(escape(title))</text>

        """
        var subtitle = r["simulationId"]?.stringValue ?? ""
        if let p = r["probability"], let t = threshold {
            subtitle += String(format: " · P(%@ %@ %@ within the horizon) = %.3f [%.3f, %.3f], %d samples", t["series"]?.stringValue ?? "", t["above"] != nil ? ">" : "<",
                               fmt(thresholdLevel ?? .nan), p["value"]?.doubleValue ?? .nan, p["low"]?.doubleValue ?? .nan, p["high"]?.doubleValue ?? .nan, p["samples"]?.intValue ?? 0)
        }
        s += "<text x=\"\(left)\" y=\"44\" fill=\"#555\">\(escape(subtitle))</text>\n"
        if panels.isEmpty {
            s += "<text x=\"\(left)\" y=\"\(top + 40)\">This result has no series to chart (a calibration: see the printed fit).</text>\n"
        }
        for (i, panel) in panels.enumerated() {
            s += panel.render(y0: top + Double(i) * (panelHeight + gap), color: colors[i % colors.count])
        }
        return s + "</svg>\n"
    }

    struct Panel {
        var title: String
        var xLabel: String
        var lines: [(String, [(Double, Double)])]
        var band: (low: [(Double, Double)], high: [(Double, Double)])?
        var level: Double?
        var markers: Bool

        func render(y0: Double, color: String) -> String {
            let plotW = width - left - right, plotH = panelHeight - 40
            var allX: [Double] = [], allY: [Double] = []
            for (_, pts) in lines { for (x, y) in pts where x.isFinite && y.isFinite { allX.append(x); allY.append(y) } }
            if let band { for (x, y) in band.low + band.high where y.isFinite { allX.append(x); allY.append(y) } }
            if let level { allY.append(level) }
            guard let x0 = allX.min(), let x1 = allX.max(), let ymin = allY.min(), let ymax = allY.max() else { return "" }
            let yTicks = niceTicks(ymin, ymax), xTicks = niceTicks(x0, x1)
            let ya = min(ymin, yTicks.first ?? ymin), yb = max(ymax, yTicks.last ?? ymax)
            let xa = x0, xb = x1 > x0 ? x1 : x0 + 1
            let yRange = yb > ya ? yb - ya : 1
            func px(_ x: Double) -> Double { left + (x - xa) / (xb - xa) * plotW }
            func py(_ y: Double) -> Double { y0 + 20 + plotH - (y - ya) / yRange * plotH }
            var s = "<g>\n<text x=\"\(left)\" y=\"\(y0 + 12)\" font-weight=\"bold\">\(escape(title))</text>\n"
            s += "<rect x=\"\(left)\" y=\"\(y0 + 20)\" width=\"\(plotW)\" height=\"\(plotH)\" fill=\"#fafafa\" stroke=\"#999\"/>\n"
            for t in yTicks where t >= ya && t <= yb {
                s += "<line x1=\"\(left)\" x2=\"\(left + plotW)\" y1=\"\(py(t))\" y2=\"\(py(t))\" stroke=\"#e3e3e3\"/>"
                s += "<text x=\"\(left - 6)\" y=\"\(py(t) + 4)\" text-anchor=\"end\">\(fmt(t))</text>\n"
            }
            for t in xTicks where t >= xa && t <= xb {
                s += "<line x1=\"\(px(t))\" x2=\"\(px(t))\" y1=\"\(y0 + 20)\" y2=\"\(y0 + 20 + plotH)\" stroke=\"#eeeeee\"/>"
                s += "<text x=\"\(px(t))\" y=\"\(y0 + 20 + plotH + 15)\" text-anchor=\"middle\">\(fmt(t))</text>\n"
            }
            s += "<text x=\"\(left + plotW / 2)\" y=\"\(y0 + 20 + plotH + 31)\" text-anchor=\"middle\" fill=\"#555\">\(escape(xLabel))</text>\n"
            if let band {
                let outline = band.high.map { "\(px($0.0)),\(py($0.1))" } + band.low.reversed().map { "\(px($0.0)),\(py($0.1))" }
                s += "<polygon points=\"\(outline.joined(separator: " "))\" fill=\"\(color)\" fill-opacity=\"0.22\" stroke=\"none\"/>\n"
                for edge in [band.low, band.high] {
                    s += "<polyline points=\"\(edge.map { "\(px($0.0)),\(py($0.1))" }.joined(separator: " "))\" fill=\"none\" stroke=\"\(color)\" stroke-opacity=\"0.5\" stroke-width=\"0.8\"/>\n"
                }
            }
            if let level {
                s += "<line x1=\"\(left)\" x2=\"\(left + plotW)\" y1=\"\(py(level))\" y2=\"\(py(level))\" stroke=\"#333\" stroke-dasharray=\"6 4\"/>"
                s += "<text x=\"\(left + plotW - 4)\" y=\"\(py(level) - 4)\" text-anchor=\"end\" fill=\"#333\">threshold \(fmt(level))</text>\n"
            }
            // Legend on a white box so a threshold or band behind it stays legible.
            let legendWidth = 30 + 7 * Double(lines.map(\.0.count).max() ?? 0)
            s += "<rect x=\"\(left + 4)\" y=\"\(y0 + 24)\" width=\"\(legendWidth)\" height=\"\(Double(lines.count) * 16 + 2)\" fill=\"white\" fill-opacity=\"0.85\"/>\n"
            for (i, (label, pts)) in lines.enumerated() {
                let c = lines.count == 1 ? color : colors[i % colors.count]
                let path = pts.filter { $0.1.isFinite }.map { "\(px($0.0)),\(py($0.1))" }.joined(separator: " ")
                s += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(c)\" stroke-width=\"2\"/>\n"
                if markers { for (x, y) in pts where y.isFinite { s += "<circle cx=\"\(px(x))\" cy=\"\(py(y))\" r=\"3\" fill=\"\(c)\"/>" } }
                let ly = y0 + 32 + Double(i) * 16
                s += "<line x1=\"\(left + 10)\" x2=\"\(left + 30)\" y1=\"\(ly)\" y2=\"\(ly)\" stroke=\"\(c)\" stroke-width=\"2\"/>"
                s += "<text x=\"\(left + 36)\" y=\"\(ly + 4)\">\(escape(label))</text>\n"
            }
            return s + "</g>\n"
        }
    }

    /// About six round tick values covering [a, b].
    static func niceTicks(_ a: Double, _ b: Double) -> [Double] {
        guard a.isFinite, b.isFinite else { return [] }
        let span = b > a ? b - a : max(abs(a), 1) * 0.1
        let raw = span / 5
        let magnitude = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 2.5, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? magnitude * 10
        let start = floor((b > a ? a : a - span / 2) / step) * step
        return (0...12).map { start + Double($0) * step }.filter { $0 <= (b > a ? b : a + span / 2) + step * 0.5 }
    }

    static func fmt(_ x: Double) -> String {
        if x == x.rounded() && abs(x) < 1e9 { return String(Int64(x)) }
        return String(format: "%.4g", x)
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
