#!/usr/bin/env python3
"""Generate the reference fixtures that Tests/DriftTests compare the Swift `Drift` module against.

Run through `Benchmarks/drift.sh --fixtures` (it creates the pinned virtual environment). The files are
committed, so the Swift tests need no Python; rerun this only when the pinned versions change.

What it writes into Tests/DriftTests/Fixtures/:
  stream_<name>.json  seeded synthetic streams (full-precision `repr(float)` values) with River's ADWIN
                      (defaults, plus clock=1/delta=0.01) and PageHinkley alarm indices, and ADWIN's
                      width right after each alarm.
  datadrift.json      pairs of samples with PSI / KS (statistic, asymptotic p-value) / normalised
                      Wasserstein / Jensen-Shannon computed by numpy/scipy following Evidently's rules.
  kolmogorov.json     scipy.stats.kstwo.sf(d, n) on a grid that exercises every branch of SciPy's kolmogn.
"""
from __future__ import annotations

import json
import math
import os
import sys

import numpy as np
import river
import scipy
from river import drift
from scipy import stats
from scipy.spatial import distance

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.normpath(os.path.join(HERE, "..", "..", "Tests", "DriftTests", "Fixtures"))

VERSIONS = {"river": river.__version__, "scipy": scipy.__version__, "numpy": np.__version__,
            "python": sys.version.split()[0]}


def write(name: str, obj) -> None:
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, name)
    with open(path, "w") as f:
        # json writes floats with repr(), the shortest string that round-trips: full double precision.
        json.dump(obj, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


# ---------------------------------------------------------------- streams for ADWIN / Page-Hinkley

def make_streams():
    n = 2500
    out = {}
    rng = np.random.default_rng(20240601)
    x = rng.normal(0.0, 1.0, n)
    x[1200:] += 1.0
    out["mean_shift"] = (x, "N(0,1), mean +1 at 1200")

    rng = np.random.default_rng(20240602)
    x = np.concatenate([rng.normal(5.0, 0.5, 1250), rng.normal(5.0, 2.5, n - 1250)])
    out["variance_change"] = (x, "N(5,0.5) then sd 2.5 at 1250")

    rng = np.random.default_rng(20240603)
    ramp = np.clip((np.arange(n) - 1000) / 800.0, 0.0, 1.0) * 1.5
    x = rng.normal(0.0, 1.0, n) + ramp
    out["gradual"] = (x, "N(0,1) + linear ramp 0 -> 1.5 over [1000, 1800]")

    rng = np.random.default_rng(20240604)
    x = rng.normal(10.0, 3.0, n)
    out["no_change"] = (x, "N(10,3), no change")

    rng = np.random.default_rng(20240605)
    x = rng.normal(0.0, 1.0, n)
    for start, shift in ((500, 3.0), (1000, -2.0), (1500, 0.5), (2000, 6.0)):
        x[start:] += shift
    out["multi_jump"] = (x, "N(0,1) with jumps +3@500, -2@1000, +0.5@1500, +6@2000")

    rng = np.random.default_rng(20240606)
    x = np.concatenate([rng.binomial(1, 0.2, 1300), rng.binomial(1, 0.6, n - 1300)]).astype(float)
    out["binary"] = (x, "Bernoulli 0.2 then 0.6 at 1300 (many ties)")
    return out


def run_adwin(values, **kw):
    det = drift.ADWIN(**kw)
    alarms, widths = [], []
    for i, v in enumerate(values):
        det.update(float(v))
        if det.drift_detected:
            alarms.append(i)
            widths.append(int(det.width))
    return {"params": kw, "alarms": alarms, "widths": widths, "final_width": int(det.width)}


def run_ph(values, **kw):
    det = drift.PageHinkley(**kw)
    alarms = []
    for i, v in enumerate(values):
        det.update(float(v))
        if det.drift_detected:
            alarms.append(i)
    return {"params": kw, "alarms": alarms}


def stream_fixtures():
    for name, (x, description) in make_streams().items():
        values = [float(v) for v in x]
        obj = {
            "versions": VERSIONS,
            "name": name,
            "description": description,
            "values": values,
            "adwin": run_adwin(values),
            "adwin_clock1": run_adwin(values, delta=0.01, clock=1, max_buckets=3, min_window_length=8,
                                      grace_period=20),
            "page_hinkley": run_ph(values),
            "page_hinkley_up": run_ph(values, min_instances=20, delta=0.01, threshold=20.0, mode="up"),
            "page_hinkley_down": run_ph(values, min_instances=20, delta=0.01, threshold=20.0, mode="down"),
        }
        print(name, "adwin", obj["adwin"]["alarms"], "ph", obj["page_hinkley"]["alarms"])
        write(f"stream_{name}.json", obj)


# ---------------------------------------------------------------- data drift (Evidently's rules)

def evidently_binned(ref, cur, fill_zeroes, unique_limit=20):
    """evidently.calculations.stattests.utils.get_binned_data for a numerical column."""
    if len(np.unique(ref)) > unique_limit:
        bins = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
        ref_p = np.histogram(ref, bins)[0] / len(ref)
        cur_p = np.histogram(cur, bins)[0] / len(cur)
    else:
        keys = sorted(set(np.unique(ref)) | set(np.unique(cur)))
        ref_p = np.array([np.count_nonzero(ref == k) / len(ref) for k in keys])
        cur_p = np.array([np.count_nonzero(cur == k) / len(cur) for k in keys])
    if fill_zeroes:
        for arr in (ref_p, cur_p):
            mn = min(arr[arr != 0])
            np.place(arr, arr == 0, mn / 10**6 if mn <= 0.0001 else 0.0001)
    return ref_p, cur_p


def psi(ref, cur):
    r, c = evidently_binned(ref, cur, True)
    total = 0.0
    for i in range(len(r)):
        total += (r[i] - c[i]) * np.log(r[i] / c[i])
    return float(total), len(r)


def js(ref, cur, base):
    r, c = evidently_binned(ref, cur, False)
    return float(distance.jensenshannon(r, c, base))


def wasserstein_norm(ref, cur):
    norm = max(np.std(ref), 0.001)
    return float(stats.wasserstein_distance(ref, cur) / norm), float(stats.wasserstein_distance(ref, cur))


def make_pairs():
    pairs = []
    rng = np.random.default_rng(7)
    pairs.append(("normal_200_vs_150_shift", rng.normal(0, 1, 200), rng.normal(0.3, 1, 150)))
    pairs.append(("normal_1000_vs_800", rng.normal(2, 1.5, 1000), rng.normal(2.1, 1.5, 800)))
    pairs.append(("small_50_vs_30", rng.normal(0, 1, 50), rng.normal(0.8, 1, 30)))
    pairs.append(("tiny_12_vs_9", rng.normal(0, 1, 12), rng.normal(0.5, 2, 9)))
    pairs.append(("ties_rounded_300", np.round(rng.normal(0, 2, 300), 1), np.round(rng.normal(0.3, 2, 300), 1)))
    a = rng.normal(5, 1, 400)
    pairs.append(("identical_400", a, a.copy()))
    pairs.append(("disjoint_100_vs_120", rng.uniform(0, 1, 100), rng.uniform(5, 6, 120)))
    pairs.append(("categorical_poisson", rng.poisson(3, 500).astype(float), rng.poisson(3.5, 400).astype(float)))
    pairs.append(("constant_ref", np.full(60, 2.5), rng.normal(2.5, 0.1, 60)))
    pairs.append(("heavy_tail_2000_vs_1500", rng.standard_t(2, 2000), rng.standard_t(2, 1500) * 1.2))
    pairs.append(("power_of_two_512_each", rng.normal(0, 1, 512), rng.normal(0.05, 1, 512)))
    pairs.append(("large_4000_vs_3000", np.round(rng.normal(0, 1, 4000), 5), np.round(rng.normal(0.02, 1, 3000), 5)))
    pairs.append(("near_identical_unbalanced_3000_vs_700", np.round(rng.normal(0, 1, 3000), 4),
                  np.round(rng.normal(0, 1, 700), 4)))
    return pairs


def datadrift_fixtures():
    cases = []
    for name, ref, cur in make_pairs():
        ref = np.asarray(ref, dtype=float)
        cur = np.asarray(cur, dtype=float)
        ks = stats.ks_2samp(ref, cur, method="asymp")
        ks_auto = stats.ks_2samp(ref, cur)
        p, nbins = psi(ref, cur)
        wn, w = wasserstein_norm(ref, cur)
        cases.append({
            "name": name,
            "reference": [float(v) for v in ref],
            "current": [float(v) for v in cur],
            "psi": p,
            "bins": nbins,
            "ks_statistic": float(ks.statistic),
            "ks_pvalue_asymp": float(ks.pvalue),
            "ks_pvalue_auto": float(ks_auto.pvalue),
            "wasserstein": w,
            "wasserstein_norm": wn,
            "reference_std_ddof0": float(np.std(ref)),
            "js_base2": js(ref, cur, 2),
            "js_base_e": js(ref, cur, None),
        })
        print(name, "psi", p, "ks", float(ks.statistic), float(ks.pvalue), "wn", wn)
    write("datadrift.json", {"versions": VERSIONS, "rules": "evidently get_binned_data (unique>20 -> sturges), "
                             "psi fill 1e-4, js base 2 (and e), wasserstein/max(std ddof0, 0.001), "
                             "ks_2samp method=asymp", "cases": cases})


def kolmogorov_fixtures():
    ns = [1, 2, 3, 5, 10, 19, 40, 100, 140, 141, 300, 1000, 2500, 20000, 150000]
    rows = []
    for n in ns:
        ds = {0.4 / n, 0.5 / n, 0.5 / n + 1e-9, 0.75 / n, 1.0 / n, 1.5 / n, 2.5 / n, (n - 1.0) / n,
              1.0 - 0.3 / n, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.45, 0.5, 0.6, 0.9, 0.99, 1.0}
        for c in (0.1, 0.3, 0.7, 0.754, 0.76, 1.0, 1.5, 2.19, 2.21, 3.0, 3.99, 4.01, 5.0, 10.0, 17.9, 18.1,
                  50.0, 100.0, 300.0, 369.0, 371.0):
            ds.add(math.sqrt(c / n))
        for d in sorted(ds):
            if 0.0 < d <= 1.0:
                rows.append([n, float(d), float(stats.kstwo.sf(d, n))])
    write("kolmogorov.json", {"versions": VERSIONS, "function": "scipy.stats.kstwo.sf(d, n)", "rows": rows})


if __name__ == "__main__":
    print("versions", VERSIONS)
    stream_fixtures()
    datadrift_fixtures()
    kolmogorov_fixtures()
