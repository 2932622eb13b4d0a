#!/usr/bin/env python3
"""River peer of DriftBench: runs River's ADWIN and PageHinkley (defaults) over the benchmark streams and
writes every alarm index per stream and the elapsed time, in DriftBench's JSON format.

Usage: river_peer.py STREAMS.f64 STREAMS LENGTH OUT.json [TIMED_STREAMS]
All streams are run for the alarms (delays and false alarms); the time is measured over every stream, or,
when TIMED_STREAMS is given, only over that many evenly spaced streams (throughput = their samples / time).
River 0.26.1 has no CUSUM.
"""
import json
import sys
import time

import numpy as np
import river
from river import drift

path, streams, length, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
timed = int(sys.argv[5]) if len(sys.argv) > 5 else streams
data = np.fromfile(path, dtype="<f8").reshape(streams, length)
step = max(streams // timed, 1)
timed_set = set(range(0, streams, step)[:timed])

results = {"samples": streams * length, "river": river.__version__}
for name, make in (("ADWIN", drift.ADWIN), ("PageHinkley", drift.PageHinkley)):
    alarms, elapsed, timed_samples = [], 0.0, 0
    for s in range(streams):
        values = data[s].tolist()
        det = make()
        found = []
        start = time.thread_time()
        for i, x in enumerate(values):
            det.update(x)
            if det.drift_detected:
                found.append(i)
        t = time.thread_time() - start
        if s in timed_set:
            elapsed += t
            timed_samples += length
        alarms.append(found)
    results[name] = {"alarms": alarms, "seconds": elapsed, "timed_samples": timed_samples}
    print(f"{name}: {elapsed:.1f} s over {timed_samples} samples, {timed_samples / elapsed / 1e6:.3f} M samples/s",
          file=sys.stderr)
with open(out, "w") as f:
    json.dump(results, f)
