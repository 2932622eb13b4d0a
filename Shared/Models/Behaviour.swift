import JSON

/// A model's behaviour: an ODE system the simulator integrates and the drift monitor predicts
/// with. Expressions are evaluated in the units the model declares (no automatic conversion).
///
/// Names an expression may use:
/// - a **state** (its current value; every state has a `derivative`, d state / dt per second);
/// - an **input** (an exogenous signal: a what-if value, its `default`, or the telemetry it is
///   bound to with `"telemetry"`);
/// - a model **parameter** (top-level `parameters`, so `setParameters` and calibration have one place);
/// - an **output** (an algebraic telemetry value such as pump pressure; an output may use only
///   outputs listed before it, so there are no cycles);
/// - a **telemetry** name that is neither a state nor an output: its latest observed value.
///
/// A state or output named like a telemetry *is* that telemetry's model (the drift monitor
/// compares them); an input or parameter may not take a telemetry's name.
public struct Behaviour: Sendable {
    /// One state variable.
    public struct State: Sendable {
        /// Name (also the telemetry it models, when one has this name).
        public var name: String
        /// Unit (the telemetry's unit when the state models a telemetry and gives none).
        public var unit: String?
        /// Initial value, when the model gives one.
        public var initial: Double?
        /// d(state)/dt in state units per second.
        public var derivative: Expression
        /// Free text.
        public var description: String?
    }

    /// One exogenous input.
    public struct Input: Sendable {
        /// Name used in expressions.
        public var name: String
        /// Unit, when it has one.
        public var unit: String?
        /// Value when neither a request nor an observation provides one.
        public var defaultValue: Double
        /// Lowest meaningful value.
        public var minimum: Double?
        /// Highest meaningful value.
        public var maximum: Double?
        /// Telemetry whose observed value drives this input, if any.
        public var telemetry: String?
        /// Free text.
        public var description: String?
    }

    /// One algebraic output: the value of a telemetry computed from states, inputs and parameters.
    public struct Output: Sendable {
        /// The telemetry it computes.
        public var name: String
        /// The formula.
        public var expression: Expression
    }

    /// States in file order.
    public let states: [State]
    /// Inputs in file order.
    public let inputs: [Input]
    /// Outputs in file order (the order they are evaluated in).
    public let outputs: [Output]

    /// Every variable name in slot order: states, inputs, parameters, outputs, then observed
    /// telemetry (telemetry that is neither a state nor an output).
    public let variables: [String]
    /// Slot of each name in `variables`.
    public let slots: [String: Int]
    /// Slot ranges of each kind.
    public let stateSlots: Range<Int>, inputSlots: Range<Int>, parameterSlots: Range<Int>, outputSlots: Range<Int>,
        telemetrySlots: Range<Int>
    /// `derivatives[i]` computes d(states[i])/dt over the slot vector.
    public let derivatives: [CompiledExpression]
    /// `outputPrograms[i]` computes outputs[i] over the slot vector.
    public let outputPrograms: [CompiledExpression]
    /// Parameter defaults in parameter-slot order.
    public let parameterDefaults: [Double]
    /// `derivatives` and `outputPrograms` as program sets, which the hot paths evaluate without copies.
    public let derivativeSet: ProgramSet
    public let outputSet: ProgramSet

    init(states: [State], inputs: [Input], outputs: [Output], variables: [String], slots: [String: Int],
         stateSlots: Range<Int>, inputSlots: Range<Int>, parameterSlots: Range<Int>, outputSlots: Range<Int>,
         telemetrySlots: Range<Int>, derivatives: [CompiledExpression], outputPrograms: [CompiledExpression],
         parameterDefaults: [Double]) {
        self.states = states
        self.inputs = inputs
        self.outputs = outputs
        self.variables = variables
        self.slots = slots
        self.stateSlots = stateSlots
        self.inputSlots = inputSlots
        self.parameterSlots = parameterSlots
        self.outputSlots = outputSlots
        self.telemetrySlots = telemetrySlots
        self.derivatives = derivatives
        self.outputPrograms = outputPrograms
        self.parameterDefaults = parameterDefaults
        derivativeSet = ProgramSet(derivatives)
        outputSet = ProgramSet(outputPrograms)
    }

    /// The slot vector at the start of a run: states at `initial` (0 when not given), inputs at their
    /// defaults, parameters at their defaults, then the overrides by name (any kind of slot),
    /// outputs computed, observed telemetry NaN unless overridden. Unknown override names are ignored.
    public func initialVariables(_ overrides: [String: Double] = [:]) -> [Double] {
        var v = [Double](repeating: .nan, count: variables.count)
        for (i, s) in states.enumerated() { v[stateSlots.lowerBound + i] = s.initial ?? 0 }
        for (i, input) in inputs.enumerated() { v[inputSlots.lowerBound + i] = input.defaultValue }
        for (i, d) in parameterDefaults.enumerated() { v[parameterSlots.lowerBound + i] = d }
        for (name, value) in overrides { if let slot = slots[name] { v[slot] = value } }
        evaluateOutputs(&v)
        return v
    }

    /// Recomputes the output slots from the others, in order.
    public func evaluateOutputs(_ variables: inout [Double]) {
        variables.withUnsafeMutableBufferPointer { evaluateOutputs($0) }
    }

    /// Recomputes the output slots in place, in order (the buffer form: allocates and retains nothing).
    @inline(__always)
    public func evaluateOutputs(_ variables: UnsafeMutableBufferPointer<Double>) {
        guard !outputPrograms.isEmpty else { return }
        outputSet.withEvaluator { $0.evaluateAll(into: variables, from: outputSlots.lowerBound) }
    }

    /// d(state)/dt for every state (in `states` order) at the point `variables`, after
    /// recomputing the outputs there.
    public func derivatives(at variables: inout [Double]) -> [Double] {
        var result = [Double](repeating: 0, count: states.count)
        variables.withUnsafeMutableBufferPointer { v in
            result.withUnsafeMutableBufferPointer { derivatives(at: v, into: $0) }
        }
        return result
    }

    /// d(state)/dt for every state into `out` (`out[i]` for `states[i]`), after recomputing the
    /// output slots of `variables`. Allocates nothing: solvers call it millions of times.
    /// `variables.count` must be `self.variables.count`, `out.count` at least `states.count`.
    @inline(__always)
    public func derivatives(at variables: UnsafeMutableBufferPointer<Double>, into out: UnsafeMutableBufferPointer<Double>) {
        evaluateOutputs(variables)
        let read = UnsafeBufferPointer(variables)
        derivativeSet.withEvaluator { programs in
            for i in 0..<states.count { out[i] = programs.evaluate(i, read) }
        }
    }

    /// d(state)/dt of the listed states only (`states[0..<count]`, indices into `states`), each
    /// into `out[index]`, after recomputing the outputs when `outputsFirst`. For callers that need
    /// part of the system: the drift monitor predicts one observed state and integrates only what
    /// it depends on. Allocates and retains nothing.
    @inline(__always)
    public func derivatives(at variables: UnsafeMutableBufferPointer<Double>, into out: UnsafeMutablePointer<Double>,
                            only states: UnsafePointer<Int>, count: Int, outputsFirst: Bool) {
        if outputsFirst { evaluateOutputs(variables) }
        let read = UnsafeBufferPointer(variables)
        derivativeSet.withEvaluator { programs in
            for k in 0..<count {
                let i = states[k]
                out[i] = programs.evaluate(i, read)
            }
        }
    }

    // MARK: Decoding

    /// Decodes and checks `behaviour` (pointer `/behaviour`), reporting every problem.
    static func decode(_ object: JSONObject, telemetry: [TwinModel.Telemetry], parameters: [TwinModel.Parameter],
                       problems: inout ModelProblems) -> Behaviour? {
        let before = problems.list.count
        var names = NameTable(telemetry: telemetry, parameters: parameters, problems: &problems)
        let states = decodeStates(object["states"]?.objectValue ?? [:], names: &names, problems: &problems)
        if states.isEmpty, problems.list.count == before {
            problems.add("/behaviour/states", "a behaviour needs at least one state")
        }
        let inputs = decodeInputs(object["inputs"]?.objectValue ?? [:], names: &names, problems: &problems)
        let outputs = decodeOutputs(object["outputs"]?.objectValue ?? [:], names: &names, problems: &problems)
        return compile(states: states, inputs: inputs, outputs: outputs, telemetry: telemetry, parameters: parameters,
                       names: names, before: before, problems: &problems)
    }

    /// Every name the behaviour declares, so a clash is reported where the second declaration is.
    struct NameTable {
        let telemetryByName: [String: TwinModel.Telemetry]
        /// name → kind ("a parameter", "a state"…), for clash messages.
        var declared: [String: String] = [:]

        init(telemetry: [TwinModel.Telemetry], parameters: [TwinModel.Parameter], problems: inout ModelProblems) {
            telemetryByName = Dictionary(telemetry.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            for p in parameters { declared[p.name] = "a parameter" }
            for p in parameters where telemetryByName[p.name] != nil {
                problems.add("/parameters/\(p.name)", "\"\(p.name)\" is the name of a telemetry; give the parameter another name")
            }
        }

        /// Declares `name` as `kind`; states and outputs may be named like a telemetry (they model it).
        mutating func claim(_ name: String, as kind: String, at pointer: String, mayBeTelemetry: Bool, problems: inout ModelProblems) {
            if let other = declared[name] {
                problems.add(pointer, "\"\(name)\" is already declared as \(other)")
            } else {
                declared[name] = kind
            }
            if !mayBeTelemetry, telemetryByName[name] != nil {
                problems.add(pointer, "\"\(name)\" is the name of a telemetry; give the \(kind.dropFirst(2)) another name"
                             + (kind == "an input" ? " and bind it with \"telemetry\": \"\(name)\"" : ""))
            }
        }
    }

    /// `/behaviour/states`: each with a derivative; a state named like a telemetry takes its unit.
    static func decodeStates(_ object: JSONObject, names: inout NameTable, problems: inout ModelProblems) -> [State] {
        var states: [State] = []
        for (name, value) in object {
            let pointer = "/behaviour/states/\(JSONPointer.escape(name))"
            names.claim(name, as: "a state", at: pointer, mayBeTelemetry: true, problems: &problems)
            let o = value.objectValue ?? [:]
            var unit = o["unit"]?.stringValue
            if let u = unit { problems.checkUnit(u, at: pointer + "/unit") }
            if let t = names.telemetryByName[name] {
                if let u = unit, let tu = t.unit, Units.canonical(u) != nil, Units.canonical(u) != Units.canonical(tu) {
                    problems.add(pointer + "/unit", "state unit \"\(u)\" differs from the unit \"\(tu)\" of the telemetry it models")
                }
                if unit == nil { unit = t.unit }
            }
            guard let text = o["derivative"]?.stringValue else {
                problems.add(pointer, "state \"\(name)\" has no derivative")
                continue
            }
            do {
                let e = try Expression.parse(text)
                states.append(State(name: name, unit: unit, initial: o["initial"]?.doubleValue, derivative: e,
                                    description: o["description"]?.stringValue))
            } catch {
                problems.add(error, at: pointer + "/derivative")
            }
        }
        return states
    }

    /// `/behaviour/inputs`: defaults within range; a binding names a numeric telemetry of a compatible unit.
    static func decodeInputs(_ object: JSONObject, names: inout NameTable, problems: inout ModelProblems) -> [Input] {
        var inputs: [Input] = []
        for (name, value) in object {
            let pointer = "/behaviour/inputs/\(JSONPointer.escape(name))"
            names.claim(name, as: "an input", at: pointer, mayBeTelemetry: false, problems: &problems)
            let o = value.objectValue ?? [:]
            let input = Input(name: name, unit: o["unit"]?.stringValue, defaultValue: o["default"]?.doubleValue ?? 0,
                              minimum: o["minimum"]?.doubleValue, maximum: o["maximum"]?.doubleValue,
                              telemetry: o["telemetry"]?.stringValue, description: o["description"]?.stringValue)
            if let u = input.unit { problems.checkUnit(u, at: pointer + "/unit") }
            problems.checkRange(min: input.minimum, max: input.maximum, at: pointer)
            problems.checkDefault(input.defaultValue, min: input.minimum, max: input.maximum, at: pointer + "/default")
            if let t = input.telemetry {
                if let bound = names.telemetryByName[t] {
                    if bound.type == .boolean || bound.type == .string {
                        problems.add(pointer + "/telemetry", "input \"\(name)\" is bound to \"\(t)\", which is not numeric")
                    } else if let iu = input.unit, let tu = bound.unit, Units.lookup(iu) != nil, Units.lookup(tu) != nil,
                              !Units.areCompatible(iu, tu) {
                        problems.add(pointer + "/unit", "input unit \"\(iu)\" cannot hold values of telemetry \"\(t)\" in \"\(tu)\"")
                    }
                } else {
                    problems.add(pointer + "/telemetry", "input \"\(name)\" is bound to \"\(t)\", which is not a declared telemetry")
                }
            }
            inputs.append(input)
        }
        return inputs
    }

    /// `/behaviour/outputs`: each computes a declared telemetry.
    static func decodeOutputs(_ object: JSONObject, names: inout NameTable, problems: inout ModelProblems) -> [(Output, pointer: String)] {
        var outputs: [(Output, pointer: String)] = []
        for (name, value) in object {
            let pointer = "/behaviour/outputs/\(JSONPointer.escape(name))"
            names.claim(name, as: "an output", at: pointer, mayBeTelemetry: true, problems: &problems)
            if names.telemetryByName[name] == nil {
                problems.add(pointer, "output \"\(name)\" is not a declared telemetry")
            }
            guard let text = value.stringValue else { continue }
            do {
                outputs.append((Output(name: name, expression: try Expression.parse(text)), pointer))
            } catch {
                problems.add(error, at: pointer)
            }
        }
        return outputs
    }

    /// The slot layout and every expression compiled against it; nil when any problem was found
    /// since `before`.
    static func compile(states: [State], inputs: [Input], outputs decoded: [(Output, pointer: String)], telemetry: [TwinModel.Telemetry],
                        parameters: [TwinModel.Parameter], names: NameTable, before: Int, problems: inout ModelProblems) -> Behaviour? {
        let outputs = decoded.map(\.0)
        let stateNames = states.map(\.name), inputNames = inputs.map(\.name), outputNames = outputs.map(\.name)
        let modelled = Set(stateNames + outputNames)
        let observed = telemetry.map(\.name).filter { !modelled.contains($0) && names.declared[$0] == nil }
        let variables = stateNames + inputNames + parameters.map(\.name) + outputNames + observed
        var slots: [String: Int] = [:]
        for (i, v) in variables.enumerated() where slots[v] == nil { slots[v] = i }

        var derivatives: [CompiledExpression] = []
        for state in states {
            do {
                derivatives.append(try state.derivative.compile(slots: slots))
            } catch {
                problems.add(error, at: "/behaviour/states/\(JSONPointer.escape(state.name))/derivative")
            }
        }
        var outputPrograms: [CompiledExpression] = []
        for (i, (output, pointer)) in decoded.enumerated() {
            // An output sees only the outputs before it.
            var visible = slots
            for later in outputNames[i...] { visible[later] = nil }
            do {
                outputPrograms.append(try output.expression.compile(slots: visible))
            } catch {
                if let id = output.expression.identifiers.first(where: { visible[$0.name] == nil && slots[$0.name] != nil }) {
                    let what = id.name == output.name ? "refers to itself" : "refers to \"\(id.name)\", an output listed after it; reorder the outputs"
                    problems.add(pointer, "output \"\(output.name)\" \(what)")
                } else {
                    problems.add(error, at: pointer)
                }
            }
        }
        guard problems.list.count == before else { return nil }
        let s = 0, i = s + states.count, p = i + inputs.count, o = p + parameters.count, t = o + outputs.count
        return Behaviour(states: states, inputs: inputs, outputs: outputs, variables: variables, slots: slots,
                         stateSlots: s..<i, inputSlots: i..<p, parameterSlots: p..<o, outputSlots: o..<t,
                         telemetrySlots: t..<variables.count, derivatives: derivatives, outputPrograms: outputPrograms,
                         parameterDefaults: parameters.map(\.defaultValue))
    }
}
