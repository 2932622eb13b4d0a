"""The local stack as processes for the end-to-end benchmark and the soak: `twinctl broker`, the
six services, `twinctl load`, and what is read from them (Prometheus metrics, /proc). Python's
standard library only; one keep-alive connection per service, so sampling costs little CPU on a
2-core machine whose cores the measured pipeline needs."""
import http.client
import json
import math
import os
import re
import signal
import subprocess
import threading
import time

SERVICES = ["query-api", "ingestor", "validator", "state-updater", "simulator-worker", "drift-monitor"]
# Consumers whose lag is a pipeline stage's (`twinstream_consumer_lag_messages{consumer}` of these
# services); a service's other consumers (followers of small topics) are shown beside them.
HZ = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def proc_ticks(pid):
    """CPU time (user + system) of a process in clock ticks, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except OSError:
        return None


def proc_memory(pid):
    """(VmRSS, VmHWM) of a process in bytes, (0, 0) when it is gone."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss, hwm


LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')


def parse_metrics(text):
    """Prometheus text → {(name, labels text): value}."""
    out = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        m = LINE.match(line)
        if m:
            try:
                out[(m.group(1), m.group(2) or "")] = float(m.group(3))
            except ValueError:
                pass
    return out


def total(metrics, name, contains=""):
    """Sum of the series of `name` whose labels contain `contains`."""
    return sum(v for (n, labels), v in metrics.items() if n == name and contains in labels)


def labelled(metrics, name, label):
    """{label value: value} of the series of `name`."""
    out = {}
    for (n, labels), v in metrics.items():
        if n == name:
            m = re.search(label + r'="([^"]*)"', labels)
            out[m.group(1) if m else ""] = out.get(m.group(1) if m else "", 0) + v
    return out


def histogram(metrics, name):
    """{le: cumulative count} plus sum and count of histogram `name` (all label sets summed)."""
    buckets, s, c = {}, 0.0, 0.0
    for (n, labels), v in metrics.items():
        if n == name + "_bucket":
            le = re.search(r'le="([^"]*)"', labels).group(1)
            buckets[float("inf") if le == "+Inf" else float(le)] = buckets.get(float("inf") if le == "+Inf" else float(le), 0) + v
        elif n == name + "_sum":
            s += v
        elif n == name + "_count":
            c += v
    return buckets, s, c


def histogram_quantile(q, before, after):
    """The q-quantile of what histogram `after` observed since `before` (bucket bounds, linear
    inside a bucket as Prometheus does), or None when nothing was observed."""
    b0, _, c0 = before
    b1, _, c1 = after
    n = c1 - c0
    if n <= 0:
        return None
    rank, prev_le, prev_count = q * n, 0.0, 0.0
    for le in sorted(b1):
        count = b1[le] - b0.get(le, 0)
        if count >= rank:
            if le == float("inf"):
                return prev_le
            inside = count - prev_count
            return prev_le + (le - prev_le) * ((rank - prev_count) / inside if inside > 0 else 1)
        prev_le, prev_count = le, count
    return prev_le


class Client:
    """A keep-alive HTTP connection to one local port, re-opened when it fails."""

    def __init__(self, port, timeout=15):
        self.port, self.timeout, self.conn = port, timeout, None

    def request(self, method, path, body=None, headers=None, timeout=None):
        for attempt in (0, 1):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout or self.timeout)
                elif timeout:
                    self.conn.timeout = timeout
                    if self.conn.sock:
                        self.conn.sock.settimeout(timeout)
                self.conn.request(method, path, body=body, headers=headers or {})
                r = self.conn.getresponse()
                return r.status, r.read()
            except (OSError, http.client.HTTPException):
                if self.conn:
                    self.conn.close()
                self.conn = None
                if attempt:
                    return None, b""
        return None, b""

    def metrics(self):
        status, body = self.request("GET", "/metrics")
        return parse_metrics(body.decode()) if status == 200 else {}


class Stack:
    """`twinctl broker` and the six services, started with what `twinctl up` gives them (mock
    broker timings, auto-created twins, the models) and no API keys (AUTH_DISABLED): the
    benchmark measures the pipeline, not key checks."""

    def __init__(self, bin_dir, models, work, base_port, partitions, log=print, extra_env=None, broker_args=()):
        self.bin, self.models, self.work, self.base, self.partitions, self.log = bin_dir, models, work, base_port, partitions, log
        self.extra_env = extra_env or {}
        self.broker_args = list(broker_args)
        self.pids = {}
        self.procs = {}
        self.ports = {name: base_port + i for i, name in enumerate(SERVICES)}
        self.clients = {name: Client(port) for name, port in self.ports.items()}
        self.bootstrap = None
        self.scrape_lock = threading.Lock()  # the sampler thread and the step loop share the connections

    def start(self, ready_timeout=120):
        os.makedirs(self.work, exist_ok=True)
        broker_out = open(os.path.join(self.work, "broker.out"), "w+")
        p = subprocess.Popen([os.path.join(self.bin, "twinctl"), "broker", "--partitions", str(self.partitions)] + self.broker_args,
                             stdout=broker_out, stderr=open(os.path.join(self.work, "broker.err"), "w"))
        self.procs["broker"], self.pids["broker"] = p, p.pid
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with open(broker_out.name) as f:
                printed = f.read()
            m = re.search(r"bootstrap\.servers=(\S+)", printed)
            if m:
                self.bootstrap = m.group(1)
                # The client settings `twinctl up` gives its services (EmbeddedBroker.clientProperties),
                # printed before the address; an older twinctl that prints none gets the old ones.
                self.client_env = dict(re.findall(r"^client (KAFKA_[A-Z0-9_]+)=(\S*)$", printed, re.M)) or {
                    "KAFKA_SESSION_TIMEOUT_MS": "3000", "KAFKA_HEARTBEAT_INTERVAL_MS": "500", "KAFKA_FETCH_WAIT_MAX_MS": "50"}
                break
            if p.poll() is not None:
                raise RuntimeError("twinctl broker exited: " + open(os.path.join(self.work, "broker.err")).read())
            time.sleep(0.05)
        if not self.bootstrap:
            raise RuntimeError("twinctl broker printed no address within 30 s")
        env = dict(os.environ)
        env.update({
            "KAFKA_BROKERS": self.bootstrap, "LOG_LEVEL": "warning", "MODELS_DIR": self.models,
            "AUTO_CREATE_TWINS": "true", "AUTH_DISABLED": "true", "DEFAULT_TENANT": "default",
            "MODEL_PREFIX_RULES": "pump-=pump,room-=room,battery-=battery",
        })
        env.update(self.client_env)
        env.update(self.extra_env)
        for name in SERVICES:
            e = dict(env, HTTP_PORT=str(self.ports[name]), STATE_DIR=os.path.join(self.work, "state", name))
            e["QUERY_API_URL"] = f"http://127.0.0.1:{self.ports['query-api']}"
            p = subprocess.Popen([os.path.join(self.bin, name)], env=e, stdout=open(os.path.join(self.work, name + ".log"), "w"),
                                 stderr=subprocess.STDOUT)
            self.procs[name], self.pids[name] = p, p.pid
        deadline = time.monotonic() + ready_timeout
        waiting = set(SERVICES)
        while waiting and time.monotonic() < deadline:
            for name in list(waiting):
                if self.procs[name].poll() is not None:
                    raise RuntimeError(f"{name} exited during start-up; see {self.work}/{name}.log")
                status, _ = self.clients[name].request("GET", "/readyz", timeout=2)
                if status == 200:
                    waiting.discard(name)
            time.sleep(0.2)
        if waiting:
            raise RuntimeError(f"not ready after {ready_timeout} s: {', '.join(sorted(waiting))} (logs in {self.work})")
        self.log(f"# stack up: broker {self.bootstrap} ({self.partitions} partitions per topic), services on ports {self.base}-{self.base + 5}")

    def exited(self):
        """Processes of the stack that are no longer running, with their exit status."""
        return {name: p.returncode for name, p in self.procs.items() if p.poll() is not None}

    def stop(self):
        """SIGTERM to every service (they commit and leave their groups through the broker), then
        the broker once they are gone."""
        for name in reversed(SERVICES):
            p = self.procs.get(name)
            if p and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name in SERVICES + ["broker"]:
            p = self.procs.get(name)
            if not p:
                continue
            if name == "broker" and p.poll() is None:
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def error_lines(self):
        """Log lines at level error (or worse) per service."""
        out = {}
        for name in SERVICES:
            n = 0
            try:
                with open(os.path.join(self.work, name + ".log"), errors="replace") as f:
                    for line in f:
                        if '"level":"error"' in line or '"level":"critical"' in line or '"level":"fault"' in line:
                            n += 1
            except OSError:
                pass
            out[name] = n
        return out

    def scrape(self):
        """One sample: every service's metrics, every process's CPU ticks and memory."""
        with self.scrape_lock:
            now = time.monotonic()
            metrics = {name: self.clients[name].metrics() for name in SERVICES}
        procs = {name: (proc_ticks(pid),) + proc_memory(pid) for name, pid in self.pids.items()}
        return {"t": now, "metrics": metrics, "procs": procs}


class Load:
    """`twinctl load` in the background: its progress and final summary lines."""

    def __init__(self, bin_dir, bootstrap, rate, twins, seconds, prefix, extra=None):
        args = [os.path.join(bin_dir, "twinctl"), "load", "--brokers", bootstrap, "--rate", str(rate), "--twins", str(twins),
                "--seconds", str(seconds), "--prefix", prefix] + (extra or [])
        self.rate, self.twins, self.seconds, self.prefix = rate, twins, seconds, prefix
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.pid = self.proc.pid
        self.progress, self.summary, self.started = [], None, time.monotonic()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("progress "):
                fields = dict(kv.split("=") for kv in line.split()[1:])
                self.progress.append((time.monotonic(), {k: float(v) for k, v in fields.items()}))
            elif line.startswith("summary "):
                self.summary = json.loads(line[len("summary "):])

    def stop(self):
        """Ends the load early (SIGTERM): it still prints its summary."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def delivered(self):
        return int(self.progress[-1][1]["delivered"]) if self.progress else 0

    def wait(self):
        self.proc.wait()
        self.reader.join(timeout=10)
        if self.proc.returncode != 0 or self.summary is None:
            raise RuntimeError(f"twinctl load failed ({self.proc.returncode}): {self.proc.stderr.read()[-2000:]}")
        return self.summary


class Prober(threading.Thread):
    """Freshness as a user sees it: a reading POSTed to the ingestor's HTTP API for a probe twin the
    load never touches, then `GET /v1/twins/{id}?minVersion=v&wait=W` on the query API; the time
    from the POST to the answer that shows version v. One probe at a time, `interval` apart."""

    def __init__(self, stack, twins=10, interval=0.2, wait_ms=10000, prefix="probe-"):
        super().__init__(daemon=True)
        self.stack, self.interval, self.wait_ms = stack, interval, wait_ms
        self.ids = [f"{prefix}{i:03d}" for i in range(twins)]
        self.versions = {}
        self.samples = []  # (monotonic time of the POST, seconds to visible or None when not visible in time)
        self.posted = 0
        self.errors = []
        self.stop_flag = threading.Event()
        self.running = threading.Event()  # cleared: paused (between probes)
        self.running.set()
        self.idle = threading.Lock()  # held while a probe is in flight
        self.ingest = Client(stack.ports["ingestor"], timeout=30)
        self.query = Client(stack.ports["query-api"], timeout=wait_ms / 1000 + 10)

    def probe(self, i):
        twin = self.ids[i % len(self.ids)]
        body = json.dumps([{"twinId": twin, "model": "pump@1", "ts": int(time.time() * 1000),
                            "values": {"temperature": 20 + (i % 50), "flow": 10.0, "pressure": 2.0, "rpm": 1000}}]).encode()
        t0 = time.monotonic()
        status, answer = self.ingest.request("POST", "/v1/telemetry", body, {"Content-Type": "application/json"})
        if status != 202:
            self.errors.append(f"POST {twin}: {status} {answer[:200]!r}")
            return
        self.posted += 1
        v = self.versions.get(twin, 0) + 1
        self.versions[twin] = v
        status, answer = self.query.request("GET", f"/v1/twins/{twin}?minVersion={v}&wait={self.wait_ms}")
        t1 = time.monotonic()
        seen = 0
        if status != 200 and len(self.errors) < 20:
            self.errors.append(f"GET {twin}?minVersion={v}: {status} {answer[:200]!r}")
        if status == 200:
            try:
                seen = json.loads(answer).get("version", 0)
            except ValueError:
                pass
        self.samples.append((t0, t1 - t0 if seen >= v else None))

    def run(self):
        i = 0
        while not self.stop_flag.is_set():
            start = time.monotonic()
            if not self.running.wait(timeout=0.5):
                continue
            with self.idle:
                self.probe(i)
            i += 1
            self.stop_flag.wait(max(0.0, self.interval - (time.monotonic() - start)))

    def pause(self):
        """Returns once no probe is in flight and none will start until `resume`."""
        self.running.clear()
        with self.idle:
            pass

    def resume(self):
        self.running.set()

    def stop(self):
        self.stop_flag.set()
        self.join(timeout=self.wait_ms / 1000 + 20)


def percentile(values, q):
    """The q-quantile (nearest rank) of a list, None when empty."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def freshness(samples, since=None, until=None):
    """p50/p90/p99/max in milliseconds of probe samples in [since, until), and how many were not
    visible within the wait."""
    chosen = [d for t, d in samples if (since is None or t >= since) and (until is None or t < until)]
    seen = [d * 1000 for d in chosen if d is not None]
    return {"n": len(chosen), "missed": len(chosen) - len(seen), "p50": percentile(seen, 0.5), "p90": percentile(seen, 0.9),
            "p99": percentile(seen, 0.99), "max": max(seen) if seen else None}
