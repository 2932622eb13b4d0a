/// The physical dimension of a unit: exponents of the SI base quantities
/// (length, mass, time, electric current, temperature, amount of substance).
/// Two units convert into each other exactly when their dimensions are equal.
public struct UnitDimension: Sendable, Hashable, CustomStringConvertible {
    /// Exponent of length (m).
    public var length: Int8
    /// Exponent of mass (kg).
    public var mass: Int8
    /// Exponent of time (s).
    public var time: Int8
    /// Exponent of electric current (A).
    public var current: Int8
    /// Exponent of thermodynamic temperature (K).
    public var temperature: Int8
    /// Exponent of amount of substance (mol).
    public var amount: Int8

    /// A dimension from its exponents (all zero: dimensionless).
    public init(length: Int8 = 0, mass: Int8 = 0, time: Int8 = 0, current: Int8 = 0, temperature: Int8 = 0, amount: Int8 = 0) {
        self.length = length
        self.mass = mass
        self.time = time
        self.current = current
        self.temperature = temperature
        self.amount = amount
    }

    /// A pure number (`1`, `%`, `ppm`).
    public static let dimensionless = UnitDimension()

    static func * (a: UnitDimension, b: UnitDimension) -> UnitDimension {
        UnitDimension(length: a.length + b.length, mass: a.mass + b.mass, time: a.time + b.time,
                      current: a.current + b.current, temperature: a.temperature + b.temperature, amount: a.amount + b.amount)
    }

    func power(_ n: Int8) -> UnitDimension {
        UnitDimension(length: length * n, mass: mass * n, time: time * n, current: current * n,
                      temperature: temperature * n, amount: amount * n)
    }

    /// The quantity's name when it has a common one (`pressure`, `volumetric flow`), else the
    /// SI base-unit formula (`kg·m^2·s^-3·K^-1`).
    public var description: String {
        if let name = UnitDimension.names[self] { return name }
        let parts: [(String, Int8)] = [("kg", mass), ("m", length), ("s", time), ("A", current), ("K", temperature), ("mol", amount)]
        return parts.filter { $0.1 != 0 }.map { $0.1 == 1 ? $0.0 : "\($0.0)^\($0.1)" }.joined(separator: "·")
    }

    static let names: [UnitDimension: String] = [
        .dimensionless: "dimensionless quantity",
        UnitDimension(length: 1): "length",
        UnitDimension(mass: 1): "mass",
        UnitDimension(time: 1): "time",
        UnitDimension(current: 1): "electric current",
        UnitDimension(temperature: 1): "temperature",
        UnitDimension(amount: 1): "amount of substance",
        UnitDimension(time: -1): "frequency",
        UnitDimension(length: 2): "area",
        UnitDimension(length: 3): "volume",
        UnitDimension(length: 3, time: -1): "volumetric flow",
        UnitDimension(mass: 1, time: -1): "mass flow",
        UnitDimension(length: 1, time: -1): "velocity",
        UnitDimension(length: 1, time: -2): "acceleration",
        UnitDimension(length: 1, mass: 1, time: -2): "force",
        UnitDimension(length: -1, mass: 1, time: -2): "pressure",
        UnitDimension(length: 2, mass: 1, time: -2): "energy",
        UnitDimension(length: 2, mass: 1, time: -3): "power",
        UnitDimension(time: 1, current: 1): "electric charge",
        UnitDimension(length: 2, mass: 1, time: -3, current: -1): "voltage",
        UnitDimension(length: 2, mass: 1, time: -3, current: -2): "electric resistance",
        UnitDimension(length: 2, mass: 1, time: -2, temperature: -1): "heat capacity",
        UnitDimension(length: 2, mass: 1, time: -3, temperature: -1): "thermal conductance",
        UnitDimension(length: -3, mass: 1): "density",
    ]
}

/// A unit symbol resolved against the unit table: `value in SI = value * scale + offset`.
/// `offset` is non-zero only for a stand-alone `degC` or `degF` (affine temperature scales);
/// inside a compound unit (`W/degC`) they are temperature differences and scale only.
public struct UnitDefinition: Sendable, Hashable {
    /// Canonical spelling (`°C` → `degC`, `µA` → `uA`, `m^3/h` → `m3/h`).
    public var symbol: String
    /// What the unit measures.
    public var dimension: UnitDimension
    /// Factor to the coherent SI unit of the dimension (kPa → 1000).
    public var scale: Double
    /// Offset to the SI unit after scaling (degC → 273.15).
    public var offset: Double
}

/// An affine map from one unit to another, computed once and applied to many values.
public struct UnitConversion: Sendable, Hashable {
    /// Multiplier.
    public var scale: Double
    /// Added after multiplying.
    public var offset: Double

    /// The identity (same unit, or two spellings of it).
    public static let identity = UnitConversion(scale: 1, offset: 0)

    /// A conversion `y = x * scale + offset`.
    public init(scale: Double, offset: Double) {
        self.scale = scale
        self.offset = offset
    }

    /// The map between two resolved units of the same dimension (not checked here).
    init(from: UnitDefinition, to: UnitDefinition) {
        if from.scale == to.scale && from.offset == to.offset {
            self = .identity
        } else {
            // SI = x*s1 + o1; y = (SI - o2) / s2
            scale = from.scale / to.scale
            offset = (from.offset - to.offset) / to.scale
        }
    }

    /// True when the conversion leaves every value unchanged.
    @inlinable public var isIdentity: Bool { scale == 1 && offset == 0 }

    /// Converts one value.
    @inlinable public func apply(_ value: Double) -> Double { value * scale + offset }
}

/// The unit table and conversions.
///
/// A unit symbol is one or more factors: `[prefix]atom[exponent]`, joined by `*`, `.` or `·`
/// and divided by `/` (`kW`, `m3/h`, `L/min`, `mm/s`, `J/K`, `m/s2`, `m^3/h`). Atoms:
/// length `m`; mass `g`; time `s`, `min`, `h`, `d`; current `A`; temperature `K`, `degC` (`°C`),
/// `degF` (`°F`); amount `mol`; `Hz`, `rpm`; force `N`; pressure `Pa`, `bar`, `psi`, `atm`,
/// `mmHg`; energy `J`, `Wh`; power `W`; `V`; `ohm` (`Ω`); charge `C`, `Ah`; volume `L` (`l`);
/// dimensionless `1`, `%`, `ppm`, `ppb`. SI prefixes `T G M k h da d c m u (µ, μ) n p` apply to
/// `m g s A K mol Hz N Pa bar J Wh W V ohm C Ah L`. Exact atoms win over prefix + atom, so
/// `min` is minutes, `h` hours, `d` days, `Pa` pascal and `ppm` parts per million.
public enum Units {
    /// Whether `symbol` is a unit this table knows.
    public static func isKnown(_ symbol: String) -> Bool { lookup(symbol) != nil }

    /// The canonical spelling of a known unit (`°C` → `degC`), nil if unknown.
    public static func canonical(_ symbol: String) -> String? { lookup(symbol)?.symbol }

    /// The definition of a known unit, nil if unknown.
    public static func lookup(_ symbol: String) -> UnitDefinition? {
        if let d = table[symbol] { return d }
        return parse(symbol)
    }

    /// The definition of a unit; throws `ModelError` `.unknownUnit` naming it.
    public static func definition(of symbol: String) throws(ModelError) -> UnitDefinition {
        guard let d = lookup(symbol) else {
            throw ModelError(code: .unknownUnit, message: "unknown unit \"\(symbol)\"")
        }
        return d
    }

    /// The conversion from one unit to another. Throws `.unknownUnit` for a symbol the table does
    /// not know and `.incompatibleUnits` when the dimensions differ (`bar` → `degC`).
    public static func conversion(from: String, to: String) throws(ModelError) -> UnitConversion {
        try conversion(from: definition(of: from), to: definition(of: to))
    }

    /// The conversion between two resolved units (throws `.incompatibleUnits` when their dimensions differ).
    public static func conversion(from: UnitDefinition, to: UnitDefinition) throws(ModelError) -> UnitConversion {
        guard from.dimension == to.dimension else {
            throw ModelError(code: .incompatibleUnits,
                             message: "cannot convert \"\(from.symbol)\" (\(from.dimension)) to \"\(to.symbol)\" (\(to.dimension))")
        }
        return UnitConversion(from: from, to: to)
    }

    /// Converts a value between units: `Units.convert(14.7, from: "psi", to: "bar")`.
    /// Temperatures convert affinely (`0 degC` → `32 degF`).
    public static func convert(_ value: Double, from: String, to: String) throws(ModelError) -> Double {
        try conversion(from: from, to: to).apply(value)
    }

    /// True when two units measure the same quantity (both must be known).
    public static func areCompatible(_ a: String, _ b: String) -> Bool {
        guard let x = lookup(a), let y = lookup(b) else { return false }
        return x.dimension == y.dimension
    }

    // MARK: Table

    struct Atom {
        var symbol: String
        var aliases: [String]
        var dimension: UnitDimension
        var scale: Double
        var offset: Double
        var prefixable: Bool
    }

    static let atoms: [Atom] = {
        func a(_ s: String, _ d: UnitDimension, _ scale: Double = 1, offset: Double = 0, prefix: Bool = false, aliases: [String] = []) -> Atom {
            Atom(symbol: s, aliases: aliases, dimension: d, scale: scale, offset: offset, prefixable: prefix)
        }
        let pressure = UnitDimension(length: -1, mass: 1, time: -2)
        let energy = UnitDimension(length: 2, mass: 1, time: -2)
        let power = UnitDimension(length: 2, mass: 1, time: -3)
        let charge = UnitDimension(time: 1, current: 1)
        return [
            a("m", UnitDimension(length: 1), prefix: true),
            a("g", UnitDimension(mass: 1), 1e-3, prefix: true),
            a("s", UnitDimension(time: 1), prefix: true),
            a("min", UnitDimension(time: 1), 60),
            a("h", UnitDimension(time: 1), 3600),
            a("d", UnitDimension(time: 1), 86400),
            a("A", UnitDimension(current: 1), prefix: true),
            a("K", UnitDimension(temperature: 1), prefix: true),
            a("degC", UnitDimension(temperature: 1), offset: 273.15, aliases: ["°C", "℃"]),
            a("degF", UnitDimension(temperature: 1), 5.0 / 9.0, offset: 459.67 * 5.0 / 9.0, aliases: ["°F", "℉"]),
            a("mol", UnitDimension(amount: 1), prefix: true),
            a("Hz", UnitDimension(time: -1), prefix: true),
            a("rpm", UnitDimension(time: -1), 1.0 / 60.0),
            a("N", UnitDimension(length: 1, mass: 1, time: -2), prefix: true),
            a("Pa", pressure, prefix: true),
            a("bar", pressure, 1e5, prefix: true),
            a("psi", pressure, 6894.757293168361),
            a("atm", pressure, 101_325),
            a("mmHg", pressure, 133.322387415),
            a("J", energy, prefix: true),
            a("Wh", energy, 3600, prefix: true),
            a("W", power, prefix: true),
            a("V", UnitDimension(length: 2, mass: 1, time: -3, current: -1), prefix: true),
            a("ohm", UnitDimension(length: 2, mass: 1, time: -3, current: -2), prefix: true, aliases: ["Ω"]),
            a("C", charge, prefix: true),
            a("Ah", charge, 3600, prefix: true),
            a("L", UnitDimension(length: 3), 1e-3, prefix: true, aliases: ["l"]),
            a("1", .dimensionless),
            a("%", .dimensionless, 0.01),
            a("ppm", .dimensionless, 1e-6),
            a("ppb", .dimensionless, 1e-9),
        ]
    }()

    /// (canonical, spellings, factor); `da` before `d` so the longer prefix is tried first.
    static let prefixes: [(symbol: String, spellings: [String], factor: Double)] = [
        ("T", ["T"], 1e12), ("G", ["G"], 1e9), ("M", ["M"], 1e6), ("k", ["k"], 1e3), ("h", ["h"], 1e2),
        ("da", ["da"], 1e1), ("d", ["d"], 1e-1), ("c", ["c"], 1e-2), ("m", ["m"], 1e-3),
        ("u", ["u", "µ", "μ"], 1e-6), ("n", ["n"], 1e-9), ("p", ["p"], 1e-12),
    ]

    /// Every spelling of an atom → (atom, canonical symbol).
    static let atomsBySpelling: [String: Atom] = {
        var t: [String: Atom] = [:]
        for atom in atoms { for s in [atom.symbol] + atom.aliases { t[s] = atom } }
        return t
    }()

    /// Precomputed definitions of every single (prefixed) atom and the common compound units, so
    /// the hot path is one hash lookup; anything else is parsed on demand.
    static let table: [String: UnitDefinition] = {
        var t: [String: UnitDefinition] = [:]
        for atom in atoms {
            for s in [atom.symbol] + atom.aliases {
                t[s] = UnitDefinition(symbol: atom.symbol, dimension: atom.dimension, scale: atom.scale, offset: atom.offset)
            }
            guard atom.prefixable else { continue }
            for p in prefixes {
                for ps in p.spellings {
                    for s in [atom.symbol] + atom.aliases where t[ps + s] == nil && atomsBySpelling[ps + s] == nil {
                        t[ps + s] = UnitDefinition(symbol: p.symbol + atom.symbol, dimension: atom.dimension,
                                                   scale: p.factor * atom.scale, offset: 0)
                    }
                }
            }
        }
        let common = ["L/min", "L/s", "L/h", "mL/min", "m3/h", "m3/s", "m3/min", "m/s", "mm/s", "um/s", "km/h", "m/s2", "mm/s2",
                      "J/K", "kJ/K", "MJ/K", "W/K", "kW/K", "kg/s", "kg/h", "kg/m3"]
        for c in common { t[c] = parse(c) }
        return t
    }()

    // MARK: Parsing compound units

    /// Parses `factor ([*.·] factor)* (/ factor ([*.·] factor)*)*`. Returns nil for anything unknown.
    static func parse(_ symbol: String) -> UnitDefinition? {
        guard !symbol.isEmpty, symbol.count <= 64 else { return nil }
        let groups = symbol.split(separator: "/", omittingEmptySubsequences: false)
        var dimension = UnitDimension.dimensionless
        var scale = 1.0
        var canonical = ""
        var factorCount = 0
        var single: (atom: Atom, prefix: Double, exponent: Int8)?
        for (g, group) in groups.enumerated() {
            let factors = group.split(omittingEmptySubsequences: false) { $0 == "*" || $0 == "." || $0 == "·" }
            for (f, text) in factors.enumerated() {
                guard let (atom, prefix, prefixSymbol, exponent) = parseFactor(text) else { return nil }
                let sign: Int8 = g == 0 ? 1 : -1
                dimension = dimension * atom.dimension.power(exponent * sign)
                var factorScale = 1.0
                for _ in 0..<Int(exponent.magnitude) { factorScale *= prefix * atom.scale }
                if exponent < 0 { factorScale = 1 / factorScale }
                scale = sign > 0 ? scale * factorScale : scale / factorScale
                canonical += (g > 0 && f == 0 ? "/" : (f > 0 ? "*" : "")) + prefixSymbol + atom.symbol
                    + (exponent == 1 ? "" : (exponent > 0 ? "\(exponent)" : "^\(exponent)"))
                factorCount += 1
                single = (atom, prefix, exponent)
            }
        }
        // Only a lone temperature atom is an affine scale (a point on the scale, not a difference).
        var offset = 0.0
        if factorCount == 1, let single, single.exponent == 1, single.prefix == 1 { offset = single.atom.offset }
        return UnitDefinition(symbol: canonical, dimension: dimension, scale: scale, offset: offset)
    }

    /// `[prefix]atom[exponent]` where the exponent is trailing digits (`m3`) or `^n` (`m^3`, `s^-1`).
    static func parseFactor(_ text: Substring) -> (Atom, Double, String, Int8)? {
        var body = text
        var exponent: Int8 = 1
        if let caret = body.firstIndex(of: "^") {
            guard let e = Int8(body[body.index(after: caret)...]), e != 0 else { return nil }
            exponent = e
            body = body[..<caret]
        } else if body != "1" {
            var digits = 0
            while digits < body.count, body[body.index(body.endIndex, offsetBy: -(digits + 1))].isASCII,
                  body[body.index(body.endIndex, offsetBy: -(digits + 1))].isNumber { digits += 1 }
            if digits > 0 {
                guard digits < body.count, let e = Int8(body.suffix(digits)), e != 0 else { return nil }
                exponent = e
                body = body.dropLast(digits)
            }
        }
        guard !body.isEmpty else { return nil }
        if let atom = atomsBySpelling[String(body)] { return (atom, 1, "", exponent) }
        for p in prefixes {
            for spelling in p.spellings where body.hasPrefix(spelling) {
                if let atom = atomsBySpelling[String(body.dropFirst(spelling.count))], atom.prefixable {
                    return (atom, p.factor, p.symbol, exponent)
                }
            }
        }
        return nil
    }
}
