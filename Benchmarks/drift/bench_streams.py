#!/usr/bin/env python3
"""Write the benchmark streams both the Swift bench and the River peer read, so both see identical data.

Usage: bench_streams.py OUT.f64 SEEDS LENGTH CHANGE
Writes 2*SEEDS streams of LENGTH standard-normal values (little-endian float64, stream after stream):
streams 0..SEEDS-1 get +1 (one sigma) added from index CHANGE on (numpy seed = stream number),
streams SEEDS..2*SEEDS-1 have no change (numpy seed = 100000 + stream number).
"""
import sys

import numpy as np

out, seeds, length, change = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
with open(out, "wb") as f:
    for s in range(seeds):
        x = np.random.default_rng(s).standard_normal(length)
        x[change:] += 1.0
        f.write(x.astype("<f8").tobytes())
    for s in range(seeds):
        f.write(np.random.default_rng(100000 + s).standard_normal(length).astype("<f8").tobytes())
