#!/usr/bin/env python3
"""Choose h for the two-sided standardised CUSUM (k = 0.5) of Shared/Drift/CUSUM.swift.

Requirement: on N(0,1) input at most 0.2 false alarms per 100,000 samples (zero-state ARL0 >= 500,000,
since the detector restarts from zero after every alarm) and a median delay of at most 25 samples for a
+1 sigma mean shift that starts while the detector is in its in-control steady state.

ARL0 is computed with the Brook-Evans Markov chain (N states); the two-sided ARL is 1/(1/ARL+ + 1/ARL-)
(Lucas & Crosier), with ARL+ = ARL- by symmetry. The delay is simulated (seeded) from the steady state.
Usage: python cusum_h.py   (numpy + scipy, e.g. from .venv-drift)
"""
import numpy as np
from scipy.stats import norm

K = 0.5


def arl_one_sided(h, mu, k=K, n=600):
    # States: 0 is S = 0; i = 1..n-1 are midpoints of n-1 cells of width w covering (0, h].
    w = h / (n - 0.5)
    centers = np.arange(n) * w
    lo = np.concatenate(([-np.inf], (np.arange(1, n) - 0.5) * w))
    hi = (np.arange(n) + 0.5) * w
    # From state i, next S = max(0, c_i + z - k), z ~ N(mu, 1).
    c = centers[:, None]
    p_hi = norm.cdf(hi[None, :] - c + k - mu)
    p_lo = norm.cdf(lo[None, :] - c + k - mu)
    P = p_hi - p_lo
    arl = np.linalg.solve(np.eye(n) - P, np.ones(n))
    return arl[0]


def median_delay(h, shift=1.0, chains=200_000, warm=400, seed=1234):
    rng = np.random.default_rng(seed)
    sp = np.zeros(chains)
    sn = np.zeros(chains)
    alive = np.ones(chains, dtype=bool)
    for _ in range(warm):  # reach the in-control steady state; drop chains that false-alarm meanwhile
        z = rng.standard_normal(chains)
        sp = np.maximum(0, sp + z - K)
        sn = np.maximum(0, sn - z - K)
        fired = (sp > h) | (sn > h)
        alive &= ~fired
        sp[fired] = 0
        sn[fired] = 0
    sp, sn = sp[alive], sn[alive]
    delay = np.full(sp.size, -1)
    t = 0
    while (delay < 0).any():
        z = rng.standard_normal(sp.size) + shift
        sp = np.maximum(0, sp + z - K)
        sn = np.maximum(0, sn - z - K)
        fired = ((sp > h) | (sn > h)) & (delay < 0)
        delay[fired] = t  # delay counted as River-style index difference: alarm index - change index
        t += 1
    return float(np.median(delay)), float(np.mean(delay)), float(np.percentile(delay, 95))


if __name__ == "__main__":
    print("| h | ARL0 two-sided | false alarms / 100k | median delay (1σ) | mean | p95 |")
    print("|---|---|---|---|---|---|")
    for h in (5.0, 8.0, 9.0, 10.0, 11.0, 11.5, 12.0, 12.25, 12.5, 13.0):
        a1 = arl_one_sided(h, 0.0)
        a2 = a1 / 2
        md, mean, p95 = median_delay(h)
        print(f"| {h} | {a2:,.0f} | {1e5 / a2:.3f} | {md:.0f} | {mean:.1f} | {p95:.0f} |")
