"""The fixed cost of the local stack: the embedded broker and the six services started as e2e.sh
starts them, no load. Per process, CPU milliseconds per second while idle, and post → visible
of probes (one every `--probe-interval`) as a user sees it on that idle stack. With `--b-env`,
two configurations alternate (A, B, A, B, …) on the same binaries (or `--b-bin`), each round a
fresh stack, so a host that gets busier between rounds shows in both. See Benchmarks/README.md
(`idle.sh`)."""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stack import HZ, SERVICES, Load, Prober, Stack, freshness, proc_ticks  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def log(text):
    print(text, file=sys.stderr, flush=True)


def host_busy():
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return sum(fields) - fields[3] - fields[4], sum(fields)


def env_pairs(items):
    out = {}
    for item in items or []:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def record(stack, args, label, seconds):
    """`perf record -g` of each process of `--perf-of` for `seconds`, into `--perf`/<label>-<name>.data."""
    if not args.perf:
        return []
    return [subprocess.Popen(["perf", "record", "-g", "-o", os.path.join(args.perf, f"{label}-{name}.data"), "-p", str(stack.pids[name]),
                              "--", "sleep", str(seconds)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for name in args.perf_of.split(",")]


def measure(bin_dir, env, load_args, args, label, port):
    work = tempfile.mkdtemp(prefix="twinstream-idle-")
    stack = Stack(bin_dir, args.models, work, port, args.partitions, log=log, extra_env=dict({"STALE_FACTOR": "1000"}, **env),
                  broker_args=["--debug", "mock"] if args.appends else [])
    try:
        stack.start()
        time.sleep(args.settle)
        perfs = record(stack, args, f"{label}-idle", args.seconds)
        t0, ticks0, host0 = time.monotonic(), {n: proc_ticks(p) for n, p in stack.pids.items()}, host_busy()
        time.sleep(args.seconds)
        t1, ticks1, host1 = time.monotonic(), {n: proc_ticks(p) for n, p in stack.pids.items()}, host_busy()
        for perf in perfs:
            perf.wait()
        cpu = {n: (ticks1[n] - ticks0[n]) / HZ / (t1 - t0) * 1000 for n in stack.pids}
        ours = sum(ticks1[n] - ticks0[n] for n in stack.pids)
        other = max(0.0, ((host1[0] - host0[0]) - ours) / ((host1[1] - host0[1]) or 1) * os.cpu_count())
        prober = Prober(stack, interval=args.probe_interval)
        prober.start()
        time.sleep(args.probe_seconds)
        idle_fresh = freshness(prober.samples[1:])
        result = {"label": label, "cpuMsPerSecond": cpu, "total": sum(cpu.values()), "otherLoadCores": other, "freshness": idle_fresh}
        if args.rate:
            # Under load: CPU per reading over the last two thirds of the run (the broker's logs
            # fill during the first third), the probes of that window.
            load = Load(bin_dir, stack.bootstrap, args.rate, args.twins, args.load_seconds, "cost-", extra=load_args)
            time.sleep(args.load_seconds / 3)
            t0, ticks0, host0, sent0 = time.monotonic(), {n: proc_ticks(p) for n, p in stack.pids.items()}, host_busy(), load.delivered()
            perfs = record(stack, args, f"{label}-load", args.load_seconds / 3)
            time.sleep(args.load_seconds * 2 / 3 - 1)
            for perf in perfs:
                perf.wait()
            t1, ticks1, host1, sent1 = time.monotonic(), {n: proc_ticks(p) for n, p in stack.pids.items()}, host_busy(), load.delivered()
            summary = load.wait()
            readings = max(1, sent1 - sent0)
            per = {n: (ticks1[n] - ticks0[n]) / HZ / readings * 1e6 for n in stack.pids}
            ours = sum(ticks1[n] - ticks0[n] for n in stack.pids)
            result["load"] = {"rate": args.rate, "twins": args.twins, "readings": readings, "deliveredRate": readings / (t1 - t0),
                              "skipped": summary["skipped"], "cpuUsPerReading": per, "totalUsPerReading": sum(per.values()),
                              "otherLoadCores": max(0.0, ((host1[0] - host0[0]) - ours) / ((host1[1] - host0[1]) or 1) * os.cpu_count()),
                              "freshness": freshness(prober.samples, t0, t1)}
        prober.stop()
        if args.appends:
            result["appends"] = log_appends(os.path.join(work, "broker.err"))
        if stack.exited():
            raise RuntimeError(f"exited: {stack.exited()}")
        return result
    finally:
        stack.stop()
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)


APPEND = re.compile(r"Log append (\S+) \[(\d+)\] (\d+) messages, (\d+) bytes")


def log_appends(path):
    """Per topic, the message sets the mock broker appended (`twinctl broker --debug mock`): how
    many, their messages and bytes. The broker's work per fetch grows with the message sets a
    partition holds, and every fetch returns at most one per partition."""
    topics = {}
    with open(path, errors="replace") as f:
        for line in f:
            m = APPEND.search(line)
            if m:
                t = topics.setdefault(m.group(1), {"sets": 0, "messages": 0, "bytes": 0})
                t["sets"] += 1
                t["messages"] += int(m.group(3))
                t["bytes"] += int(m.group(4))
    return topics


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bin", default=os.environ.get("TWINSTREAM_BIN_DIR"), help="directory of the release executables (A)")
    p.add_argument("--b-bin", help="executables of configuration B (default: --bin)")
    p.add_argument("--env", action="append", help="KEY=VALUE for the stack of A (repeatable)")
    p.add_argument("--b-env", action="append", help="KEY=VALUE for B; with it or --b-bin, A and B alternate")
    p.add_argument("--load-arg", action="append", help="an argument for twinctl load of A, e.g. --load-arg=--tick-ms=50 (repeatable)")
    p.add_argument("--b-load-arg", action="append", help="the same for B")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--seconds", type=float, default=20, help="idle seconds measured per stack")
    p.add_argument("--settle", type=float, default=5, help="seconds after ready before measuring")
    p.add_argument("--probe-seconds", type=float, default=15, help="seconds of probes after the idle measurement")
    p.add_argument("--probe-interval", type=float, default=0.2)
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--base-port", type=int, default=19380)
    p.add_argument("--models", default=os.path.join(ROOT, "Schemas", "models"))
    p.add_argument("--rate", type=float, help="after the idle window, offer this many readings/s (twinctl load) and measure CPU per reading")
    p.add_argument("--twins", type=int, default=10000)
    p.add_argument("--load-seconds", type=float, default=45)
    p.add_argument("--appends", action="store_true", help="count the broker's log appends per topic (twinctl broker --debug mock)")
    p.add_argument("--perf", help="directory for `perf record -g` of the broker (or --perf-of) while idle and under load")
    p.add_argument("--perf-of", default="broker", help="processes to record, e.g. broker,ingestor,validator")
    p.add_argument("--json", help="write every round's figures here")
    p.add_argument("--keep-work", action="store_true")
    args = p.parse_args()
    configs = [("A", args.bin, env_pairs(args.env), args.load_arg or [])]
    if args.b_env or args.b_bin or args.b_load_arg:
        configs.append(("B", args.b_bin or args.bin, env_pairs(args.b_env), args.b_load_arg or []))
    if args.perf:
        os.makedirs(args.perf, exist_ok=True)
    results = []
    for r in range(args.rounds):
        for label, bin_dir, env, load_args in configs:
            res = measure(bin_dir, env, load_args, args, f"{label}{r + 1}", args.base_port)
            results.append(res)
            f = res["freshness"]
            log(f"{res['label']}: " + " ".join(f"{n}={v:.1f}" for n, v in res["cpuMsPerSecond"].items())
                + f" total={res['total']:.1f} ms/s; other load {res['otherLoadCores']:.2f} cores; post→visible p50 {f['p50']:.0f} p90 {f['p90']:.0f} max {f['max']:.0f} ms (n={f['n']}, missed {f['missed']})")
            if "load" in res:
                l, f = res["load"], res["load"]["freshness"]
                log(f"{res['label']} at {l['rate']:.0f}/s (delivered {l['deliveredRate']:.0f}/s, skipped {l['skipped']}): "
                    + " ".join(f"{n}={v:.1f}" for n, v in l["cpuUsPerReading"].items()) + f" total={l['totalUsPerReading']:.1f} µs/reading; "
                    f"other load {l['otherLoadCores']:.2f}; post→visible p50 {f['p50'] or 0:.0f} p90 {f['p90'] or 0:.0f} p99 {f['p99'] or 0:.0f} ms (n={f['n']}, missed {f['missed']})")
    names = ["broker"] + SERVICES
    print("| config | " + " | ".join(names) + " | total | other load | post→visible p50 / p90 / max |")
    print("|---|" + "---|" * (len(names) + 3))
    for res in results:
        f = res["freshness"]
        print(f"| {res['label']} | " + " | ".join(f"{res['cpuMsPerSecond'][n]:.1f}" for n in names)
              + f" | {res['total']:.1f} | {res['otherLoadCores']:.2f} | {f['p50']:.0f} / {f['p90']:.0f} / {f['max']:.0f} ms |")
    if args.rate:
        print(f"\nUnder load ({args.rate:.0f}/s over {args.twins} twins, last two thirds of {args.load_seconds:.0f} s), µs CPU per reading:\n")
        print("| config | " + " | ".join(names) + " | total | delivered/s | other load | post→visible p50 / p90 / p99 |")
        print("|---|" + "---|" * (len(names) + 4))
        for res in results:
            l, f = res["load"], res["load"]["freshness"]
            print(f"| {res['label']} | " + " | ".join(f"{l['cpuUsPerReading'][n]:.1f}" for n in names)
                  + f" | {l['totalUsPerReading']:.1f} | {l['deliveredRate']:.0f} | {l['otherLoadCores']:.2f} | {f['p50'] or 0:.0f} / {f['p90'] or 0:.0f} / {f['p99'] or 0:.0f} ms |")
    for res in results:
        if "appends" in res:
            print(f"\nMessage sets appended per topic ({res['label']}, whole run):\n")
            print("| topic | message sets | messages | messages per set | bytes per set |")
            print("|---|---|---|---|---|")
            for topic, t in sorted(res["appends"].items(), key=lambda kv: -kv[1]["sets"]):
                print(f"| {topic} | {t['sets']} | {t['messages']} | {t['messages'] / t['sets']:.1f} | {t['bytes'] / t['sets']:.0f} |")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"configs": {label: {"env": env, "loadArgs": load_args} for label, _, env, load_args in configs}, "rounds": results}, out, indent=1)


if __name__ == "__main__":
    main()
