"""The end-to-end benchmark and the soak (see Benchmarks/README.md, `e2e.sh` and `soak.sh`).

The whole local stack as processes, `twinctl load` offering a fixed rate over N twins, probes
measuring post → visible, every reading accounted for and the final state compared with a
reference fold computed here. Results: a markdown table, SVG plots and a JSON summary under
Benchmarks/results/."""
import argparse
import datetime
import glob
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import plot  # noqa: E402
from stack import HZ, SERVICES, Client, Load, Prober, Stack, freshness, histogram, histogram_quantile, labelled, proc_ticks, total  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
STAGES = ["ingestor", "validator", "state-updater", "drift-monitor", "query-api"]
ABORT_LAG = 20_000  # messages of one service's lag that end a step (see run_step)
VALUE_SETS = 64  # LoadReadings.valueSets


def log(text):
    print(text, file=sys.stderr, flush=True)


def values_of_set(s):
    """LoadReadings.values(set:) — the reference fold's values (Shared/LoadGen/LoadPlan.swift)."""
    return {"flow": 100 + s * 0.5, "pressure": 4 + s * 0.0625, "temperature": 60 + s * 0.25, "vibration": 1 + s * 0.125, "rpm": 1400 + s * 4}


def twin_id(prefix, i):
    return f"{prefix}{i:06d}"


# MARK: the host

def host_cpu():
    """(busy, total) jiffies of the whole host from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def machine(bin_dir):
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    mem = next((int(l.split()[1]) // 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    git = lambda *a: subprocess.run(["git", "-C", ROOT] + list(a), capture_output=True, text=True).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD")
    dirty = " (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else ""
    built = datetime.datetime.fromtimestamp(os.path.getmtime(os.path.join(bin_dir, "state-updater")), datetime.timezone.utc)
    return {"nproc": os.cpu_count(), "cpu": model, "memoryMiB": mem, "commit": commit + dirty, "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
            "binDir": bin_dir, "binariesBuilt": built.strftime("%Y-%m-%d %H:%M UTC"), "kernel": platform.release(),
            "loadAverageAtStart": os.getloadavg()[0]}


# MARK: sampling

class Sampler(threading.Thread):
    """Scrapes every service's /metrics and every process's /proc each `period` seconds."""

    def __init__(self, stack, period=1.0):
        super().__init__(daemon=True)
        self.stack, self.period = stack, period
        self.samples = []
        self.stop_flag = threading.Event()

    def sample(self):
        s = self.stack.scrape()
        s["host"] = host_cpu()
        self.samples.append(s)
        return s

    def run(self):
        while not self.stop_flag.is_set():
            start = time.monotonic()
            self.sample()
            self.stop_flag.wait(max(0.0, self.period - (time.monotonic() - start)))

    def stop(self):
        self.stop_flag.set()
        self.join(timeout=30)


def lag_of(sample, service):
    return total(sample["metrics"].get(service, {}), "twinstream_consumer_lag_messages")


def total_lag(sample):
    return sum(lag_of(sample, s) for s in STAGES)


def lag_growing(samples, since, until, rate):
    """True when a stage's lag grew over the step: the mean of its last quarter exceeds the mean of
    its second quarter by more than half a second of readings (at least 2,000: batches of up to
    4,000 make a stage's lag saw-tooth even when it keeps up)."""
    window = sorted((s for s in samples if since <= s["t"] <= until), key=lambda s: s["t"])
    if len(window) < 8:
        return {}
    n = len(window)
    grown = {}
    for service in STAGES:
        q2 = [lag_of(s, service) for s in window[n // 4: n // 2]]
        q4 = [lag_of(s, service) for s in window[3 * n // 4:]]
        growth = sum(q4) / len(q4) - sum(q2) / len(q2)
        if growth > max(0.5 * rate, 2000):
            grown[service] = growth
    return grown


def drain(stack, sampler, timeout=180):
    """Waits until no stage lags (at most a few messages: the probes go on) in three samples in a
    row; the seconds it took, or None after `timeout`."""
    start = time.monotonic()
    quiet = 0
    while time.monotonic() - start < timeout:
        quiet = quiet + 1 if total_lag(sampler.sample()) <= 5 else 0
        if quiet >= 3:
            return time.monotonic() - start
        time.sleep(0.5)
    return None


# MARK: a measured step

def cpu_between(s0, s1):
    """Seconds of CPU per process between two samples."""
    out = {}
    for name, (t0, _, _) in s0["procs"].items():
        t1 = s1["procs"].get(name, (None,))[0]
        if t0 is not None and t1 is not None:
            out[name] = (t1 - t0) / HZ
    return out


def event_ages(s0, s1):
    """Per service: mean, p50 and p99 (ms) of `twinstream_event_age_seconds` observed between two
    samples (the histogram's buckets: 1, 5, 10, 50, 100, 500 ms, 1, 5, 10, 60, 300 s)."""
    out = {}
    for service in STAGES:
        h0 = histogram(s0["metrics"].get(service, {}), "twinstream_event_age_seconds")
        h1 = histogram(s1["metrics"].get(service, {}), "twinstream_event_age_seconds")
        n = h1[2] - h0[2]
        if n > 0:
            out[service] = {"mean": (h1[1] - h0[1]) / n * 1000, "p50": histogram_quantile(0.5, h0, h1) * 1000,
                            "p99": histogram_quantile(0.99, h0, h1) * 1000}
    return out


def run_step(ctx, rate, seconds, label, perf=False):
    """Offers `rate` readings/s for `seconds`, then drains. Sustained: everything offered was
    delivered to the broker and no stage's lag grew. With `perf`, the middle of the step is
    sampled by `perf record` in the state-updater and the query API."""
    stack, sampler, prober = ctx["stack"], ctx["sampler"], ctx["prober"]
    s0 = sampler.sample()
    host0 = host_cpu()
    load = Load(ctx["bin"], stack.bootstrap, rate, ctx["twins"], seconds, ctx["prefix"], extra=["--tick-ms", str(ctx["loadTickMs"])])
    profiles = profile(stack, ["state-updater", "query-api"], min(20, seconds / 2), delay=seconds / 4) if perf else {}
    # The mock broker keeps ~5 MiB per partition: a consumer further behind loses what it has not
    # read (and the query view's follower then stays stuck at the lost offset). A step whose lag
    # passes ABORT_LAG is not sustained anyway; it ends there, before anything is lost.
    aborted = None
    began = next_progress = time.monotonic()
    while load.proc.poll() is None:
        time.sleep(0.5)
        last = sampler.samples[-1] if sampler.samples else None
        over = {svc: lag_of(last, svc) for svc in STAGES if last and lag_of(last, svc) > ABORT_LAG}
        if over and aborted is None:
            aborted = over
            load.stop()
        # Long steps (a soak) say how they are going once a minute.
        if seconds >= 300 and last and time.monotonic() >= next_progress + 60:
            next_progress = time.monotonic()
            f = freshness(prober.samples, next_progress - 60)
            log(f"  {label} {(next_progress - began) / 60:.0f} of {seconds / 60:.0f} min: post → visible p50/p99 {fmt(f['p50'])}/{fmt(f['p99'])} ms "
                f"over the last minute ({f['missed']} missed); lag {', '.join(f'{svc} {lag_of(last, svc):,.0f}' for svc in STAGES)}; "
                f"RSS MiB {', '.join(f'{name} {v[1] / 2**20:,.0f}' for name, v in last['procs'].items())}")
    summary = load.wait()
    s1 = sampler.sample()
    host1 = host_cpu()
    ctx["runs"].append(summary["sent"])
    t_start, t_end = s0["t"], s1["t"]
    grown = lag_growing(sampler.samples, t_start, t_end, rate)
    delivered_ok = summary["skipped"] == 0 and summary["failed"] == 0 and summary["delivered"] >= 0.99 * summary["offered"]
    cpu = cpu_between(s0, s1)
    cpu["load"] = summary["cpuSeconds"]
    elapsed = t_end - t_start
    readings = max(1, summary["delivered"])
    host_busy = (host1[0] - host0[0]) / (host1[1] - host0[1]) * (os.cpu_count() or 1)
    ours = sum(cpu.values()) / elapsed
    drained = drain(stack, sampler)
    if drained is None:
        ctx["stuck"] = f"after the {label} step at {rate:.0f}/s the lag did not drain in 180 s: {dict((k, lag_of(sampler.samples[-1], k)) for k in STAGES)}"
        log("  " + ctx["stuck"])
    step = {
        "label": label, "twins": ctx["twins"], "rate": rate, "seconds": round(elapsed, 1), "start": t_start - ctx["t0"], "end": t_end - ctx["t0"],
        "offered": summary["offered"], "sent": summary["sent"], "delivered": summary["delivered"], "skipped": summary["skipped"],
        "failed": summary["failed"], "deliveredRate": summary["delivered"] / summary["seconds"], "lagGrowth": grown,
        "sustained": delivered_ok and not grown and not aborted, "aborted": aborted, "drainSeconds": drained,
        "maxLag": {svc: max((lag_of(s, svc) for s in sampler.samples if t_start <= s["t"] <= t_end), default=0) for svc in STAGES},
        "cpuUsPerReading": {p: c / readings * 1e6 for p, c in cpu.items()}, "coresBusy": {p: c / elapsed for p, c in cpu.items()},
        "hostCoresBusy": host_busy, "otherCoresBusy": max(0.0, host_busy - ours),
        "freshness": freshness(prober.samples, t_start + min(5, elapsed / 4), t_end), "eventAgeMs": event_ages(s0, s1),
    }
    if profiles:
        step["profiles"] = {name: fn() for name, fn in profiles.items()}
    ctx["steps"].append(step)
    f = step["freshness"]
    log(f"  {label}: {rate:.0f}/s × {elapsed:.0f} s over {ctx['twins']} twins: delivered {step['deliveredRate']:.0f}/s, "
        f"{'SUSTAINED' if step['sustained'] else 'NOT sustained'}"
        + (f" (lag grew: {', '.join(f'{k} +{v:.0f}' for k, v in grown.items())})" if grown else "")
        + (f" (ended after {summary['seconds']:.0f} s: lag {aborted})" if aborted else "")
        + ("" if delivered_ok else f" (load: skipped {summary['skipped']}, failed {summary['failed']})")
        + f"; post→visible p50/p99 {fmt(f['p50'])}/{fmt(f['p99'])} ms ({f['n']} probes, {f['missed']} missed); "
        f"state-updater {step['cpuUsPerReading'].get('state-updater', 0):.1f} µs, query-api {step['cpuUsPerReading'].get('query-api', 0):.1f} µs CPU per reading; "
        f"drained in {fmt(drained)} s; other load on the host {step['otherCoresBusy']:.2f} cores")
    return step


def profile(stack, services, seconds, delay):
    """Starts `perf record` (499 Hz, user and kernel) on each service after `delay` seconds for
    `seconds`; returns, per service, a function giving its top symbols (self time) once done."""
    out = {}
    for name in services:
        path = os.path.join(stack.work, f"perf-{name}.data")
        cmd = f"sleep {delay:.1f}; exec perf record -F 499 -o {path} -p {stack.pids[name]} -- sleep {seconds:.1f}"
        proc = subprocess.Popen(["sh", "-c", cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def top(proc=proc, path=path):
            proc.wait()
            r = subprocess.run(f"perf report -i {path} --stdio --no-children --sort dso,symbol --percent-limit 1.5 2>/dev/null"
                               " | grep -v '^#' | grep -v '^$' | head -25 | (swift demangle --simplified 2>/dev/null || cat)",
                               shell=True, capture_output=True, text=True)
            return [" ".join(line.split())[:200] for line in r.stdout.splitlines() if line.strip()]
        out[name] = top
    return out


def fmt(v, digits=0):
    if v is None:
        return "–"
    return f"{v:,.{digits}f}"


# MARK: exactness

def verify(ctx):
    """Every reading accounted for (from the services' counters) and the final state equal to the
    reference fold of what `twinctl load` sent (from `GET /v1/twins` pages)."""
    stack = ctx["stack"]
    # No probe in flight, and every reading through every stage, before counting.
    ctx["prober"].pause()
    drain(stack, ctx["sampler"])
    time.sleep(1)
    s = ctx["sampler"].sample()
    m = s["metrics"]
    sent = sum(ctx["runs"])
    probes = ctx["prober"].posted
    dead = {svc: total(m.get(svc, {}), "twinstream_messages_produced_total", "telemetry.deadletter.v1") for svc in ("ingestor", "validator", "state-updater")}
    acct = {
        "loadSent": sent, "probesPosted": probes,
        "ingestorConsumedRaw": total(m["ingestor"], "twinstream_messages_consumed_total", "telemetry.raw.v1"),
        "ingestorHTTPReadings": total(m["ingestor"], "twinstream_ingest_http_readings_total"),
        "ingested": total(m["ingestor"], "twinstream_messages_produced_total", "telemetry.ingested.v1"),
        "valid": total(m["validator"], "twinstream_messages_produced_total", "telemetry.valid.v1"),
        "stateUpdaterConsumedValid": total(m["state-updater"], "twinstream_messages_consumed_total", "telemetry.valid.v1"),
        "changes": total(m["state-updater"], "twinstream_messages_produced_total", "twin.changes.v1"),
        "late": total(m["state-updater"], "twinstream_late_events_total"),
        "duplicates": total(m["state-updater"], "twinstream_duplicate_events_total"),
        "deadLettered": dead,
        "driftMonitorConsumedValid": total(m["drift-monitor"], "twinstream_messages_consumed_total", "telemetry.valid.v1"),
    }
    # Every reading applied once (a change; late ones too) or dead-lettered; duplicates are copies
    # a stage sent again (at-least-once after a retry or a rebalance) that the state-updater
    # recognised, so they are reported, not counted as readings.
    accounted = acct["changes"] + sum(dead.values())
    acct["accounted"] = accounted
    acct["allAccounted"] = accounted == sent + probes and acct["ingestorConsumedRaw"] >= sent
    # The reference fold: reading k of a run went to twin k % N in round k // N (LoadSchedule).
    n, prefix = ctx["twins"], ctx["prefix"]
    expected = {}
    for i in range(n):
        version, last = 0, None
        for run in ctx["runs"]:
            c = run // n + (1 if i < run % n else 0)
            if c:
                version += c
                last = (i + c - 1) % VALUE_SETS
        if version:
            expected[twin_id(prefix, i)] = (version, values_of_set(last))
    api = Client(stack.ports["query-api"], timeout=60)
    seen, cursor, pages = {}, None, 0
    while True:
        path = "/v1/twins?limit=1000" + (f"&cursor={urllib.parse.quote(cursor, safe='')}" if cursor else "")
        status, body = api.request("GET", path)
        if status != 200:
            acct["foldError"] = f"GET {path}: {status} {body[:200]!r}"
            break
        page = json.loads(body)
        pages += 1
        for twin in page["items"]:
            if twin["twinId"].startswith(prefix):
                seen[twin["twinId"]] = (twin["version"], {k: p.get("value") for k, p in twin.get("properties", {}).items()})
        cursor = page.get("nextCursor")
        if not cursor:
            break
    mismatches = []
    for tid, (version, values) in expected.items():
        got = seen.get(tid)
        if got is None:
            mismatches.append(f"{tid}: missing")
        elif got[0] != version or any(got[1].get(k) != v for k, v in values.items()):
            mismatches.append(f"{tid}: version {got[0]} (expected {version}), values {got[1]} (expected {values})")
    extra = sorted(set(seen) - set(expected))
    acct["fold"] = {"twinsExpected": len(expected), "twinsSeen": len(seen), "pages": pages, "mismatches": len(mismatches) + len(extra),
                    "examples": (mismatches + [f"{t}: not sent" for t in extra])[:5]}
    acct["foldEqual"] = not mismatches and not extra and "foldError" not in acct
    log(f"  accounted: {accounted:.0f} of {sent + probes} readings (load {sent}, probes {probes}): changes {acct['changes']:.0f}, "
        f"duplicates (redelivered copies, dropped) {acct['duplicates']:.0f}, late {acct['late']:.0f}, dead-lettered {dict((k, int(v)) for k, v in dead.items())}; "
        f"final state of {len(seen)} twins {'EQUALS' if acct['foldEqual'] else 'DIFFERS FROM'} the reference fold"
        + (f" ({acct['fold']['examples']})" if not acct["foldEqual"] else ""))
    ctx["prober"].resume()
    return acct


# MARK: configurations

def start_stack(args, name, port_offset):
    work = os.path.join(args.work, name)
    stack = Stack(args.bin, args.models, work, args.base_port + port_offset, args.partitions, log=log,
                  extra_env={"STALE_FACTOR": str(args.stale_factor)})
    stack.start()
    return stack


def peak_memory(stack):
    out = {}
    for name, pid in stack.pids.items():
        try:
            with open(f"/proc/{pid}/status") as f:
                out[name] = next((int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:")), 0)
        except OSError:
            out[name] = 0
    return out


def series(ctx):
    """Time series for the plots: freshness samples and per-stage lag."""
    t0 = ctx["t0"]
    fresh = [(t - t0, d * 1000 if d is not None else None) for t, d in ctx["prober"].samples]
    lags = {svc: [(s["t"] - t0, lag_of(s, svc)) for s in ctx["sampler"].samples] for svc in STAGES}
    return fresh, lags


def on_stack(args, name, twins, prefix, port_offset, body, sample_period=1.0):
    """Starts a stack with its sampler and prober, runs `body(ctx)`, stops everything (whatever
    happens) and returns body's value and what was seen: peak RSS, error log lines, processes that
    exited early, probe errors, the series for the plots and the raw samples."""
    stack = start_stack(args, name, port_offset)
    prober = Prober(stack, interval=args.probe_interval)
    sampler = Sampler(stack, period=sample_period)
    ctx = {"stack": stack, "sampler": sampler, "prober": prober, "twins": twins, "prefix": prefix, "bin": args.bin, "loadTickMs": args.load_tick_ms,
           "runs": [], "steps": [], "t0": time.monotonic()}
    sampler.start()
    prober.start()
    try:
        out = body(ctx)
    finally:
        prober.stop()
        sampler.stop()
        seen = {"peakRSS": peak_memory(stack), "errorLogLines": stack.error_lines(), "exitedEarly": stack.exited(),
                "probeErrors": prober.errors[:5], "probesMissed": sum(1 for _, d in prober.samples if d is None)}
        fresh, lags = series(ctx)
        seen["series"] = {"freshness": fresh, "lag": lags}
        stack.stop()
    return out, seen, ctx


def warm_up(ctx):
    """Every twin created first (a twin's first reading costs more than the next ones, in the
    query view most), at a rate every stage holds; reported as the step `warm-up`."""
    warm_rate = min(2000, max(200, ctx["twins"] * 2))
    return run_step(ctx, warm_rate, max(5, 2 * ctx["twins"] / warm_rate), "warm-up")


def configuration(args, twins, first_rates, port_offset, freshness_rates=()):
    """One stack: steps at `first_rates`, a short search for the highest sustained rate, 60 s at
    it, then the accounting and the reference fold."""
    log(f"# {twins} twins")

    def body(ctx):
        warm_up(ctx)
        good, bad = None, None
        for rate in first_rates:
            if "stuck" in ctx:
                break
            st = run_step(ctx, rate, args.step_seconds, "freshness" if rate in freshness_rates else "search")
            if st["sustained"]:
                good = max(good or 0, rate)
            else:
                bad = min(bad or rate, rate)
        # Up by half again until a rate is not sustained, then halve the gap a few times.
        tries = 0
        while bad is None and tries < args.search_steps and "stuck" not in ctx:
            rate = int((good or first_rates[-1]) * 1.5)
            tries += 1
            if run_step(ctx, rate, args.step_seconds, "search")["sustained"]:
                good = rate
            else:
                bad = rate
        for _ in range(args.bisect_steps):
            lo = good or max(200, (bad or 1000) // 4)
            if bad is None or bad / lo < 1.12 or "stuck" in ctx:
                break
            rate = int((lo + bad) / 2)
            if run_step(ctx, rate, args.step_seconds, "search")["sustained"]:
                good = rate
            else:
                bad = rate
        good = good or max(200, (bad or 1000) // 4)
        if "stuck" in ctx:
            return good, ctx["steps"][-1], verify(ctx)
        hold = run_step(ctx, good, args.hold_seconds, "hold", perf=args.perf)
        for _ in range(3):  # a rate held for a short step may not hold for a long one: down by 15 %
            if hold["sustained"] or "stuck" in ctx:
                break
            good = int(good * 0.85)
            log(f"  hold not sustained; again at {good}/s")
            hold = run_step(ctx, good, args.hold_seconds, "hold")
        return good, hold, verify(ctx)

    return configuration_result(twins, *on_stack(args, f"{twins}twins", twins, f"t{twins}-", port_offset, body))


def configuration_at(args, twins, rate):
    """`--rate R --twins N --seconds S`: one hold at R, no search."""
    log(f"# {twins} twins at {rate:,.0f}/s")
    body = lambda ctx: (rate, warm_up(ctx) and run_step(ctx, rate, args.hold_seconds, "hold", perf=args.perf), verify(ctx))
    return configuration_result(twins, *on_stack(args, f"{twins}twins", twins, f"t{twins}-", 0, body))


def configuration_result(twins, out, seen, ctx):
    rate, hold, acct = out
    short = [st["rate"] for st in ctx["steps"] if st["sustained"] and st["label"] != "warm-up"]
    return dict(seen, twins=twins, stuck=ctx.get("stuck"), bestShortStep=max(short, default=None), sustained=rate if hold["sustained"] and hold["label"] == "hold" else None, holdRate=rate, hold=hold, steps=ctx["steps"], accounting=acct)


# MARK: baselines in the same run

def raw_to_valid(args):
    """`Benchmarks/pipeline-throughput.sh` on the same binaries: the ingestor and validator alone."""
    env = dict(os.environ, BIN=args.bin, N=str(args.baseline_n), PORT=str(args.base_port + 40), TWINS="1000", PARTITIONS=str(args.baseline_partitions))
    r = subprocess.run([os.path.join(ROOT, "Benchmarks", "pipeline-throughput.sh")], env=env, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        log(f"  raw → valid failed: {r.stderr[-1500:]}")
        return {"error": r.stderr[-500:]}
    out = {"output": r.stdout.strip()}
    m = re.search(r"= (\d+) readings/s", r.stdout)
    out["rate"] = int(m.group(1)) if m else None
    m = re.search(r"steady state .*?: (\d+) readings/s", r.stdout)
    out["steady"] = int(m.group(1)) if m else None
    m = re.search(r"CPU per reading: broker ([\d.]+) us, ingestor ([\d.]+) us, validator ([\d.]+) us", r.stdout)
    if m:
        out["cpuUsPerReading"] = {"broker": float(m.group(1)), "ingestor": float(m.group(2)), "validator": float(m.group(3))}
    m = re.search(r"\(valid (\d+), dead-lettered by validator (\d+), by ingestor (\d+)\)", r.stdout)
    if m and int(m.group(1)) < 0.99 * sum(int(x) for x in m.groups()):
        out["warning"] = f"only {m.group(1)} of the readings were valid: the figure measures dead-lettering"
    log(f"  raw → valid alone: {out.get('rate')} readings/s (steady {out.get('steady')}) {out.get('warning', '')}")
    return out


def relay_ceiling(args):
    """The project's Kafka layer with no parsing: two `twinctl bench relay` hops raw → ingested →
    valid on a fresh broker, over the same kind of fleet readings the raw → valid run uses."""
    work = os.path.join(args.work, "relay")
    os.makedirs(work, exist_ok=True)
    twinctl = os.path.join(args.bin, "twinctl")
    n = args.baseline_n // 1000 * 1000
    broker = subprocess.Popen([twinctl, "broker", "--partitions", str(args.baseline_partitions)], stdout=open(os.path.join(work, "broker.out"), "w"),
                              stderr=open(os.path.join(work, "broker.err"), "w"))
    try:
        bootstrap = None
        for _ in range(300):
            m = re.search(r"bootstrap\.servers=(\S+)", open(os.path.join(work, "broker.out")).read())
            if m:
                bootstrap = m.group(1)
                break
            time.sleep(0.05)
        # As pipeline-throughput.sh fills it: a minute per tick, ending now.
        subprocess.run([twinctl, "fleet", "--brokers", bootstrap, "--twins", "1000", "--ticks", str(n // 1000), "--interval-ms", "0",
                        "--start", str(int(time.time() * 1000) - n // 1000 * 60000), "--models", args.models],
                       check=True, stdout=subprocess.DEVNULL, timeout=600)
        hop = lambda a, b: subprocess.Popen([twinctl, "bench", "relay", "--brokers", bootstrap, "--topic", a, "--to", b, "--count", str(n),
                                             "--partitions", str(args.baseline_partitions)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        second = hop("telemetry.ingested.v1", "telemetry.valid.v1")
        first = hop("telemetry.raw.v1", "telemetry.ingested.v1")
        pids = {"broker": broker.pid, "relay raw→ingested": first.pid, "relay ingested→valid": second.pid}
        t0 = {k: proc_ticks(p) for k, p in pids.items()}
        last = dict(t0)
        while first.poll() is None or second.poll() is None:
            for k, p in pids.items():
                t = proc_ticks(p)
                if t is not None:
                    last[k] = t
            time.sleep(0.05)
        o1, e1 = first.communicate()
        o2, e2 = second.communicate()
        if first.returncode or second.returncode:
            log(f"  relay failed: {e1[-500:]} {e2[-500:]}")
            return {"error": (e1 + e2)[-500:]}
        start = int(re.search(r"first-read-ms=(\d+)", o1).group(1))
        end = int(re.search(r"last-delivered-ms=(\d+)", o2).group(1))
        seconds = (end - start) / 1000
        cpu = {k: (last[k] - t0[k]) / HZ / n * 1e6 for k in pids if t0[k] is not None}
        out = {"messages": n, "seconds": seconds, "rate": n / seconds, "cpuUsPerReading": cpu}
        log(f"  raw relay ceiling: {n} messages through two hops in {seconds:.2f} s = {out['rate']:.0f}/s")
        return out
    finally:
        broker.terminate()
        broker.wait()


# MARK: report

def table(rows, header):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def step_rows(steps):
    rows = []
    for s in steps:
        f = s["freshness"]
        rows.append([s["label"], f"{s['rate']:,.0f}", f"{s['deliveredRate']:,.0f}", s["seconds"], "yes" if s["sustained"] else ("**no** (ended: lag over 20k)" if s.get("aborted") else "**no**"),
                     ", ".join(f"{k} {v:,.0f}" for k, v in s["maxLag"].items() if v) or "0",
                     f"{fmt(f['p50'])} / {fmt(f['p90'])} / {fmt(f['p99'])} / {fmt(f['max'])}", f"{f['missed']} of {f['n']}",
                     fmt(s["drainSeconds"], 1), f"{s['otherCoresBusy']:.2f}"])
    return table(rows, ["step", "offered /s", "delivered /s", "s", "sustained", "max lag in step (messages)",
                        "post → visible p50 / p90 / p99 / max (ms)", "not visible in 10 s", "drain (s)", "other load (cores)"])


def cpu_rows(step):
    procs = ["broker"] + SERVICES + ["load"]
    rows = [[p, f"{step['cpuUsPerReading'].get(p, 0):.1f}", f"{step['coresBusy'].get(p, 0):.2f}"] for p in procs if p in step["cpuUsPerReading"]]
    ours = sum(v for k, v in step["cpuUsPerReading"].items())
    rows.append(["**all**", f"{ours:.1f}", f"{sum(step['coresBusy'].values()):.2f}"])
    return table(rows, ["process", "CPU µs per reading", "cores busy"])


def age_rows(step):
    return table([[svc, fmt(a["mean"], 1), fmt(a["p50"], 1), fmt(a["p99"], 1)] for svc, a in step["eventAgeMs"].items()],
                 ["service (hop input)", "event age mean (ms)", "p50 (ms, from buckets)", "p99 (ms, from buckets)"])


def write_svg(path, title, subtitle, result):
    steps = result["steps"]
    bands = [(s["start"], s["end"], f"{s['rate'] / 1000:g}k/s") for s in steps]
    fresh = result["series"]["freshness"]
    panels = [{"title": "post → visible (probe twins; × = not visible within 10 s)", "ylabel": "ms (log)", "log": True,
               "series": [{"name": "probe", "points": fresh, "style": "dots"}]},
              {"title": "consumer lag per stage", "ylabel": "messages",
               "series": [{"name": svc, "points": pts} for svc, pts in result["series"]["lag"].items()]}]
    with open(path, "w") as f:
        f.write(plot.render(title, panels, bands, subtitle=subtitle))


def report(args, info, results, baselines, stamp):
    os.makedirs(args.results, exist_ok=True)
    base = os.path.join(args.results, f"e2e-{stamp}")
    md = [f"# End-to-end benchmark, {stamp}", "",
          f"Machine: {info['nproc']} cores ({info['cpu']}), {info['memoryMiB']:,} MiB, kernel {info['kernel']}; commit {info['commit']} "
          f"on {info['branch']}; binaries {info['binDir']} built {info['binariesBuilt']}; load average at start {info['loadAverageAtStart']:.2f}. "
          f"Command: `{' '.join(sys.argv[1:]) or '(defaults)'}`; {args.partitions} partitions per topic on the stack's embedded broker "
          f"({args.baseline_partitions} for the baselines, as pipeline-throughput.sh runs); STALE_FACTOR={args.stale_factor:g}; "
          f"load ticks of {args.load_tick_ms} ms; release build; every process on the same 2 cores. \"Other load\" is the host's busy cores minus this benchmark's processes "
          f"(other engineers' builds): figures taken under it are low.", ""]
    summary = []
    rv = baselines.get("rawToValid", {}).get("steady") or baselines.get("rawToValid", {}).get("rate")
    relay = baselines.get("relay", {}).get("rate")
    for r in results:
        h = r["hold"]
        cpu = h["cpuUsPerReading"]
        summary.append([f"{r['twins']:,}", fmt(r["sustained"]) if r["sustained"] else f"none held (last tried {r['holdRate']:,})",
                        fmt(r.get("bestShortStep")),
                        f"{h['freshness']['p50'] and fmt(h['freshness']['p50'])} / {fmt(h['freshness']['p99'])}",
                        f"{cpu.get('state-updater', 0):.1f} + {cpu.get('query-api', 0):.1f} = {cpu.get('state-updater', 0) + cpu.get('query-api', 0):.1f}",
                        f"{r['sustained'] / rv:.0%}" if r["sustained"] and rv else "–",
                        "yes" if r["accounting"]["allAccounted"] else "**no**", "yes" if r["accounting"]["foldEqual"] else "**no**"])
    md += ["## Summary", "", table(summary, ["twins", "highest sustained rate (readings/s, 60 s hold)", "highest rate sustained in a search step",
                                              "post → visible p50 / p99 at the hold (ms)",
                                              "CPU µs per reading: state-updater + query-api", "of raw → valid alone", "every reading accounted for",
                                              "final state = reference fold"]), ""]
    md += [f"Beside it, same run: raw → valid alone (ingestor + validator, `pipeline-throughput.sh`, N={args.baseline_n:,}): "
           f"**{fmt(rv)} readings/s** (steady state; whole run {fmt(baselines.get('rawToValid', {}).get('rate'))}); raw relay ceiling "
           f"(two `twinctl bench relay` hops raw → ingested → valid, no parsing): **{fmt(relay)} messages/s**. "
           + (f"Ratios: raw → valid / relay = {rv / relay:.0%}; " if rv and relay else "")
           + "; ".join(f"end to end with {r['twins']:,} twins / raw → valid = {r['sustained'] / rv:.0%}, / relay = {r['sustained'] / relay:.0%}"
                       for r in results if r["sustained"] and rv and relay) + ".", ""]
    for r in results:
        md += [f"## {r['twins']:,} twins", "", "Steps in order (each: `twinctl load` at a fixed rate, then a drain to zero lag):", "", step_rows(r["steps"]), ""]
        md += [f"CPU per reading during the hold ({r['holdRate']:,}/s for {r['hold']['seconds']} s; utime+stime from /proc ÷ readings delivered):", "",
               cpu_rows(r["hold"]), ""]
        fresh_steps = [s for s in r["steps"] if s["label"] == "freshness"]
        if fresh_steps:
            md += ["CPU per reading at the freshness steps (µs): " + "; ".join(
                f"{s['rate']:,.0f}/s: " + ", ".join(f"{p} {v:.1f}" for p, v in s["cpuUsPerReading"].items()) for s in fresh_steps), ""]
        md += ["Per-hop event age during the hold (`twinstream_event_age_seconds`: message's Kafka timestamp to its processing):", "", age_rows(r["hold"]), ""]
        for name, lines in r["hold"].get("profiles", {}).items():
            md += [f"`perf record` of the {name} during the hold (self time by symbol, ≥ 1.5 %):", "", "```", *lines, "```", ""]
        md += ["Peak RSS (VmHWM): " + ", ".join(f"{p} {v / 2**20:,.0f} MiB" for p, v in r["peakRSS"].items()), ""]
        a = r["accounting"]
        md += [f"Accounting: load sent {a['loadSent']:,}, probes {a['probesPosted']:,}; ingestor consumed {a['ingestorConsumedRaw']:,.0f} raw + "
               f"{a['ingestorHTTPReadings']:,.0f} over HTTP, produced {a['ingested']:,.0f}; validator {a['valid']:,.0f} valid; state-updater "
               f"{a['changes']:,.0f} changes (late {a['late']:,.0f}), {a['duplicates']:,.0f} duplicates; dead-lettered "
               + ", ".join(f"{k} {v:,.0f}" for k, v in a["deadLettered"].items())
               + f"; drift-monitor consumed {a['driftMonitorConsumedValid']:,.0f}. Final state: {a['fold']['twinsSeen']:,} twins read in "
               f"{a['fold']['pages']} pages, {a['fold']['mismatches']} differences from the reference fold"
               + (f" (e.g. {a['fold']['examples']})" if a["fold"]["mismatches"] else "") + ".", ""]
        if r.get("stuck"):
            md += [f"**Stuck:** {r['stuck']}; the configuration ended there.", ""]
        md += [f"Error log lines: {r['errorLogLines']}; exited early: {r['exitedEarly'] or 'none'}; probe errors: {r['probeErrors'] or 'none'}.", ""]
        md += [f"![{r['twins']} twins]({os.path.basename(base)}-{r['twins']}twins.svg)", ""]
    if baselines.get("rawToValid", {}).get("warning"):
        md += [f"**Warning, raw → valid alone:** {baselines['rawToValid']['warning']}.", ""]
    if baselines.get("rawToValid", {}).get("output"):
        md += ["## raw → valid alone (output)", "", "```", baselines["rawToValid"]["output"], "```", ""]
    if baselines.get("relay", {}).get("cpuUsPerReading"):
        md += ["Relay CPU per message (µs): " + ", ".join(f"{k} {v:.1f}" for k, v in baselines["relay"]["cpuUsPerReading"].items()), ""]
    with open(base + ".md", "w") as f:
        f.write("\n".join(md))
    for r in results:
        write_svg(f"{base}-{r['twins']}twins.svg", f"TwinStream end to end, {r['twins']:,} twins ({stamp})",
                  f"{info['nproc']} cores {info['cpu']}, commit {info['commit']}; shaded: offered rate per step", r)
    slim = {"machine": info, "baselines": {k: {kk: vv for kk, vv in v.items() if kk != "output"} for k, v in baselines.items()},
            "results": [{k: v for k, v in r.items() if k != "series"} for r in results]}
    with open(base + ".json", "w") as f:
        json.dump(slim, f, indent=1, default=str)
    log(f"# results: {base}.md, .json, " + ", ".join(f"{os.path.basename(base)}-{r['twins']}twins.svg" for r in results))
    print("\n".join(md))
    return base


# MARK: soak

def soak(args, info, stamp):
    rate = args.rate
    if rate is None:
        files = sorted(glob.glob(os.path.join(args.results, "e2e-*.json")))
        held = []
        if files:
            held = [r["sustained"] for r in json.load(open(files[-1]))["results"] if r.get("sustained") and r["twins"] == args.twins]
        if not held:
            raise SystemExit(f"soak: no --rate and no sustained rate for {args.twins} twins in {files[-1] if files else args.results}; run e2e.sh first or give --rate")
        rate = int(held[0] / 2)
        log(f"# soak rate: half of {held[0]:,}/s sustained in {os.path.basename(files[-1])}")
    log(f"# soak: {rate:,} readings/s over {args.twins:,} twins for {args.soak:.0f} s")
    body = lambda ctx: (run_step(ctx, rate, args.soak, "soak"), verify(ctx))
    (step, acct), seen, ctx = on_stack(args, "soak", args.twins, f"soak{args.twins}-", 0, body, sample_period=args.soak_sample)
    samples, probes = ctx["sampler"].samples, ctx["prober"].samples
    peaks, errors, exited = seen["peakRSS"], seen["errorLogLines"], seen["exitedEarly"]
    fresh, lags = seen["series"]["freshness"], seen["series"]["lag"]
    t_start, t_end = step["start"], step["end"]
    span = t_end - t_start
    in_window = lambda a, b: [s for s in samples if t_start + a * span <= s["t"] - ctx["t0"] <= t_start + b * span]
    rss_rows, problems = [], []
    # Bounded windows fill first (the mock keeps ~5 MiB per partition; the query view keeps up to
    # 100,000 events and 120 points per property): RSS is compared between 50-60 % and the last
    # 15 %, and the bounded stores' sizes are shown beside it, so a fill is told from a leak.
    for name in ["broker"] + SERVICES:
        early = [s["procs"][name][1] for s in in_window(0.5, 0.6) if name in s["procs"]]
        late = [s["procs"][name][1] for s in in_window(0.85, 1.0) if name in s["procs"]]
        e, l = (sum(early) / len(early) if early else 0), (sum(late) / len(late) if late else 0)
        grew = l > e * 1.2 and l - e > 32 * 2**20
        rss_rows.append([name, f"{e / 2**20:,.0f}", f"{l / 2**20:,.0f}", f"{peaks.get(name, 0) / 2**20:,.0f}", "**grew**" if grew else "flat"])
        if grew:
            problems.append(f"{name} RSS grew {e / 2**20:.0f} → {l / 2**20:.0f} MiB")
    f_early = freshness(probes, ctx["t0"] + t_start + 0.1 * span, ctx["t0"] + t_start + 0.4 * span)
    f_late = freshness(probes, ctx["t0"] + t_start + 0.7 * span, ctx["t0"] + t_end)
    if f_early["p99"] and f_late["p99"] and f_late["p99"] > 2 * f_early["p99"] + 100:
        problems.append(f"freshness p99 grew {f_early['p99']:.0f} → {f_late['p99']:.0f} ms")
    missed = seen["probesMissed"]
    if missed:
        problems.append(f"{missed} probes not visible within 10 s")
    if not step["sustained"]:
        problems.append("rate not sustained: " + (f"lag grew {step['lagGrowth']}" if step["lagGrowth"] else f"load skipped {step['skipped']}, failed {step['failed']}"))
    if any(errors.values()):
        problems.append(f"error log lines {errors}")
    if exited:
        problems.append(f"processes exited {exited}")
    if seen["probeErrors"]:
        problems.append(f"probe errors {seen['probeErrors'][:3]}")
    if not acct["allAccounted"]:
        problems.append("not every reading accounted for")
    if not acct["foldEqual"]:
        problems.append("final state differs from the reference fold")
    if sum(acct["deadLettered"].values()):
        problems.append(f"dead-letters {acct['deadLettered']}")
    os.makedirs(args.results, exist_ok=True)
    base = os.path.join(args.results, f"soak-{stamp}")
    md = [f"# Soak, {stamp}: {rate:,} readings/s over {args.twins:,} twins for {span / 60:.1f} min", "",
          f"Machine: {info['nproc']} cores ({info['cpu']}), {info['memoryMiB']:,} MiB; commit {info['commit']}; binaries {info['binDir']} "
          f"built {info['binariesBuilt']}; other load on the host during the run {step['otherCoresBusy']:.2f} cores.", "",
          f"**{'PASS' if not problems else 'FAIL'}**" + (": " + "; ".join(problems) if problems else ": RSS and freshness flat, no errors, every reading accounted for, final state equal to the reference fold."), "",
          table(rss_rows, ["process", "RSS at 50-60 % (MiB)", "RSS at 85-100 % (MiB)", "peak (MiB)", "trend"]), "",
          "Bounded stores of the query view at 50-60 % → at the end: " + ", ".join(
              f"{name} {view_size(in_window(0.5, 0.6), name):,.0f} → {view_size(in_window(0.85, 1.0), name):,.0f}"
              for name in ("twinstream_view_events", "twinstream_view_event_bytes", "twinstream_view_history_points", "twinstream_view_twins")) + ".", "",
          table([["first 10-40 %", f_early["n"], fmt(f_early["p50"]), fmt(f_early["p90"]), fmt(f_early["p99"]), fmt(f_early["max"])],
                 ["last 70-100 %", f_late["n"], fmt(f_late["p50"]), fmt(f_late["p90"]), fmt(f_late["p99"]), fmt(f_late["max"])]],
                ["post → visible", "probes", "p50 ms", "p90 ms", "p99 ms", "max ms"]), "",
          f"Delivered {step['deliveredRate']:,.0f} readings/s; max lag per stage {step['maxLag']}; dead-lettered {acct['deadLettered']}; "
          f"error log lines {errors}.", "", cpu_rows(step), "", f"![soak]({os.path.basename(base)}.svg)", ""]
    with open(base + ".md", "w") as f:
        f.write("\n".join(md))
    t0 = ctx["t0"]
    panels = [{"title": "RSS per process", "ylabel": "MiB",
               "series": [{"name": n, "points": [(s["t"] - t0, s["procs"][n][1] / 2**20) for s in samples if n in s["procs"]]} for n in ["broker"] + SERVICES]},
              {"title": "post → visible (× = not visible within 10 s)", "ylabel": "ms (log)", "log": True, "series": [{"name": "probe", "points": fresh, "style": "dots"}]},
              {"title": "consumer lag per stage", "ylabel": "messages", "series": [{"name": k, "points": v} for k, v in lags.items()]}]
    with open(base + ".svg", "w") as f:
        f.write(plot.render(f"TwinStream soak, {rate:,}/s over {args.twins:,} twins ({stamp})", panels, subtitle=f"commit {info['commit']}"))
    with open(base + ".json", "w") as f:
        json.dump({"machine": info, "rate": rate, "step": step, "accounting": acct, "peakRSS": peaks, "problems": problems}, f, indent=1, default=str)
    print("\n".join(md))
    log(f"# soak results: {base}.md, .svg, .json")
    return 1 if problems else 0


def view_size(samples, name):
    """Mean of a query-api gauge over samples."""
    values = [total(s["metrics"].get("query-api", {}), name) for s in samples]
    return sum(values) / len(values) if values else 0


def duration(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(s|m|h)?", text)
    if not m:
        raise argparse.ArgumentTypeError(f"a duration like 90s, 30m or 1h, not {text!r}")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bin", default=os.environ.get("TWINSTREAM_BIN_DIR"), help="directory of the release executables")
    p.add_argument("--quick", action="store_true", help="shorter steps and hold, fewer search steps, smaller baselines")
    p.add_argument("--rate", type=float, help="measure this rate only (with --twins, --seconds): no search")
    p.add_argument("--twins", type=int, help="twins of --rate or --soak (default 10000)")
    p.add_argument("--seconds", type=float, help="seconds of --rate (default 60)")
    p.add_argument("--soak", type=duration, help="soak for this long (30m) at --rate, else half the last sustained rate")
    p.add_argument("--soak-sample", type=float, default=5.0)
    # The platform's topics have 6 partitions; the services read as many as the broker lists, so
    # another count measures another layout (the mock keeps ~5 MiB per partition: more partitions
    # hold more before a lagging consumer loses messages).
    p.add_argument("--partitions", type=int, default=6, help="partitions per topic of the stack's broker (the platform's 6)")
    p.add_argument("--baseline-partitions", type=int, default=24, help="partitions of raw → valid alone and the relay (pipeline-throughput.sh's 24)")
    p.add_argument("--base-port", type=int, default=19080)
    p.add_argument("--probe-interval", type=float, default=0.2)
    # The load reports each twin every twins/rate seconds: below 10,000/s over 10,000 twins that is
    # slower than pump@1's 1 s interval, and with the platform's STALE_FACTOR (3) the drift monitor
    # raises and resolves a freshness alert around every reading (1.8 alerts and drift.state
    # documents per reading measured at 800/s), which the query view then follows: an alert storm
    # that costs more than the pipeline. 3 reproduces it.
    p.add_argument("--stale-factor", type=float, default=1000, help="STALE_FACTOR of the stack (platform default 3)")
    # The mock broker's work per fetch grows with the message sets a partition holds (it walks the
    # partition's log from its oldest set): with 10 ms ticks the load wrote sets of 4-5 readings
    # (~900 bytes), telemetry.raw.v1 held ~6,000 of them per partition, and walking them was most
    # of the broker's CPU (perf: 77 %). 50 ms ticks write sets of ~18 and halved the broker's CPU
    # per reading at 2,000/s (Benchmarks/e2e/cost.py); the probes, not the load, measure freshness.
    p.add_argument("--load-tick-ms", type=int, default=50, help="twinctl load's --tick-ms: one write per partition per tick")
    p.add_argument("--no-baselines", action="store_true", help="skip raw → valid alone and the relay ceiling")
    p.add_argument("--baseline-n", type=int, help="readings of raw → valid alone and the relay (default 200,000; --quick 100,000)")
    p.add_argument("--results", default=os.path.join(ROOT, "Benchmarks", "results"))
    p.add_argument("--keep-work", action="store_true")
    p.add_argument("--perf", action="store_true", help="perf record the state-updater and the query API during the hold; top symbols in the report")
    args = p.parse_args()

    def terminated(*_):
        raise KeyboardInterrupt  # the stacks' finally blocks stop every process they started
    signal.signal(signal.SIGTERM, terminated)
    if not args.bin:
        raise SystemExit("e2e: give the release executables' directory (--bin or TWINSTREAM_BIN_DIR)")
    args.bin = os.path.abspath(args.bin)
    args.models = os.path.join(ROOT, "Schemas", "models")
    args.step_seconds = 12 if args.quick else 20
    args.hold_seconds = 20 if args.quick else 60
    args.search_steps = 2 if args.quick else 4
    args.bisect_steps = 1 if args.quick else 2
    args.baseline_n = args.baseline_n or (100_000 if args.quick else 200_000)
    args.work = tempfile.mkdtemp(prefix="twinstream-e2e.")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M")
    info = machine(args.bin)
    status = 0
    try:
        if args.soak:
            args.twins = args.twins or 10_000
            return soak(args, info, stamp)
        results, baselines = [], {}
        if args.rate:
            args.hold_seconds = args.seconds or 60
            twins = args.twins or 10_000
            # One step at the given rate and its accounting, reported as a configuration.
            r = configuration_at(args, twins, args.rate)
            results.append(r)
        else:
            results.append(configuration(args, 10_000, [1000, 5000, 10000], 0, freshness_rates=(1000, 5000, 10000)))
            start = results[0]["holdRate"]
            results.append(configuration(args, 100, [start], 10))
        if not args.no_baselines:
            log("# baselines")
            baselines["rawToValid"] = raw_to_valid(args)
            baselines["relay"] = relay_ceiling(args)
        info["loadAverageAtEnd"] = os.getloadavg()[0]
        report(args, info, results, baselines, stamp)
        for r in results:
            if not (r["accounting"]["allAccounted"] and r["accounting"]["foldEqual"]) or r["exitedEarly"]:
                status = 1
        return status
    finally:
        if args.keep_work:
            log(f"# work directory kept: {args.work}")
        else:
            shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
