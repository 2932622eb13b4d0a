#!/usr/bin/env python3
"""Combine DriftBench's and the River peer's JSON into the markdown table printed by drift.sh.

Usage: report.py SWIFT.json RIVER.json SEEDS LENGTH CHANGE
Streams 0..SEEDS-1 carry a +1 sigma shift at CHANGE, streams SEEDS..2*SEEDS-1 none (see bench_streams.py).
Delay = first alarm index at or after CHANGE minus CHANGE (River's convention: the index of the update
whose drift_detected is True). False alarms per 100k = alarms on the no-change streams per 100,000 samples.
"""
import json
import statistics
import sys

swift_path, river_path, seeds, length, change = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
ours = json.load(open(swift_path))
theirs = json.load(open(river_path))


def metrics(entry):
    alarms = entry["alarms"]
    delays, missed = [], 0
    for s in range(seeds):
        after = [i for i in alarms[s] if i >= change]
        if after:
            delays.append(after[0] - change)
        else:
            missed += 1
    false_alarms = sum(len(alarms[s]) for s in range(seeds, 2 * seeds))
    samples = entry.get("timed_samples", 2 * seeds * length)
    return {
        "median": statistics.median(delays) if delays else float("nan"),
        "max": max(delays) if delays else float("nan"),
        "missed": missed,
        "fa": false_alarms / (seeds * length) * 100_000,
        "rate": samples / entry["seconds"],
    }


print(f"{seeds} seeds × {length:,} N(0,1) samples with a +1σ shift at {change:,}, and {seeds} seeds without; "
      f"one core (taskset -c 0). River {theirs.get('river', '?')}.")
print()
print("| detector | implementation | median delay | max delay | missed | false alarms / 100k | samples/s | speed-up |")
print("|---|---|---|---|---|---|---|---|")
for name in ("ADWIN", "PageHinkley", "CUSUM"):
    m = metrics(ours[name])
    r = metrics(theirs[name]) if name in theirs else None
    speedup = f"{m['rate'] / r['rate']:.1f}×" if r else "n/a"
    h = " (h=12.5, k=0.5)" if name == "CUSUM" else ""
    print(f"| {name}{h} | Swift Drift | {m['median']:g} | {m['max']:g} | {m['missed']} | {m['fa']:.2f} | {m['rate']:,.0f} | {speedup} |")
    if r:
        print(f"| {name} | River | {r['median']:g} | {r['max']:g} | {r['missed']} | {r['fa']:.2f} | {r['rate']:,.0f} | 1× |")
    else:
        print(f"| {name} | River | n/a (River {theirs.get('river', '?')} has no CUSUM) | | | | | |")
print()
for name in ("ADWIN", "PageHinkley"):
    same = ours[name]["alarms"] == theirs[name]["alarms"]
    n = sum(len(a) for a in ours[name]["alarms"])
    print(f"- {name}: alarm indices identical to River on all {2 * seeds} streams: {'yes' if same else 'NO'} ({n} alarms)")
    if not same:
        bad = [s for s in range(2 * seeds) if ours[name]["alarms"][s] != theirs[name]["alarms"][s]]
        print(f"  differing streams: {bad[:10]}")
if "timed_samples" in theirs.get("ADWIN", {}) and theirs["ADWIN"]["timed_samples"] != 2 * seeds * length:
    print(f"- River throughput measured on {theirs['ADWIN']['timed_samples'] // length} of {2 * seeds} streams; "
          "delays and false alarms on all.")
