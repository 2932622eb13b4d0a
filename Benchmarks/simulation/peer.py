"""SciPy peer of SimBench: the same room model runs, timed on the same (pinned) core, then one
markdown table of both.

    python peer.py <data.json from SimBench> <results.json from SimBench>

The room model is solved as the same 3-state system the Swift engine integrates (temperature,
humidity, CO2), so the error norm and step counts are comparable.
"""
import json
import sys
import time

import numpy as np
from scipy.integrate import solve_ivp
from scipy.optimize import least_squares

RTOL, ATOL = 1e-6, 1e-9
GRID = np.linspace(0.0, 86400.0, 1441)


def room_rhs(tau, C, Ta, P):
    def f(t, y):
        T, h, c = y
        return [(Ta - T) / tau + P / C, (60.0 - h) / 3600.0, (420.0 - c) / 1800.0]
    return f


def exact(t, T0, Ta, P, tau, C):
    teq = Ta + P * tau / C
    return teq + (T0 - teq) * np.exp(-t / tau)


def forecast(T0=20.0, Ta=10.0, P=2000.0, tau=7200.0, C=5e6):
    return solve_ivp(room_rhs(tau, C, Ta, P), (0.0, 86400.0), [T0, 45.0, 420.0], method="RK45",
                     rtol=RTOL, atol=ATOL, t_eval=GRID)


def bench_forecast():
    sol = forecast()
    err = float(np.max(np.abs(sol.y[0] - exact(GRID, 20.0, 10.0, 2000.0, 7200.0, 5e6))))
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 3.0:
        forecast()
        n += 1
    return n / (time.perf_counter() - t0), err, int(sol.nfev)


def bench_monte_carlo(samples=400, total=10_000):
    """Runs `samples` solves and extrapolates the time linearly to `total` (each sample costs the
    same); percentiles by numpy over the sampled trajectories."""
    rng = np.random.default_rng(2026)
    t0 = time.perf_counter()
    runs = np.empty((samples, GRID.size))
    for i in range(samples):
        runs[i] = forecast(Ta=10.0 + 2.0 * rng.standard_normal()).y[0]
    np.percentile(runs, [5, 50, 95], axis=0)
    return (time.perf_counter() - t0) * total / samples


def piecewise_solve(tau, C, T0, Ta, power, times):
    """Solves segment by segment between the HVAC switch times (as the Swift engine does)."""
    cuts = [p[0] for p in power if 0 < p[0] < times[-1]] + [times[-1]]
    y = [T0, 45.0, 420.0]
    out = np.empty(times.size)
    start = 0.0
    for k, end in enumerate(cuts):
        P = power[k][1]
        mask = (times >= start) & (times <= end)
        sol = solve_ivp(room_rhs(tau, C, Ta, P), (start, end), y, method="RK45", rtol=RTOL, atol=ATOL,
                        t_eval=times[mask])
        out[mask] = sol.y[0]
        y = sol.y[:, -1] if sol.t.size and sol.t[-1] == end else solve_ivp(
            room_rhs(tau, C, Ta, P), (start, end), y, rtol=RTOL, atol=ATOL).y[:, -1]
        start = end
    return out


def bench_calibration(data):
    times = np.array(data["times"])
    obs = np.array(data["temperature"])
    power = data["power"]
    Ta = data["truth"]["Ta"]

    def residuals(x):
        tau, C = np.exp(x[0]), np.exp(x[1])
        return piecewise_solve(tau, C, x[2], Ta, power, times) - obs

    x0 = np.array([np.log(7200.0), np.log(5e6), obs[0]])
    lower = [np.log(60.0), np.log(1000.0), -30.0]
    upper = [np.log(604800.0), np.log(1e10), 60.0]
    fits, t0 = 0, time.perf_counter()
    while True:
        res = least_squares(residuals, x0, bounds=(lower, upper), method="trf", x_scale="jac")
        fits += 1
        if time.perf_counter() - t0 > 3.0 or fits >= 3:
            break
    seconds = (time.perf_counter() - t0) / fits
    J = res.jac
    n, p = J.shape
    s2 = 2 * res.cost / (n - p)
    cov = s2 * np.linalg.inv(J.T @ J)
    tau, C = np.exp(res.x[0]), np.exp(res.x[1])
    return {"seconds": seconds, "tau": tau, "C": C, "tau_se": tau * np.sqrt(cov[0, 0]), "C_se": C * np.sqrt(cov[1, 1]),
            "nfev": res.nfev, "status": res.status}


def main():
    data = json.load(open(sys.argv[1]))
    ours = json.load(open(sys.argv[2]))
    sps, err, nfev = bench_forecast()
    mc = bench_monte_carlo()
    cal = bench_calibration(data)
    truth = data["truth"]

    def z(v, se, t):
        return abs(v - t) / se if se and se == se else float("nan")

    rows = [
        ("forecast: solves/s (24 h, 1-min grid, rtol 1e-6)", f"{ours['forecast_solves_per_s']:,.0f}", f"{sps:,.0f}",
         f"{ours['forecast_solves_per_s'] / sps:,.0f}× faster"),
        ("forecast: max global error vs closed form (K)", f"{ours['forecast_error']:.2e}", f"{err:.2e}",
         "≤ SciPy" if ours["forecast_error"] <= err else "LARGER than SciPy"),
        ("forecast: RHS evaluations", f"{ours['forecast_evaluations']:.0f}", f"{nfev}", ""),
        ("Monte Carlo 10,000 samples, temperature bands (s)", f"{ours['mc_seconds']:.3f}", f"{mc:.1f} (400 run, ×25)",
         f"{mc / ours['mc_seconds']:,.0f}× faster"),
        ("Monte Carlo: |p5|,|p50|,|p95| error at 24 h vs analytic (K)",
         f"{ours['mc_p5_error']:.1e}, {ours['mc_p50_error']:.1e}, {ours['mc_p95_error']:.1e}", "", f"bin width {ours['mc_bin_width']:.1e} K"),
        ("calibration (tau, C, T0; 1,441 pts, 0.2 K): s per fit", f"{ours['cal_seconds_per_fit'] * 1000:.1f} ms",
         f"{cal['seconds'] * 1000:.0f} ms", f"{cal['seconds'] / ours['cal_seconds_per_fit']:,.0f}× faster"),
        ("calibration: tau (truth 10000 s) ± SE, |error|/SE",
         f"{ours['cal_tau']:.0f} ± {ours['cal_tau_se']:.0f} ({z(ours['cal_tau'], ours['cal_tau_se'], truth['tau']):.2f})",
         f"{cal['tau']:.0f} ± {cal['tau_se']:.0f} ({z(cal['tau'], cal['tau_se'], truth['tau']):.2f})", ""),
        ("calibration: C (truth 8e6 J/K) ± SE, |error|/SE",
         f"{ours['cal_C']:.4g} ± {ours['cal_C_se']:.2g} ({z(ours['cal_C'], ours['cal_C_se'], truth['C']):.2f})",
         f"{cal['C']:.4g} ± {cal['C_se']:.2g} ({z(cal['C'], cal['C_se'], truth['C']):.2f})", ""),
    ]
    print("| benchmark (one core) | TwinStream Simulation | SciPy | ratio / note |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
