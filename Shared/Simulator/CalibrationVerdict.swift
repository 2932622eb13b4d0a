import Contracts
import Foundation
import Models
import ServiceKit

/// The verdict on a calibration result: apply (or propose) it, or why not.
public enum CalibrationVerdict: Equatable, Sendable {
    case better
    /// The fit did not converge, or the property's RMS did not drop by `RECALIBRATE_MIN_GAIN`.
    case notImproved(reason: String, message: String)
    /// A fitted parameter lies outside the model's range (or is not finite).
    case outOfRange(message: String)
    /// The simulation failed, was refused or cancelled, or has no fit.
    case failed(reason: String, message: String)

    /// The metric's outcome label.
    public var outcome: String {
        switch self {
        case .better: "applied"
        case .notImproved: "not_improved"
        case .outOfRange: "out_of_range"
        case .failed: "failed"
        }
    }

    /// Judges `result` for the drifting `property`: converged, RMS down by at least `minGain`,
    /// every fitted parameter finite and within the model's range.
    public static func judge(_ result: SimulationResult, property: String, model: TwinModel, minGain: Double) -> CalibrationVerdict {
        guard result.status == .completed else {
            let code = result.reason?.code ?? result.status.rawValue
            return .failed(reason: code, message: "the calibration ended \(result.status.rawValue)" + (result.reason.map { ": \($0.message)" } ?? ""))
        }
        guard let fit = result.fit else { return .failed(reason: "no_fit", message: "the completed calibration carries no fit") }
        guard fit.converged else {
            return .notImproved(reason: "not_converged", message: "the fit did not converge in \(fit.iterations) iterations (\(fit.message))")
        }
        guard let before = fit.rmsBefore[property], let after = fit.rmsAfter[property], before.isFinite, after.isFinite else {
            return .failed(reason: "no_rms", message: "the fit reports no RMS for \(property)")
        }
        let gain = gain(before: before, after: after)
        guard gain >= minGain else {
            return .notImproved(reason: "not_improved",
                                message: "the fit lowers the RMS of \(property) from \(number(before)) to \(number(after)) (\(percent(gain))), less than RECALIBRATE_MIN_GAIN \(percent(minGain))")
        }
        for (name, value) in fit.parameters.sorted(by: { $0.key < $1.key }) {
            guard let p = model.parameters.first(where: { $0.name == name }) else { continue }
            if !value.isFinite || p.minimum.map({ value < $0 }) == true || p.maximum.map({ value > $0 }) == true {
                let range = "[\(p.minimum.map(number) ?? "-∞"), \(p.maximum.map(number) ?? "∞")]"
                return .outOfRange(message: "the fitted \(name) \(number(value)) lies outside the model's range \(range)")
            }
        }
        return .better
    }

    /// Relative drop of the RMS (1 − after/before); 0 when there was nothing to lower.
    public static func gain(before: Double, after: Double) -> Double { before > 0 ? 1 - after / before : 0 }

    /// Judges `result` for every property it fitted (what an operator's apply call checks: the
    /// API does not know which property drifted).
    public static func judgeAll(_ result: SimulationResult, model: TwinModel, minGain: Double) -> CalibrationVerdict {
        let properties = result.fit?.rmsBefore.keys.sorted() ?? []
        for property in properties {
            let verdict = judge(result, property: property, model: model, minGain: minGain)
            if verdict != .better { return verdict }
        }
        return properties.isEmpty ? judge(result, property: "", model: model, minGain: minGain) : .better
    }

    /// `RECALIBRATE_MIN_GAIN`, read by the drift monitor and the query API alike (one rule).
    public static func minGain(_ env: EnvironmentReader) throws -> Double {
        try env.double("RECALIBRATE_MIN_GAIN", default: 0.2, range: 0...1,
                       doc: "Least relative drop of the drifting property's RMS (1 - rmsAfter/rmsBefore) for a calibration to be applied or proposed (drift monitor and POST /v1/twins/{id}/recalibrations).")
    }

    static func percent(_ x: Double) -> String { String(format: "%.0f%%", x * 100) }

    static func number(_ x: Double) -> String { x.isFinite ? String(format: "%.4g", x) : "n/a" }
}

