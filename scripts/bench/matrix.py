#!/usr/bin/env python3
"""The benchmark matrix (run through scripts/bench-matrix.sh, which installs and builds
first). Every measured system, every broker, the load generator (wrk) and the simulators are
separate processes started here; this script only starts them, reads /proc and counters
before and after each window, and writes the tables.

Invariants:
- a window's numbers come from outside the measured process: wrk's own summary for
  requests and latency, /proc/<pid>/stat for CPU, ProducerPerformance's summary for the
  ceiling, the CMS simulator's write counter for worker drain, its write log against the
  open-loop sender's per-event due times for end-to-end latency (e2e);
- runs are interleaved in a seeded shuffled order (the seed is printed and recorded), so a
  slow phase of the machine spreads over every system instead of favouring one;
- every raw window is one line of .run/bench/runs.tsv, and each scenario appends one
  markdown table (min / median / max per metric) with its exact command and every
  non-default setting to .run/bench/results.md.

Standard library only (the system python3); the e2e sender it starts runs in the bench venv.
"""

import json
import math
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / ".run" / "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SCENARIOS = ["ceiling", "ingress-1node", "ingress-3node", "worker", "e2e"]
SYSTEMS = ["relay", "floor", "benthos", "python"]
SECRET = "bench-secret-0123456789"
PARTITIONS = 6


def env_int(name, default):
    return int(os.environ.get(name, default))


RUNS = env_int("RUNS", 5)
WINDOW = env_int("WINDOW", 30)
CONNS = [int(c) for c in os.environ.get("CONNS", "64 256 1024").split()]
THREADS = env_int("WRK_THREADS", 2)
WARMUP = env_int("WARMUP", 5)
SEED = env_int("SEED", random.SystemRandom().randrange(1, 2**31))
BODY_BYTES = env_int("BODY_BYTES", 1024)
# Requests each wrk thread pre-formats and sends in turn (the Lua's BENCH_POOL), set here so
# the table states what was sent.
WRK_POOL = env_int("WRK_POOL", 20000)
PY_WORKERS = env_int("PY_WORKERS", 1)
PAUSE = float(os.environ.get("PAUSE", "2"))
RELAY = ROOT / "target" / "release" / "genesys-relay"
SIM = ROOT / "target" / "release" / "genesys-sim"
FLOOR = ROOT / "target" / "release" / "examples" / "bench_floor"
PEER = OUT / "peer"
WORKER_PEER = ROOT / "benches" / "python" / "worker_peer.py"
LUA = ROOT / "benches" / "wrk" / "genesys-event.lua"
VENV = Path(os.environ.get("BENCH_VENV", Path.home() / ".cache/genesys-relay/bench-venv"))
LOGS = OUT / "logs"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def kafka_libs():
    return subprocess.check_output(["bash", str(ROOT / "scripts/kafka-env.sh"), "libs"], text=True).strip()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode} before listening (logs in {LOGS})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{what} did not listen on {port} within {timeout} s")


def http_get(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


def http_post_json(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, r.read()


# --- processes and CPU ---------------------------------------------------------------

class Proc:
    """A child process with its log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name, argv, env=None, cwd=None):
        LOGS.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = LOGS / f"{name}.log"
        self.log = open(self.log_path, "ab")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.p = subprocess.Popen(argv, env=full_env, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        self.pid = self.p.pid

    def poll(self):
        return self.p.poll()

    def stop(self, grace=15):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()
        # A process's own children (uvicorn workers) go with it.
        try:
            os.killpg(self.p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.log.close()


def tree(pid):
    """pid and every descendant (uvicorn workers are children of its supervisor)."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_seconds(pids):
    """utime + stime (fields 14 and 15 of /proc/<pid>/stat) of the processes, in seconds."""
    total = 0
    for pid in pids:
        for p in tree(pid):
            try:
                fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


# --- Kafka -----------------------------------------------------------------------------

class Cluster:
    """One KRaft node, or three (replication 3, min.insync.replicas 2 for the bench topics),
    each its own JVM started through scripts/kafka-broker.sh."""

    def __init__(self, nodes):
        self.nodes = nodes
        self.dir = OUT / f"kafka-{nodes}node"
        shutil.rmtree(self.dir, ignore_errors=True)
        self.ports = [free_port() for _ in range(nodes)]
        cports = [free_port() for _ in range(nodes)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, c in enumerate(cports))
        cluster_id = "benchmatrix" + ("%011d" % random.randrange(10**10))
        self.procs = []
        for i in range(nodes):
            argv = ["bash", str(ROOT / "scripts/kafka-broker.sh"), "--dir", str(self.dir / f"n{i + 1}"),
                    "--port", str(self.ports[i]), "--controller-port", str(cports[i]),
                    "--node-id", str(i + 1), "--voters", voters, "--cluster-id", cluster_id,
                    "--heap", os.environ.get("BROKER_HEAP", "1g")]
            # Disk stays bounded over a long matrix: at most RETENTION_MB (+ one 32 MiB
            # segment) per partition; a pre-filled worker topic stays far below that.
            for kv in (f"log.retention.bytes={env_int('RETENTION_MB', 128) * 1024 * 1024}",
                       "log.segment.bytes=33554432", "log.retention.check.interval.ms=10000"):
                argv += ["--set", kv]
            self.procs.append(Proc(f"broker-{nodes}node-{i + 1}", argv))
        self.bootstrap = ",".join(f"127.0.0.1:{p}" for p in self.ports)
        for port, proc in zip(self.ports, self.procs):
            wait_port(port, proc, f"broker on {port}", timeout=120)
        # Listening is not serving: wait until a topic can be created with every replica.
        self.create_topic(f"bench-probe-{random.randrange(10**6)}", retries=30)
        log(f"{nodes}-node cluster up at {self.bootstrap}")

    @property
    def rf(self):
        return 3 if self.nodes >= 3 else 1

    def topic_configs(self):
        return {"min.insync.replicas": "2"} if self.nodes >= 3 else {}

    def create_topic(self, name, retries=3):
        argv = ["java", "-Xmx256m", "-cp", f"{kafka_libs()}/*", "org.apache.kafka.tools.TopicCommand",
                "--bootstrap-server", self.bootstrap, "--create", "--if-not-exists", "--topic", name,
                "--partitions", str(PARTITIONS), "--replication-factor", str(self.rf)]
        for k, v in self.topic_configs().items():
            argv += ["--config", f"{k}={v}"]
        for attempt in range(retries):
            r = subprocess.run(argv, capture_output=True, text=True)
            if r.returncode == 0:
                return
            time.sleep(2)
        raise SystemExit(f"cannot create topic {name}: {r.stdout}{r.stderr}")

    def pids(self):
        return [p.pid for p in self.procs]

    def stop(self):
        for p in self.procs:
            p.stop(grace=30)
        # The data goes (it can be gigabytes); the brokers' logs stay for a post-mortem.
        for i in range(self.nodes):
            shutil.rmtree(self.dir / f"n{i + 1}" / "data", ignore_errors=True)


# --- records ---------------------------------------------------------------------------

TSV_COLS = ["time", "seed", "scenario", "topology", "system", "conns", "run", "window_s", "ok",
            "non2xx", "socket_errors", "events_per_s", "p50_ms", "p99_ms", "cpu_us_per_event",
            "broker_cpu_us_per_event", "extra"]


def shuffled_runs(cells, seed):
    """RUNS blocks of (cell, run), every block holding each cell once in an order drawn from a
    generator seeded with `seed`: the runs interleave the cells, so a slow phase of the machine
    spreads over all of them."""
    rng = random.Random(seed)
    order = []
    for run in range(1, RUNS + 1):
        block = [(c, run) for c in cells]
        rng.shuffle(block)
        order += block
    return order


def record(row):
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "runs.tsv"
    new = not path.exists()
    with open(path, "a") as f:
        if new:
            f.write("\t".join(TSV_COLS) + "\n")
        row = dict(row, time=time.strftime("%Y-%m-%dT%H:%M:%S"), seed=SEED)
        f.write("\t".join(fmt_cell(row.get(c, "")) for c in TSV_COLS) + "\n")


def fmt_cell(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def fmt_num(v):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def mmm(values, fmt=None):
    """min / median / max of the values present, each written with `fmt` (default fmt_num)."""
    fmt = fmt or fmt_num
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    return f"{fmt(min(vals))} / {fmt(statistics.median(vals))} / {fmt(max(vals))}"


def write_table(title, command, settings, header, rows, notes=()):
    OUT.mkdir(parents=True, exist_ok=True)
    lines = [f"## {title}", "", f"{time.strftime('%Y-%m-%d %H:%M')} UTC; seed {SEED}; runs {RUNS}; "
             f"window {WINDOW} s; machine: {machine()}", "", "Command:", "", "```", command, "```", ""]
    if settings:
        lines += ["Non-default settings:", ""] + [f"- {s}" for s in settings] + [""]
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i < 2 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += [""] + list(notes) + ([""] if notes else [])
    text = "\n".join(lines) + "\n"
    with open(OUT / "results.md", "a") as f:
        f.write(text)
    print(text, flush=True)


def machine():
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0]
    return f"{os.cpu_count()} CPUs ({model}), load average {load:.2f} at the table"


COMMAND = "RUNS={runs} WINDOW={window} CONNS=\"{conns}\" SEED={seed} scripts/bench-matrix.sh {scenario}"


def command_line(scenario):
    return COMMAND.format(runs=RUNS, window=WINDOW, conns=" ".join(map(str, CONNS)), seed=SEED,
                          scenario=scenario)


# --- wrk -------------------------------------------------------------------------------

def wrk(url, conns, seconds, tag, event="attributes", unique=False):
    """One wrk window; the parsed BENCH line of the Lua done(). `unique`: no event id
    repeats (the Lua formats new pools as it goes); otherwise each thread sends its
    pre-formatted pool in turn, which only the worker's pre-fill must avoid."""
    argv = ["wrk", "-t", str(min(THREADS, conns)), "-c", str(conns), "-d", f"{seconds}s", "--latency",
            "--timeout", "10s", "-s", str(LUA), url]
    env = dict(os.environ, BENCH_TAG=tag, BENCH_SECRET=SECRET, BENCH_EVENT=event,
               BENCH_BODY_BYTES=str(BODY_BYTES), BENCH_UNIQUE="1" if unique else "0")
    if not unique:
        env["BENCH_POOL"] = str(WRK_POOL)
    r = subprocess.run(argv, env=env, capture_output=True, text=True)
    m = [l for l in r.stdout.splitlines() if l.startswith("BENCH ")]
    if r.returncode != 0 or not m:
        raise SystemExit(f"wrk failed ({r.returncode}): {r.stdout}{r.stderr}")
    vals = dict(kv.split("=") for kv in m[-1].split()[1:])
    vals = {k: int(v) for k, v in vals.items()}
    # wrk counts a response with status > 399 as a status error; none of the servers here
    # answers 1xx or 3xx, so requests - status errors are the 2xx answers.
    vals["ok"] = vals["requests"] - vals["status_errors"]
    vals["socket_errors"] = vals["connect"] + vals["read"] + vals["write"] + vals["timeout"]
    return vals


# --- systems under test ----------------------------------------------------------------

def probe(server):
    """One request before any window: the server must answer 202 to what wrk will send (an
    authentication or topic mistake would otherwise only show as a column of errors)."""
    conv = f"probe-{random.randrange(10**12)}"
    topic = f"v2.detail.events.conversation.{conv}.attributes"
    body = {"version": "0", "id": f"eb-{conv}", "detail-type": "v2.detail.events.conversation.{id}.attributes",
            "source": "aws.partner/genesys.com/cloud/bench-org/bench", "time": "2026-11-25T08:30:00Z",
            "detail": {"topicName": topic, "version": "2",
                       "eventBody": {"eventTime": int(time.time() * 1000), "conversationId": conv,
                                     "participantId": f"p-{conv}", "attributes": {"last_page": "/"}}}}
    req = urllib.request.Request(server.url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "X-Relay-Secret": SECRET})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    if status != 202:
        raise SystemExit(f"{server.name} answered {status} to the probe request, not 202 (see {server.proc.log_path})")

class Server:
    def __init__(self, name, proc, port, settings):
        self.name, self.proc, self.port, self.settings = name, proc, port, settings
        self.url = f"http://127.0.0.1:{port}/webhooks/genesys"


def start_relay_ingress(cluster, prefix, name="relay"):
    port, admin = free_port(), free_port()
    settings = {
        "RELAY_KAFKA_BROKERS": cluster.bootstrap,
        "RELAY_TOPIC_PREFIX": prefix,
        "RELAY_HTTP_ADDR": f"127.0.0.1:{port}",
        "RELAY_ADMIN_ADDR": f"127.0.0.1:{admin}",
        "RELAY_WEBHOOK_SECRET": SECRET,
        "RELAY_INGRESS_MAX_CONNECTIONS": str(max(CONNS) + 64),
        "RELAY_TOPIC_REPLICATION": str(cluster.rf),
        "RELAY_LOG": "warn",
    }
    if cluster.nodes >= 3:
        settings["RELAY_TOPIC_MIN_INSYNC_REPLICAS"] = "2"
    proc = Proc(f"{name}-{prefix}", [str(RELAY), "ingress"], env=settings)
    wait_ready(admin, proc, "relay ingress")
    wait_port(port, proc, "relay ingress")
    shown = {k: v for k, v in settings.items() if k not in ("RELAY_KAFKA_BROKERS", "RELAY_HTTP_ADDR", "RELAY_ADMIN_ADDR")}
    shown["RELAY_WEBHOOK_SECRET"] = "(a 23-character secret, sent by wrk as X-Relay-Secret)"
    return Server("relay", proc, port, shown)


def wait_ready(admin, proc, what, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited ({proc.poll()}); see {proc.log_path}")
        try:
            if http_get(f"http://127.0.0.1:{admin}/readyz", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{what} not ready within {timeout} s; see {proc.log_path}")


def start_floor():
    port = free_port()
    proc = Proc("floor", [str(FLOOR), f"127.0.0.1:{port}"])
    wait_port(port, proc, "floor")
    return Server("floor", proc, port, {})


def start_benthos(cluster, topic):
    port = free_port()
    cfg = OUT / f"peer-{topic}.yaml"
    # The peer keys records by conversation id like the relay; sync_response after the Kafka
    # output (fan_out_sequential) makes the answer 202 and sends it only once Kafka
    # acknowledged. max_in_flight is the largest connection count, so the output never
    # caps what the connections offer.
    cfg.write_text(f"""http:
  enabled: false
logger:
  level: WARN
input:
  http_server:
    address: 127.0.0.1:{port}
    path: /webhooks/genesys
    allowed_verbs: [POST]
    sync_response:
      status: "202"
pipeline:
  threads: -1
  processors:
    - mutation: 'meta kafka_key = this.detail.eventBody.conversationId.or("")'
output:
  broker:
    pattern: fan_out_sequential
    outputs:
      - kafka_peer:
          seed_brokers: [ {", ".join(json.dumps(b) for b in cluster.bootstrap.split(","))} ]
          topic: "{topic}"
          timeout: 5s
          max_in_flight: {max(CONNS)}
      - sync_response: {{}}
""")
    proc = Proc(f"benthos-{topic}", [str(PEER), "-c", str(cfg)])
    wait_port(port, proc, "Benthos peer")
    return Server("benthos", proc, port, {"config": str(cfg.relative_to(ROOT)), "max_in_flight": max(CONNS)})


def start_python(cluster, topic):
    port = free_port()
    argv = [str(VENV / "bin" / "uvicorn"), "receiver:app", "--app-dir", str(ROOT / "benches/python"),
            "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--http", "httptools",
            "--no-access-log", "--log-level", "warning", "--backlog", "4096"]
    if PY_WORKERS > 1:
        argv += ["--workers", str(PY_WORKERS)]
    proc = Proc(f"python-{topic}", argv, env={"BENCH_BROKERS": cluster.bootstrap, "BENCH_TOPIC": topic})
    wait_port(port, proc, "Python receiver")
    return Server("python", proc, port, {"uvicorn workers": PY_WORKERS, "uvicorn": " ".join(argv[1:])})


# --- scenarios -------------------------------------------------------------------------

def ceiling(topologies):
    rows, raw = [], {}
    for nodes in topologies:
        cluster = Cluster(nodes)
        try:
            topic = f"bench-ceiling-{nodes}"
            cluster.create_topic(topic)
            # A warm-up run (500,000 records, so the JVM and the broker are warm) sizes the
            # windows: each measured run sends what the fastest rate seen so far moves in
            # WINDOW seconds, 1.3x.
            rate = perf_run(cluster, topic, 500_000 if WINDOW >= 10 else 10_000, warm=True)["events_per_s"]
            results = []
            for run in range(1, RUNS + 1):
                # Sized from the fastest rate seen, with a margin: a run sized from a slower
                # one finished in 11 s when the broker sped up (windows must be >= WINDOW s).
                n = int(max(rate, 1000) * WINDOW * 1.3)
                r = perf_run(cluster, topic, n)
                r.update(scenario="ceiling", topology=f"{nodes}node", system="ProducerPerformance",
                         conns="-", run=run)
                record(r)
                log(f"ceiling {nodes}-node run {run}: {r['events_per_s']:.0f} records/s over {r['window_s']:.1f} s")
                results.append(r)
                rate = max([rate] + [x["events_per_s"] for x in results])
                time.sleep(PAUSE)
            raw[nodes] = results
        finally:
            cluster.stop()
    for nodes, results in raw.items():
        rows.append([f"{nodes} node" + ("s, rf 3, min.insync 2" if nodes >= 3 else ""),
                     mmm([r["window_s"] for r in results]),
                     mmm([r["events_per_s"] for r in results]), mmm([r["p50_ms"] for r in results]),
                     mmm([r["p99_ms"] for r in results]), mmm([r["cpu_us_per_event"] for r in results]),
                     mmm([r["broker_cpu_us_per_event"] for r in results])])
    write_table(
        "Kafka producer ceiling (ProducerPerformance, acks=all, unbounded)", command_line("ceiling"),
        [f"record size {BODY_BYTES} bytes (the wrk body size), keys random in [0, 1000000), "
         f"{PARTITIONS} partitions", "producer-props acks=all (everything else the Kafka 4.4.0 client default)",
         "--throughput -1; the first 10 % of each run's records are warm-up (--warmup-records), "
         "the figures are the steady-state summary; the wall time includes the client JVM's start"],
        ["topology", "run wall time (s)", "records/s", "p50 (ms)", "p99 (ms)", "producer CPU µs/record",
         "broker CPU µs/record"], rows)


def perf_run(cluster, topic, n, warm=False):
    argv = ["java", "-Xmx1g", "-cp", f"{kafka_libs()}/*", "org.apache.kafka.tools.ProducerPerformance",
            "--bootstrap-server", cluster.bootstrap, "--topic", topic, "--num-records", str(n),
            "--record-size", str(BODY_BYTES), "--throughput", "-1", "--key-distribution", "random",
            "--record-key-range", "1000000", "--random-seed", str(random.randrange(1, 10**9)),
            "--warmup-records", str(n // 10), "--producer-props", "acks=all"]
    bcpu0 = cpu_seconds(cluster.pids())
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = p.communicate()
    t1 = time.time()
    # The client JVM has exited: its CPU is what the kernel charged to our waited child.
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    bcpu1 = cpu_seconds(cluster.pids())
    if p.returncode != 0:
        raise SystemExit(f"ProducerPerformance failed: {out}")
    # The summaries: "N records sent, ..." over every record, then "N steady state records
    # sent, ..." over the records after the warm-up ones; the steady-state one is used.
    pat = re.compile(r"(\d+)( steady state)? records sent, ([\d.]+) records/sec .*?, ([\d.]+) ms avg latency, "
                     r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th")
    found = [f for f in pat.findall(out) if f[1]] or pat.findall(out)
    if not found:
        raise SystemExit(f"no summary in ProducerPerformance output: {out}")
    sent, _steady, rps, _avg, _max, p50, _p95, p99 = found[-1]
    client_cpu = (ru.ru_utime + ru.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    if warm:
        return {"events_per_s": float(rps)}
    return {"window_s": t1 - t0, "ok": n, "non2xx": 0, "socket_errors": 0, "events_per_s": float(rps),
            "p50_ms": float(p50), "p99_ms": float(p99), "cpu_us_per_event": client_cpu / n * 1e6,
            "broker_cpu_us_per_event": (bcpu1 - bcpu0) / n * 1e6, "extra": f"steady_records={sent}"}


def ingress(nodes):
    scenario = f"ingress-{nodes}node"
    cluster = Cluster(nodes)
    servers = {}
    tag_base = f"{int(time.time())}"
    try:
        topics = {s: f"bench-{s}-{nodes}n-{tag_base}" for s in ("benthos", "python")}
        for t in topics.values():
            cluster.create_topic(t)
        # The relay creates its own topics at start-up (RELAY_CREATE_TOPICS default), before
        # any window: the same partitions and replication as the peers' topics.
        servers["relay"] = start_relay_ingress(cluster, f"bench-relay-{nodes}n-{tag_base}")
        servers["floor"] = start_floor()
        servers["benthos"] = start_benthos(cluster, topics["benthos"])
        servers["python"] = start_python(cluster, topics["python"])
        for name, s in servers.items():
            probe(s)
            if WARMUP > 0:
                wrk(s.url, min(CONNS), WARMUP, f"warm-{name}-{tag_base}")
        combos = [(s, c, run) for run in range(1, RUNS + 1) for s in SYSTEMS for c in CONNS]
        order = [(s, c, run) for ((s, c), run) in shuffled_runs([(s, c) for s in SYSTEMS for c in CONNS], SEED)]
        assert sorted(order) == sorted(combos)
        log(f"{scenario}: {len(order)} windows of {WINDOW} s, order seeded with {SEED}")
        results = {}
        for i, (name, conns, run) in enumerate(order, 1):
            s = servers[name]
            if s.proc.poll() is not None:
                raise SystemExit(f"{name} died (see {s.proc.log_path})")
            cpu0, bcpu0 = cpu_seconds([s.proc.pid]), cpu_seconds(cluster.pids())
            w = wrk(s.url, conns, WINDOW, f"{name}-{nodes}n-{run}-{conns}-{tag_base}")
            cpu1, bcpu1 = cpu_seconds([s.proc.pid]), cpu_seconds(cluster.pids())
            secs = w["duration_us"] / 1e6
            ok = w["ok"]
            r = {"scenario": scenario, "topology": f"{nodes}node", "system": name, "conns": conns, "run": run,
                 "window_s": secs, "ok": ok, "non2xx": w["status_errors"], "socket_errors": w["socket_errors"],
                 "events_per_s": ok / secs, "p50_ms": w["p50_us"] / 1e3, "p99_ms": w["p99_us"] / 1e3,
                 "cpu_us_per_event": (cpu1 - cpu0) / ok * 1e6 if ok else None,
                 "broker_cpu_us_per_event": (bcpu1 - bcpu0) / ok * 1e6 if ok and name != "floor" else None,
                 "extra": f"body_bytes={w['body_bytes']}"}
            record(r)
            results.setdefault((name, conns), []).append(r)
            log(f"[{i}/{len(order)}] {name} c={conns} run {run}: {r['events_per_s']:.0f} ev/s, p99 "
                f"{r['p99_ms']:.1f} ms, {fmt_num(r['cpu_us_per_event'])} µs/ev, non-2xx {r['non2xx']}, "
                f"socket errors {r['socket_errors']}")
            time.sleep(PAUSE)
        rows = []
        for name in SYSTEMS:
            for conns in CONNS:
                rs = results[(name, conns)]
                rows.append([name, str(conns), mmm([r["events_per_s"] for r in rs]),
                             mmm([r["p50_ms"] for r in rs]), mmm([r["p99_ms"] for r in rs]),
                             mmm([r["cpu_us_per_event"] for r in rs]),
                             mmm([r["broker_cpu_us_per_event"] for r in rs]),
                             str(sum(r["non2xx"] for r in rs)), str(sum(r["socket_errors"] for r in rs))])
        settings = [f"relay (`target/release/genesys-relay ingress`): " +
                    ", ".join(f"`{k}={v}`" for k, v in servers["relay"].settings.items())]
        settings.append(f"floor: `target/release/examples/bench_floor` (warp, 202 after reading the body)")
        settings.append(f"benthos: `{PEER.relative_to(ROOT)} -c {servers['benthos'].settings['config']}` "
                        f"(franz-go, acks=all, idempotent, linger 2 ms, max_in_flight {max(CONNS)})")
        settings.append(f"python: `uvicorn {servers['python'].settings['uvicorn']}` (confluent-kafka "
                        f"acks=all, idempotent, lz4, linger 2 ms)")
        settings.append(f"topics: {PARTITIONS} partitions, replication {cluster.rf}"
                        + (", min.insync.replicas 2" if nodes >= 3 else ""))
        settings.append(f"wrk: `-t {THREADS} -c <conns> -d {WINDOW}s --latency --timeout 10s -s "
                        f"benches/wrk/genesys-event.lua`, EventBridge attributes event of {BODY_BYTES} bytes, "
                        f"each wrk thread sends a pool of {WRK_POOL:,} pre-formatted requests (each its own conversation) in turn; "
                        f"warm-up {WARMUP} s per system before the first window")
        write_table(
            f"Ingress, {nodes} node" + ("s (replication 3, min.insync.replicas 2)" if nodes >= 3 else ""),
            command_line(scenario), settings,
            ["system", "conns", "events/s (2xx)", "p50 (ms)", "p99 (ms)", "server CPU µs/event",
             "broker CPU µs/event" + (" (3 JVMs)" if nodes >= 3 else ""), "non-2xx", "socket errors"],
            rows, notes=["Each cell: min / median / max over the runs. events/s counts 2xx answers only; "
                         "latency is wrk's (closed loop, every request); CPU is utime+stime of the server "
                         "process tree (and of the broker JVMs) between just before and just after the "
                         "window, divided by the 2xx answers."])
    finally:
        for s in servers.values():
            s.proc.stop()
        cluster.stop()


# --- worker ----------------------------------------------------------------------------

# customer.start events carry no attributes; routed to guest_sync (their default route is
# conversation_enrich, which writes nothing to the CMS) with every guest in scope, each costs
# exactly one conversation GET before its CMS write.
GET_ROUTE = {"RELAY_ROUTES": "v2.detail.events.conversation.{id}.customer.start=guest_sync",
             "RELAY_GUEST_SYNC_SCOPE": "all"}

WORKER_VARIANTS = {
    # name: (event kind, worker processes, extra settings, prefill events, program)
    "attributes-1w": ("attributes", 1, {"RELAY_MAX_IN_FLIGHT": "256"}, "big", "relay"),
    "get-default-budget": ("start", 1, dict(GET_ROUTE), "small", "relay"),
    "get-raised-budget": ("start", 1, dict(GET_ROUTE, RELAY_GENESYS_RATE_LIMIT="1000000"), "big", "relay"),
    "attributes-2w": ("attributes", 2, {"RELAY_MAX_IN_FLIGHT": "256"}, "big", "relay"),
    # The worker-side peer (benches/python/worker_peer.py) on the attributes-1w workload: it reads
    # the same RELAY_* settings, so it gets the same environment.
    "peer-python": ("attributes", 1, {"RELAY_MAX_IN_FLIGHT": "256"}, "big", "peer"),
}
# WORKER_VARIANTS="a b" runs a subset (default: all, in the order above).
WORKER_WANTED = os.environ.get("WORKER_VARIANTS", "").split() or list(WORKER_VARIANTS)


def worker_argv(program, metrics_port):
    """The measured worker process: the relay, or the Python peer (the bench venv's
    interpreter, serving its counters on `metrics_port` as the relay serves /metrics on
    its admin address)."""
    if program == "peer":
        return [str(VENV / "bin" / "python"), str(WORKER_PEER), "--metrics-port", str(metrics_port)]
    return [str(RELAY), "worker"]


class Sims:
    def __init__(self, latency_ms):
        self.gport, self.cport = free_port(), free_port()
        self.proc = Proc("genesys-sim", [str(SIM), "--genesys-addr", f"127.0.0.1:{self.gport}",
                                         "--cms-addr", f"127.0.0.1:{self.cport}"], env={"RELAY_LOG": "warn"})
        wait_port(self.gport, self.proc, "genesys-sim")
        wait_port(self.cport, self.proc, "genesys-sim")
        self.g, self.c = f"http://127.0.0.1:{self.gport}", f"http://127.0.0.1:{self.cport}"
        self.latency_ms = latency_ms

    def reset(self):
        for base in (self.g, self.c):
            http_post_json(f"{base}/__sim/reset", {})
            http_post_json(f"{base}/__sim/faults", {"latency_ms": self.latency_ms})

    def cms_writes(self):
        return json.loads(http_get(f"{self.c}/__sim/stats", timeout=120)[1])

    def genesys_gets(self):
        stats = json.loads(http_get(f"{self.g}/__sim/stats")[1])
        by_status = stats.get("requests", {}).get("GET /api/v2/conversations/{conversationId}", {})
        return sum(v for v in by_status.values() if isinstance(v, int))


ENTRY_PATH = re.compile(r"^/v1/entries/.+$")


def worker_env(cluster, sims, prefix):
    """A worker's settings for one window: the simulators, and a fresh topic prefix and consumer
    group (a member of an earlier window's group that has not left yet would hold the join until
    its session times out)."""
    return {
        "RELAY_KAFKA_BROKERS": cluster.bootstrap, "RELAY_TOPIC_PREFIX": prefix,
        "RELAY_CONSUMER_GROUP": f"{prefix}-group",
        "RELAY_GENESYS_API_BASE": sims.g, "RELAY_GENESYS_LOGIN_BASE": sims.g,
        "RELAY_GENESYS_CLIENT_ID": "sim-client", "RELAY_GENESYS_CLIENT_SECRET": "sim-secret",
        "RELAY_CMS_URL": f"{sims.c}/v1/entries", "RELAY_LOG": "warn",
    }


def accepted_writes(stats):
    """Writes the CMS simulator accepted: its bounded log plus what the bound dropped."""
    return len(stats["writes"]) + stats.get("writes_dropped", 0)


def synced(admin):
    """Events the worker process says it synced: the relay's
    relay_events_processed_total{outcome="synced"} (summed over routes), or the peer's
    peer_events_total{outcome="synced"}."""
    try:
        text = http_get(f"http://127.0.0.1:{admin}/metrics", timeout=5)[1].decode()
    except OSError:
        return 0
    total = 0
    for line in text.splitlines():
        if line.startswith(("relay_events_processed_total{", "peer_events_total{")) and 'outcome="synced"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def worker():
    for v in WORKER_WANTED:
        if v not in WORKER_VARIANTS:
            raise SystemExit(f"unknown worker variant {v}; choose from {' '.join(WORKER_VARIANTS)}")
    if "peer" in {WORKER_VARIANTS[v][4] for v in WORKER_WANTED} and not (VENV / "bin" / "python").exists():
        raise SystemExit(f"no bench virtualenv at {VENV} (scripts/install-bench.sh makes it)")
    cluster = Cluster(1)
    sims = Sims(int(os.environ.get("SIM_LATENCY_MS", "20")))
    big = env_int("WORKER_EVENTS", 4000 * WINDOW)
    small = env_int("WORKER_EVENTS_BUDGET", 4 * WINDOW * 2 + 100)
    results = {}
    try:
        order = shuffled_runs(WORKER_WANTED, SEED + 1)
        log(f"worker: {len(order)} windows of {WINDOW} s, order seeded with {SEED}+1")
        for i, (variant, run) in enumerate(order, 1):
            kind, nproc, extra, size, program = WORKER_VARIANTS[variant]
            target = big if size == "big" else small
            prefix = f"bw-{variant}-{run}-{int(time.time())}"
            # Pre-fill BEFORE the window: the relay's own ingress, fed by wrk, until the 2xx
            # answers (each one a record acknowledged by acks=all) reach the target.
            ing = start_relay_ingress(cluster, prefix, name="prefill")
            filled = 0
            try:
                secs = 1
                while filled < target:
                    w = wrk(ing.url, 64, secs, f"{prefix}-{filled}", event=kind, unique=True)
                    filled += w["ok"]
                    # Size the next chunk from the rate seen, so the fill ends near the target.
                    rate = max(1.0, w["ok"] / (w["duration_us"] / 1e6))
                    secs = int(max(1, min(10, (target - filled) / rate + 0.5)))
            finally:
                ing.proc.stop()
            sims.reset()
            procs, admins = [], []
            env_common = worker_env(cluster, sims, prefix)
            env_common.update(extra)
            t_spawn = time.time()
            for k in range(nproc):
                admin = free_port()
                env = dict(env_common, RELAY_ADMIN_ADDR=f"127.0.0.1:{admin}", RELAY_HTTP_ADDR=f"127.0.0.1:{free_port()}")
                procs.append(Proc(f"worker-{prefix}-{k}", worker_argv(program, admin), env=env))
                admins.append(admin)
            try:
                # First sync: the CMS simulator's first accepted write (polled every 0.1 s
                # while the store is empty, so each poll is small; the exact time is the
                # write's own `at_ms` read after the window).
                deadline = time.time() + 120
                while True:
                    for p in procs:
                        if p.poll() is not None:
                            raise SystemExit(f"worker died, see {p.log_path}")
                    if accepted_writes(sims.cms_writes()) > 0:
                        break
                    if time.time() > deadline:
                        raise SystemExit(f"no sync within 120 s ({variant}); see {LOGS}")
                    time.sleep(0.1)
                t_seen = time.time()
                cpu0 = [cpu_seconds([p.pid]) for p in procs]
                s0 = [synced(a) for a in admins]
                g0 = sims.genesys_gets()
                # The window: WINDOW seconds from the first sync, cut short when the topic is
                # drained (then the rate is over the drain time; flagged in the table).
                t_end, drained = t_seen + WINDOW, False
                while time.time() < t_end:
                    time.sleep(0.2)
                    if sum(synced(a) for a in admins) >= filled:
                        drained = True
                        break
                t1 = time.time()
                cpu1 = [cpu_seconds([p.pid]) for p in procs]
                s1 = [synced(a) for a in admins]
                stats = sims.cms_writes()
                g1 = sims.genesys_gets()
            finally:
                # Measured already: no need to wait for a graceful drain (a budget-bound worker
                # would hold its in-flight events up to RELAY_SHUTDOWN_TIMEOUT).
                for p in procs:
                    p.stop(grace=5)
            # The CMS simulator's log of accepted writes (first MAX_WRITES_LOGGED of them)
            # with their arrival time: the window is measured on its clock.
            times = sorted(w["at_ms"] / 1000 for w in stats["writes"])
            t_first = times[0]
            if drained:
                t_last = times[-1]
                done_n = accepted_writes(stats)
            else:
                t_last = t1
                done_n = sum(1 for t in times if t <= t1)
            secs = t_last - t_first
            per_proc_cpu = [((c1 - c0) / (b - a) * 1e6) if b > a else None
                            for c0, c1, a, b in zip(cpu0, cpu1, s0, s1)]
            # What the writes looked like to the simulator (method + path template, the key's
            # route prefix): the same for every variant that syncs attributes the same way.
            write_routes, key_routes = {}, {}
            for w in stats["writes"]:
                path = ENTRY_PATH.sub("/v1/entries/{id}", w["path"])
                route = f"{w['method']} {path}"
                write_routes[route] = write_routes.get(route, 0) + 1
                key_route = w["key"].split(":", 1)[0] if ":" in w["key"] else f"(no route) {w['key'][:20]}"
                key_routes[key_route] = key_routes.get(key_route, 0) + 1
            redundant = len(stats.get("redundant_writes") or [])
            r = {"scenario": "worker", "topology": "1node", "system": variant, "conns": "-", "run": run,
                 "window_s": secs, "ok": done_n, "non2xx": 0, "socket_errors": 0,
                 "events_per_s": done_n / secs if secs > 0 else None,
                 "cpu_us_per_event": sum(c1 - c0 for c0, c1 in zip(cpu0, cpu1)) / max(1, sum(s1) - sum(s0)) * 1e6,
                 "extra": json.dumps({"first_sync_s": round(t_first - t_spawn, 2), "prefilled": filled,
                                      "drained": drained, "per_process_cpu_us": [None if c is None else round(c, 1) for c in per_proc_cpu],
                                      "genesys_gets_per_event": round((g1 - g0) / max(1, sum(s1) - sum(s0)), 3),
                                      "redundant_writes": stats.get("redundant_writes"),
                                      "write_routes": write_routes, "key_routes": key_routes}, separators=(",", ":"))}
            record(r)
            r["first_sync_s"], r["drained"] = t_first - t_spawn, drained
            r["per_proc"], r["gets"] = per_proc_cpu, (g1 - g0) / max(1, sum(s1) - sum(s0))
            results.setdefault(variant, []).append(r)
            log(f"[{i}/{len(order)}] worker {variant} run {run}: {r['events_per_s']:.1f} ev/s over {secs:.1f} s"
                f"{' (drained)' if drained else ''}, first sync after {t_first - t_spawn:.2f} s, "
                f"CPU {[fmt_num(c) for c in per_proc_cpu]} µs/ev per process, Genesys GETs/event {r['gets']:.2f}, "
                f"redundant writes {redundant}, writes {write_routes}, keys {key_routes}")
            time.sleep(PAUSE)
        rows = []
        for variant, rs in results.items():
            kind, nproc, extra, _, _ = WORKER_VARIANTS[variant]
            per = [mmm([r["per_proc"][k] for r in rs]) for k in range(nproc)]
            rows.append([variant, str(nproc), mmm([r["events_per_s"] for r in rs]),
                         " ; ".join(per), mmm([r["gets"] for r in rs]), mmm([r["first_sync_s"] for r in rs]),
                         f"{sum(r['drained'] for r in rs)}/{len(rs)}"])
        command = command_line("worker")
        if os.environ.get("WORKER_VARIANTS", "").split():
            command = f'WORKER_VARIANTS="{" ".join(WORKER_WANTED)}" {command}'
        write_table(
            "Worker alone (pre-filled raw topic, simulators in a separate process)", command,
            [f"variants: {' '.join(WORKER_WANTED)} (`WORKER_VARIANTS`; default all: {' '.join(WORKER_VARIANTS)})",
             f"genesys-sim (separate process) with `latency_ms: {sims.latency_ms}` on the Genesys and CMS "
             "APIs (`POST /__sim/faults`)",
             "worker processes: `target/release/genesys-relay worker` with `RELAY_GENESYS_API_BASE`/"
             "`RELAY_GENESYS_LOGIN_BASE`/`RELAY_CMS_URL` at the simulators, a fresh `RELAY_TOPIC_PREFIX` and "
             "`RELAY_CONSUMER_GROUP` per window, `RELAY_LOG=warn`",
             "attributes-1w / attributes-2w: EventBridge attributes events (customer attributes in the event, "
             "0 Genesys calls), `RELAY_MAX_IN_FLIGHT=256` per process (the default), 1 or 2 processes in one group",
             "peer-python: the attributes-1w workload and environment, one process of the worker-side peer "
             f"`{VENV.name}/bin/python benches/python/worker_peer.py --metrics-port <port>` instead of the relay: "
             "confluent-kafka consumer (no auto-commit, a partition's offset committed only past handled "
             "records), asyncio (uvloop) + aiohttp, up to 256 events in flight, the relay's CMS request "
             "(same method, path, headers, idempotency key, body); idempotency in memory only, no "
             "retry/dead-letter topics; its CPU and synced count are read the same way",
             "get-default-budget: customer.start events without attributes, "
             "`RELAY_ROUTES=v2.detail.events.conversation.{id}.customer.start=guest_sync` and "
             "`RELAY_GUEST_SYNC_SCOPE=all` (each event costs one conversation GET, then one CMS write), "
             "`RELAY_GENESYS_RATE_LIMIT` at its default 240/min: "
             "**budget-bound**, at most 4 events/s by design",
             "get-raised-budget: the same events with `RELAY_GENESYS_RATE_LIMIT=1000000`",
             f"pre-fill (before the window): `genesys-relay ingress` fed by wrk -c 64 until {big} events "
             f"({small} for the default budget) were acknowledged; 1-node cluster, {PARTITIONS} partitions",
             "window: from the first CMS write for WINDOW s, or until the topic is drained (counted in the "
             "last column); events/s = CMS simulator accepted writes in the window / its length; CPU "
             "µs/event = the process's utime+stime over the window / the events it reports synced "
             "(`relay_events_processed_total` or the peer's `peer_events_total`, outcome synced)"],
            ["variant", "processes", "events/s", "CPU µs/event per process", "Genesys GETs/event",
             "start to first sync (s)", "drained early"], rows,
            notes=["Each cell: min / median / max over the runs. Start to first sync = worker process spawn to "
                   "the CMS simulator's first accepted write (0.1 s polling), so it includes start-up, the "
                   "OAuth token and the consumer-group join."])
    finally:
        sims.proc.stop()
        cluster.stop()


# --- e2e -------------------------------------------------------------------------------

# Open-loop sending rate (events/s), far below the worker's ~3,800 events/s on this machine
# so the figures are latency, not a backlog. At 1000/s the sender, the broker, the relay and
# the simulator together nearly fill the two cores and the sender falls behind its schedule.
E2E_RATE = float(os.environ.get("E2E_RATE", "500"))
# Each event's deadline after it was due: no accepted CMS write by then = never synced.
# 90 s covers the first two default retry tiers (5 s + 60 s, each up to +10 % jitter).
E2E_GRACE = float(os.environ.get("E2E_GRACE", "90"))
E2E_ERROR_RATE = float(os.environ.get("E2E_ERROR_RATE", "0.2"))
# The sender's connections at most, kept within the relay ingress's limit
# (RELAY_INGRESS_MAX_CONNECTIONS = largest CONNS + 64 in start_relay_ingress).
E2E_CONNS = min(env_int("E2E_CONNS", 256), max(CONNS) + 64)
E2E_TIMEOUT = float(os.environ.get("E2E_TIMEOUT", "10"))
E2E_LATE_MS = float(os.environ.get("E2E_LATE_MS", "10"))
# Empty: the relay's default (read from src/config.rs for the table).
E2E_RETRY_DELAYS = os.environ.get("E2E_RETRY_DELAYS", "")
SENDER = ROOT / "benches" / "python" / "e2e_sender.py"
INF = float("inf")

# name: the CMS simulator's error_rate (503, before the handler) during the window.
E2E_VARIANTS = {"clean": 0.0, "retry": E2E_ERROR_RATE}


def relay_default(name):
    """A setting's default as src/config.rs declares it (None when not found)."""
    m = re.search(r'name: "%s", default: Value\("([^"]*)"\)' % re.escape(name),
                  (ROOT / "src" / "config.rs").read_text())
    return m.group(1) if m else None


def e2e_send(url, seconds, tag):
    """One run of the open-loop sender (a separate process): its summary and, per event,
    conversation id, event id, due time (Unix ms) and answer."""
    out = OUT / "e2e" / f"{tag}.tsv"
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [str(VENV / "bin" / "python"), str(SENDER), "--url", url, "--secret", SECRET,
            "--rate", str(E2E_RATE), "--seconds", str(seconds), "--tag", tag,
            "--body-bytes", str(BODY_BYTES), "--conns", str(E2E_CONNS), "--timeout", str(E2E_TIMEOUT),
            "--late-ms", str(E2E_LATE_MS), "--out", str(out)]
    r = subprocess.run(argv, capture_output=True, text=True)
    m = [l for l in r.stdout.splitlines() if l.startswith("E2E ")]
    if r.returncode != 0 or not m:
        raise SystemExit(f"e2e sender failed ({r.returncode}): {r.stdout[-2000:]}{r.stderr[-2000:]}")
    events = []
    with open(out) as f:
        next(f)
        for line in f:
            _n, conv, event_id, due, _started, _answered, status = line.rstrip("\n").split("\t")
            events.append({"conv": conv, "event_id": event_id, "due_ms": float(due), "status": status})
    return json.loads(m[-1][4:]), events


def pct(sorted_vals, q):
    """Nearest-rank percentile; +inf (a failure) sorts last."""
    if not sorted_vals:
        return None
    return sorted_vals[max(0, min(len(sorted_vals) - 1, math.ceil(q / 100 * len(sorted_vals)) - 1))]


def latency_summary(vals):
    s = sorted(vals)
    return {"n": len(s), "p50": pct(s, 50), "p90": pct(s, 90), "p99": pct(s, 99), "max": s[-1] if s else None}


def e2e_latencies(events, stats):
    """Per event: due time -> the CMS simulator's first accepted write of its entry (the
    conversation id, RELAY_CMS_ENTRY_KEY's default), +inf when it was not answered 202 or
    had no accepted write within E2E_GRACE s of its due time. Also whether its first CMS
    write request failed (`answers_by_key` of its idempotency key `guest_sync:<event id>`)
    and whether any write of it reached the simulator."""
    if stats.get("writes_dropped", 0):
        raise SystemExit(f"the CMS simulator's write log overflowed ({stats['writes_dropped']} writes not "
                         "logged): lower E2E_RATE x WINDOW")
    first = {}
    for w in stats["writes"]:
        e = w.get("entry_id")
        if e is not None and (e not in first or w["at_ms"] < first[e][0]):
            first[e] = (w["at_ms"], w["key"])
    answers = stats.get("answers_by_key", {})
    arrived = stats.get("writes_by_key", {})
    out, wrong_key = [], 0
    for ev in events:
        key = f"guest_sync:{ev['event_id']}"
        hit = first.get(ev["conv"])
        if hit is not None and hit[1] != key:
            wrong_key += 1
        ok = ev["status"] == "202"
        lat = INF
        if ok and hit is not None and hit[0] - ev["due_ms"] <= E2E_GRACE * 1000:
            lat = hit[0] - ev["due_ms"]
        a = answers.get(key) or []
        out.append({"ok": ok, "lat": lat, "first_failed": bool(a) and not a[0].startswith(("applied", "replayed")),
                    "attempted": arrived.get(key, 0) > 0})
    if wrong_key:
        raise SystemExit(f"{wrong_key} CMS writes carry another idempotency key than guest_sync:<event id> as "
                         "the sender derives it: the first-attempt classification would be wrong")
    return out


def json_num(v):
    if v is None:
        return None
    return "inf" if v == INF else round(v, 1)


def fmt_ms(v):
    return "∞" if v == INF else fmt_num(v)


def e2e_window(cluster, sims, variant, run):
    error_rate = E2E_VARIANTS[variant]
    prefix = f"e2e-{variant}-{run}-{int(time.time())}"
    sims.reset()
    ing = start_relay_ingress(cluster, prefix, name="e2e-ingress")
    admin = free_port()
    env = dict(worker_env(cluster, sims, prefix),
               RELAY_ADMIN_ADDR=f"127.0.0.1:{admin}", RELAY_HTTP_ADDR=f"127.0.0.1:{free_port()}")
    if E2E_RETRY_DELAYS:
        env["RELAY_RETRY_DELAYS"] = E2E_RETRY_DELAYS
    worker = Proc(f"e2e-worker-{prefix}", [str(RELAY), "worker"], env=env)
    try:
        wait_ready(admin, worker, "relay worker")
        # Warm-up (not measured): WARMUP s at the rate, then wait until every event answered
        # 202 is synced, so the window starts with the group joined, the connections open and
        # nothing of the warm-up in flight.
        if WARMUP > 0:
            want = e2e_send(ing.url, WARMUP, f"{prefix}-warm")[0]["by_status"].get("202", 0)
            (OUT / "e2e" / f"{prefix}-warm.tsv").unlink(missing_ok=True)
        else:
            probe(ing)
            want = 1
        deadline = time.time() + 60
        while synced(admin) < want:
            if worker.poll() is not None:
                raise SystemExit(f"relay worker exited during the warm-up; see {worker.log_path}")
            if time.time() > deadline:
                raise SystemExit(f"warm-up not synced within 60 s ({synced(admin)}/{want}); see {LOGS}")
            time.sleep(0.2)
        # The CMS simulator only: its log then holds the window's writes alone.
        http_post_json(f"{sims.c}/__sim/reset", {})
        http_post_json(f"{sims.c}/__sim/faults", {"latency_ms": sims.latency_ms, "error_rate": error_rate,
                                                  "error_status": 503})
        base = synced(admin)
        summary, events = e2e_send(ing.url, WINDOW, f"{prefix}-w")
        n202 = sum(1 for e in events if e["status"] == "202")
        last_due = max(e["due_ms"] for e in events) / 1000
        # Until every event answered 202 is synced, or the last one's deadline.
        end = last_due + E2E_GRACE
        while time.time() < end and synced(admin) - base < n202:
            if worker.poll() is not None:
                log(f"relay worker exited during the window ({worker.poll()}); see {worker.log_path}")
                break
            time.sleep(0.5)
        stats = sims.cms_writes()
        waited = time.time() - last_due
    finally:
        worker.stop(grace=5)
        ing.proc.stop(grace=5)
    per = e2e_latencies(events, stats)
    sub = [p for p in per if p["first_failed"]]
    r = {"variant": variant, "run": run, "summary": summary, "sent": len(per),
         "ok202": sum(p["ok"] for p in per), "not202": sum(not p["ok"] for p in per),
         "synced": sum(p["lat"] != INF for p in per),
         "never": sum(p["ok"] and p["lat"] == INF for p in per),
         "never_no_attempt": sum(p["ok"] and p["lat"] == INF and not p["attempted"] for p in per),
         "all": latency_summary([p["lat"] for p in per]),
         "ff": latency_summary([p["lat"] for p in sub]),
         "ff_synced": sum(p["lat"] != INF for p in sub), "ff_never": sum(p["lat"] == INF for p in sub),
         "waited_s": waited}
    errors = sum(v for k, v in summary["by_status"].items() if not k.isdigit())
    record({"scenario": "e2e", "topology": "1node", "system": variant, "conns": E2E_CONNS, "run": run,
            "window_s": summary["send_span_s"], "ok": r["ok202"], "non2xx": r["not202"] - errors,
            "socket_errors": errors, "events_per_s": len(per) / summary["send_span_s"] if summary["send_span_s"] else None,
            "p50_ms": r["all"]["p50"], "p99_ms": r["all"]["p99"],
            "extra": json.dumps({"rate": E2E_RATE, "grace_s": E2E_GRACE, "error_rate": error_rate,
                                 "synced": r["synced"], "never_synced": r["never"],
                                 "never_synced_no_cms_attempt": r["never_no_attempt"],
                                 "p90_ms": json_num(r["all"]["p90"]), "max_ms": json_num(r["all"]["max"]),
                                 "first_write_failed": {k: json_num(v) for k, v in r["ff"].items()},
                                 "sender": {k: summary[k] for k in ("by_status", "late", "lag_p99_ms", "lag_max_ms",
                                                                    "max_in_flight", "cpu_us_per_event")},
                                 "events_file": str((OUT / "e2e" / f"{prefix}-w.tsv").relative_to(ROOT))},
                                separators=(",", ":"))})
    return r


def e2e():
    cluster = Cluster(1)
    sims = Sims(int(os.environ.get("SIM_LATENCY_MS", "20")))
    results = {}
    try:
        order = shuffled_runs(E2E_VARIANTS, SEED + 2)
        log(f"e2e: {len(order)} windows of {WINDOW} s at {E2E_RATE:g} events/s (grace {E2E_GRACE:g} s), "
            f"order seeded with {SEED}+2")
        for i, (variant, run) in enumerate(order, 1):
            r = e2e_window(cluster, sims, variant, run)
            results.setdefault(variant, []).append(r)
            a, s = r["all"], r["summary"]
            log(f"[{i}/{len(order)}] e2e {variant} run {run}: sent {r['sent']}, 202 {r['ok202']}, synced {r['synced']}, "
                f"never synced {r['never']} ({r['never_no_attempt']} without a CMS attempt); p50 {fmt_ms(a['p50'])} "
                f"p90 {fmt_ms(a['p90'])} p99 {fmt_ms(a['p99'])} max {fmt_ms(a['max'])} ms; first write failed: "
                f"{r['ff']['n']} (p50 {fmt_ms(r['ff']['p50']) if r['ff']['n'] else '-'} ms); sender late "
                f"{s['late']}, lag p99 {fmt_num(s['lag_p99_ms'])} ms, CPU {fmt_num(s['cpu_us_per_event'])} µs/event; waited {r['waited_s']:.0f} s after the last send")
            time.sleep(PAUSE)
        rows = []
        for variant in E2E_VARIANTS:
            rs = results.get(variant, [])
            if not rs:
                continue
            tot = lambda k: str(sum(r[k] for r in rs))
            rows.append([variant, "all", tot("sent"), tot("ok202"), tot("synced"),
                         f"{tot('never')} ({tot('never_no_attempt')})", tot("not202"),
                         *[mmm([r["all"][q] for r in rs], fmt_ms) for q in ("p50", "p90", "p99", "max")],
                         mmm([r["summary"]["lag_p99_ms"] for r in rs]), str(sum(r["summary"]["late"] for r in rs))])
            if E2E_VARIANTS[variant] > 0:
                rows.append([variant, "first CMS write failed", str(sum(r["ff"]["n"] for r in rs)),
                             str(sum(r["ff"]["n"] for r in rs)), tot("ff_synced"), f"{tot('ff_never')} (0)", "0",
                             *[mmm([r["ff"][q] for r in rs], fmt_ms) for q in ("p50", "p90", "p99", "max")], "-", "-"])
        delays = E2E_RETRY_DELAYS or relay_default("RELAY_RETRY_DELAYS")
        write_table(
            "End to end and retry latency (sender, ingress, worker and simulators in separate processes)",
            f"RUNS={RUNS} WINDOW={WINDOW} E2E_RATE={E2E_RATE:g} E2E_GRACE={E2E_GRACE:g} "
            f"E2E_ERROR_RATE={E2E_ERROR_RATE:g} SEED={SEED} scripts/bench-matrix.sh e2e",
            [f"1-node cluster, {PARTITIONS} partitions; genesys-sim (separate process) with `latency_ms: "
             f"{sims.latency_ms}` on the CMS API; a fresh `RELAY_TOPIC_PREFIX` and `RELAY_CONSUMER_GROUP` per window",
             "per window: `target/release/genesys-relay ingress` (as in the ingress scenario) and one "
             "`target/release/genesys-relay worker` (as in the worker scenario: simulators' URLs, `RELAY_LOG=warn`, "
             "`RELAY_MAX_IN_FLIGHT` at its default 256), started for the window and stopped after it",
             f"retry delays (`RELAY_RETRY_DELAYS`): {delays}"
             + (" (E2E_RETRY_DELAYS)" if E2E_RETRY_DELAYS else " (the relay's default)")
             + ", each up to +10 % jitter",
             f"sender: `benches/python/e2e_sender.py` (a separate process, asyncio + aiohttp, open loop): "
             f"{E2E_RATE:g} events/s for {WINDOW} s, each event due at a fixed time whatever the earlier answers, "
             f"at most {E2E_CONNS} connections, timeout {E2E_TIMEOUT:g} s; the wrk script's EventBridge attributes "
             f"event of {BODY_BYTES} bytes (0 Genesys calls), each its own conversation, `X-Relay-Secret`",
             f"warm-up per window (not measured): {WARMUP} s at the same rate, all synced before the window",
             f"clean: CMS simulator without errors; retry: CMS simulator `error_rate: {E2E_ERROR_RATE:g}`, "
             "`error_status: 503` (`POST /__sim/faults`: that share of CMS write requests is answered 503 "
             "before anything is stored, retries included)",
             f"deadline: an event answered 202 with no accepted CMS write within {E2E_GRACE:g} s of its due "
             "time never synced (+∞ in the percentiles); the matrix waits until every event answered 202 "
             "is synced or the last one's deadline",
             f"order: the variants shuffled within each run, seeded with {SEED}+2"],
            ["variant", "events", "sent", "answered 202", "synced", "never synced (no CMS attempt)", "not 202",
             "p50 (ms)", "p90 (ms)", "p99 (ms)", "max (ms)", "sender lag p99 (ms)",
             f"late sends (> {E2E_LATE_MS:g} ms)"], rows,
            notes=["Latency per event = the CMS simulator's first accepted write of its entry (`at_ms` in "
                   "`GET /__sim/stats`, its clock) - the time the event was due to be sent (the sender's "
                   "schedule, so the sender's own lag counts against the relay, and a request waiting for a "
                   "connection counts too). Events not answered 202 and events that never synced count as +∞ "
                   "(∞ in a cell: more than 1 %, 10 % or 50 % failed). p50/p90/p99/max are nearest-rank over "
                   "all the events of one run; each cell min / median / max over the runs; counts are summed "
                   "over the runs. \"first CMS write failed\": the events whose first CMS write request was "
                   "answered with an error (the simulator's `answers_by_key` of `guest_sync:<event id>`), i.e. "
                   "went through a retry tier. \"no CMS attempt\": never synced and no write request of theirs "
                   "reached the simulator. Sender lag = when a request's task started - when it was due; "
                   f"per-event timings are in `.run/bench/e2e/`."])
    finally:
        sims.proc.stop()
        cluster.stop()


def main():
    wanted = sys.argv[1:] or SCENARIOS
    for s in wanted:
        if s not in SCENARIOS:
            raise SystemExit(f"unknown scenario {s}; choose from {' '.join(SCENARIOS)}")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # wrk and the server each hold one descriptor per connection, plus their own.
    if hard != resource.RLIM_INFINITY and hard < max(CONNS) + 512:
        raise SystemExit(f"the open-file limit ({hard}) is too low for {max(CONNS)} connections: raise it "
                         f"(ulimit -Hn) to at least {max(CONNS) + 512}")
    log(f"seed {SEED}; runs {RUNS}; window {WINDOW} s; conns {CONNS}; scenarios {' '.join(wanted)}")
    failed = []
    for s in wanted:
        t0 = time.time()
        # A failed scenario is reported and the next one still runs: an unattended run
        # keeps what it could measure.
        try:
            if s == "ceiling":
                ceiling([int(n) for n in os.environ.get("CEILING_NODES", "1 3").split()])
            elif s == "ingress-1node":
                ingress(1)
            elif s == "ingress-3node":
                ingress(3)
            elif s == "worker":
                worker()
            elif s == "e2e":
                e2e()
        except (SystemExit, Exception) as e:  # noqa: BLE001 - reported, then the exit code says it
            log(f"{s} FAILED: {e}")
            failed.append(s)
        log(f"{s} took {time.time() - t0:.0f} s")
    if failed:
        raise SystemExit(f"failed scenarios: {' '.join(failed)} (logs in {LOGS})")


if __name__ == "__main__":
    main()
