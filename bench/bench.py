#!/usr/bin/env python3
"""Measurement driver of bench/run.sh (run.sh starts the services, this runs
the measurements and writes the report). Standard library only.

Everything comes from the environment that run.sh exports:
  BENCH_ES_URL, BENCH_OS_URL          search nodes (primary: ES 7, backup: OS 2)
  BENCH_NGINX_URL                     nginx proxy_pass to ES
  BENCH_GW_URL, BENCH_GW_ADMIN        gateway A (replay paused): write/read runs
  BENCH_GW2_URL, BENCH_GW2_ADMIN      gateway B (fresh queue): replay runs
  BENCH_*_PID                         pids for CPU accounting
  BENCH_DIR                           where results go
and the knobs documented in run.sh.

Each wrk run is measured after its own warm-up, on a fresh index with the
same settings; the three paths are interleaved (and the order reversed every
other round) so drift of a shared, noisy machine hits them equally. For every
run the CPU time of each process is read from /proc, so the report shows who
used the two cores.
"""

import http.client
import json
import os
import platform
import re
import resource
import subprocess
import sys
import threading
import time
import urllib.parse

ENV = os.environ
HERE = os.path.dirname(os.path.abspath(__file__))
DIR = ENV["BENCH_DIR"]
DURATION = int(ENV.get("BENCH_DURATION", "10"))
WARMUP = int(ENV.get("BENCH_WARMUP", "3"))
CONNS = int(ENV.get("BENCH_CONNECTIONS", "8"))
THREADS = int(ENV.get("BENCH_THREADS", "2"))
ROUNDS = int(ENV.get("BENCH_ROUNDS", "3"))
LAT_DURATION = int(ENV.get("BENCH_LAT_DURATION", "8"))
LAT_ROUNDS = int(ENV.get("BENCH_LAT_ROUNDS", "2"))
DOCS_PER_BULK = int(ENV.get("BENCH_DOCS_PER_BULK", "100"))
DOC_BYTES = int(ENV.get("BENCH_DOC_BYTES", "200"))
READ_DOCS = int(ENV.get("BENCH_READ_DOCS", "10000"))
REPLAY_DOCS = int(ENV.get("BENCH_REPLAY_DOCS", "100000"))
REPLAY_BATCH = int(ENV.get("BENCH_REPLAY_BATCH", "1000"))
REPLAY_ROUNDS = int(ENV.get("BENCH_REPLAY_ROUNDS", "3"))
LIVE_ROUNDS = int(ENV.get("BENCH_LIVE_ROUNDS", "2"))
FILL_CONNS = int(ENV.get("BENCH_FILL_CONNECTIONS", "4"))
MAX_OTHER = float(ENV.get("BENCH_MAX_OTHER", "0.5"))
RETRY_BUDGET = int(ENV.get("BENCH_RETRY_BUDGET", "6"))
GLOBAL_WARMUP = int(ENV.get("BENCH_GLOBAL_WARMUP", "10"))
PHASES = ENV.get("BENCH_PHASES", "bulk,bulk1,read,read1,memory,replay,live").split(",")
CLK = os.sysconf("SC_CLK_TCK")

ES = ENV["BENCH_ES_URL"]
OS_ = ENV["BENCH_OS_URL"]
NGINX = ENV["BENCH_NGINX_URL"]
GW = ENV["BENCH_GW_URL"]
GW_ADMIN = ENV["BENCH_GW_ADMIN"]
GW2 = ENV["BENCH_GW2_URL"]
GW2_ADMIN = ENV["BENCH_GW2_ADMIN"]
PATHS = [("direct", ES), ("nginx", NGINX), ("gateway", GW)]

INDEX_SETTINGS = json.dumps(
    {"settings": {"number_of_shards": 1, "number_of_replicas": 0}}
).encode()


def log(msg):
    print(f"\033[1;34m[bench]\033[0m {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------- HTTP


class Client:
    """One keep-alive HTTP/1.1 connection to a base URL."""

    def __init__(self, base, timeout=120):
        u = urllib.parse.urlsplit(base)
        self.host, self.port, self.timeout = u.hostname, u.port, timeout
        self.conn = None

    def request(self, method, path, body=None, ctype="application/json"):
        headers = {"Content-Type": ctype} if body is not None else {}
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
                return resp.status, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A stale keep-alive connection: retry once on a new one
                # (only ever used for idempotent setup calls and fresh ids).
                self.conn.close()
                self.conn = None
                if attempt:
                    raise

    def json(self, method, path, body=None, ok=(200, 201)):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        status, data = self.request(method, path, body)
        if status not in ok:
            raise RuntimeError(f"{method} {path} -> {status}: {data[:300]!r}")
        return json.loads(data) if data else None

    def close(self):
        if self.conn:
            self.conn.close()


def call(base, method, path, body=None, ok=(200, 201)):
    c = Client(base)
    try:
        return c.json(method, path, body, ok)
    finally:
        c.close()


def create_index(base, name):
    c = Client(base)
    c.request("DELETE", f"/{name}")
    c.json("PUT", f"/{name}", INDEX_SETTINGS)
    c.json("GET", f"/_cluster/health/{name}?wait_for_status=green&timeout=30s")
    c.close()


def delete_index(base, name):
    call(base, "DELETE", f"/{name}", ok=(200, 404))


def count(base, name):
    call(base, "POST", f"/{name}/_refresh")
    return call(base, "GET", f"/{name}/_count")["count"]


# ------------------------------------------------------------ CPU accounting


def proc_cpu(pid):
    """utime + stime of a process (all its threads), in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK
    except (OSError, IndexError, ValueError):
        return 0.0


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def roles():
    r = {
        "es": [int(ENV["BENCH_ES_PID"])],
        "os": [int(ENV["BENCH_OS_PID"])],
        "gateway": [int(ENV["BENCH_GW_PID"]), int(ENV["BENCH_GW2_PID"])],
    }
    master = int(ENV["BENCH_NGINX_PID"])
    r["nginx"] = [master] + children(master)
    return r


def system_cpu():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (v + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq
    return {"busy": busy / CLK, "irq": (irq + softirq) / CLK, "iowait": iowait / CLK,
            "steal": steal / CLK, "total": (busy + idle + iowait + steal) / CLK}


def cpu_snapshot():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk (waited-for children)
    me = resource.getrusage(resource.RUSAGE_SELF)  # this script's own loader threads
    snap = {role: sum(proc_cpu(p) for p in pids) for role, pids in roles().items()}
    snap["loadgen"] = ru.ru_utime + ru.ru_stime + me.ru_utime + me.ru_stime
    snap["_sys"] = system_cpu()
    snap["_t"] = time.monotonic()
    return snap


def cpu_delta(a, b):
    """Cores used by each role between two snapshots."""
    wall = b["_t"] - a["_t"]
    out = {}
    for role in ("es", "os", "nginx", "gateway", "loadgen"):
        out[role] = round((b[role] - a[role]) / wall, 3)
    busy = (b["_sys"]["busy"] - a["_sys"]["busy"]) / wall
    # irq/softirq time (loopback TCP of our own traffic, mostly) is not
    # charged to any process: its own column, not part of "other".
    irq = (b["_sys"]["irq"] - a["_sys"]["irq"]) / wall
    out["machine_busy"] = round(busy, 3)
    out["irq"] = round(irq, 3)
    out["other"] = round(max(0.0, busy - irq - sum(out[r] for r in ("es", "os", "nginx", "gateway", "loadgen"))), 3)
    out["iowait"] = round((b["_sys"]["iowait"] - a["_sys"]["iowait"]) / wall, 3)
    out["steal"] = round((b["_sys"]["steal"] - a["_sys"]["steal"]) / wall, 3)
    return out


# ---------------------------------------------------------------------- wrk


def wrk(script, url, conns, duration, args, after=None):
    """One wrk run; `after` (optional) is called as soon as wrk exits, before
    anything else, and its result stored under "after"."""
    threads = max(1, min(THREADS, conns))
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--timeout", "30s",
           "-s", os.path.join(HERE, script), url, "--"] + [str(a) for a in args]
    before = cpu_snapshot()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    after_snap = cpu_snapshot()
    extra = after() if after else None
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr}\n{proc.stdout}")
    line = next((l for l in proc.stdout.splitlines() if l.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"no BENCH_JSON from wrk:\n{proc.stdout}\n{proc.stderr}")
    res = json.loads(line[len("BENCH_JSON "):])
    res["rps"] = res["requests"] / (res["duration_us"] / 1e6)
    res["cpu"] = cpu_delta(before, after_snap)
    res["command"] = " ".join(cmd)
    res["after"] = extra
    # the scripts count non-200 answers themselves (wrk's "status" counts the same)
    bad = res["failed"] + sum(v for k, v in res["errors"].items() if k != "status")
    res["failure_samples"] = [l for l in proc.stderr.splitlines() if l.startswith("FAILED")][:6]
    if bad:
        log(f"WARNING: {bad} failed requests in {' '.join(cmd)}: {res['errors']}; "
            f"samples: {res['failure_samples']}")
    res["bad"] = bad
    return res


RETRIES_LEFT = [RETRY_BUDGET]


def guarded(attempt_fn, what):
    """Runs a measurement; if processes outside the benchmark used more than
    MAX_OTHER cores during it, or a request failed, measures once more (while
    the run's retry budget lasts) and keeps the better attempt (no failures,
    then quieter). Noise and failures are reported either way."""
    attempts = [attempt_fn(0)]
    res = attempts[0]
    if (res["cpu"]["other"] > MAX_OTHER or res["bad"]) and RETRIES_LEFT[0] > 0:
        RETRIES_LEFT[0] -= 1
        why = (f"{res['bad']} failed requests" if res["bad"] else
               f"other processes used {res['cpu']['other']} cores (> {MAX_OTHER})")
        log(f"{what}: {why}; measuring again ({RETRIES_LEFT[0]} retries left)")
        attempts.append(attempt_fn(1))
    best = min(attempts, key=lambda r: (r["bad"] > 0, r["cpu"]["other"]))
    best["discarded"] = len(attempts) - 1
    best["noisy"] = best["cpu"]["other"] > MAX_OTHER
    return best


def show(kind, conns, res):
    c = res["cpu"]
    log(f"{kind} c={conns} {res['path']:15s} {res['rps']:9.1f} req/s  p50 {res['latency_us']['p50']:>6} µs  "
        f"p99 {res['latency_us']['p99']:>6} µs | cores: es {c['es']:.2f} os {c['os']:.2f} "
        f"nginx {c['nginx']:.2f} gw {c['gateway']:.2f} wrk {c['loadgen']:.2f} irq {c['irq']:.2f} "
        f"other {c['other']:.2f}")


def bulk_run(path, url, conns, duration, tag, warmup=None, guard=True, after=None):
    def attempt(i):
        index = f"bench-bulk-{tag}"
        create_index(ES, index)
        wrk("bulk.lua", url, conns, warmup or WARMUP, [index, DOCS_PER_BULK, DOC_BYTES, f"{tag}w{i}"])
        res = wrk("bulk.lua", url, conns, duration, [index, DOCS_PER_BULK, DOC_BYTES, f"{tag}m{i}"],
                  after=after)
        res["docs_per_s"] = res["rps"] * DOCS_PER_BULK
        res["indexed"] = count(ES, index)
        delete_index(ES, index)
        return res

    res = guarded(attempt, f"bulk c={conns} {path}") if guard else dict(attempt(0), discarded=0, noisy=False)
    res["path"] = path
    show("bulk", conns, res)
    return res


def read_run(path, url, conns, duration, warmup=None):
    def attempt(i):
        wrk("read.lua", url, conns, warmup or WARMUP, ["bench-read", READ_DOCS])
        return wrk("read.lua", url, conns, duration, ["bench-read", READ_DOCS])

    res = guarded(attempt, f"read c={conns} {path}")
    res["path"] = path
    show("read", conns, res)
    return res


def rounds_of(fn, rounds):
    """Runs fn(path, url, round) for every path, `rounds` times; the order
    rotates every round so each path takes each position in turn."""
    runs = []
    for r in range(rounds):
        k = r % len(PATHS)
        for path, url in PATHS[k:] + PATHS[:k]:
            res = fn(path, url, r)
            res["round"] = r
            runs.append(res)
    return runs


# ------------------------------------------------------------ documents


def doc(i):
    skeleton = '{"user":"user-00","n":1000000,"ts":1700000000000,"tags":["bench","tandem"],"msg":""}'
    pad = "x" * max(0, DOC_BYTES - len(skeleton))
    return ('{"user":"user-%02d","n":%d,"ts":1700000000000,"tags":["bench","tandem"],"msg":"%s"}'
            % (i % 97, 1000000 + i % 9000000, pad))


def bulk_body(ids, with_index=None):
    lines = []
    for i in ids:
        meta = {"_id": f"r-{i}"}
        if with_index:
            meta["_index"] = with_index
        lines.append(json.dumps({"index": meta}, separators=(",", ":")))
        lines.append(doc(i))
    return ("\n".join(lines) + "\n").encode()


def send_bulks(base, path, bodies, conns):
    """Sends prebuilt bulk bodies over `conns` keep-alive connections; raises
    on any refused item."""
    errors = []
    lock = threading.Lock()
    it = iter(bodies)

    def worker():
        c = Client(base)
        while True:
            with lock:
                body = next(it, None)
            if body is None:
                break
            status, data = c.request("POST", path, body, "application/x-ndjson")
            if status != 200 or b'"errors":true' in data[:100]:
                errors.append((status, data[:300]))
                break
        c.close()

    ts = [threading.Thread(target=worker) for _ in range(conns)]
    started = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise RuntimeError(f"bulk refused: {errors[0]}")
    return time.monotonic() - started


def preload_reads():
    create_index(ES, "bench-read")
    bodies = [bulk_body(range(s, min(s + 1000, READ_DOCS)))
              .replace(b'"_id":"r-', b'"_id":"') for s in range(0, READ_DOCS, 1000)]
    send_bulks(ES, "/bench-read/_bulk", bodies, 2)
    n = count(ES, "bench-read")
    assert n == READ_DOCS, f"bench-read holds {n} docs, expected {READ_DOCS}"


# --------------------------------------------------------------- replay


def replication(admin):
    return call(admin, "GET", "/replication")


def lag(admin):
    return replication(admin)["replayer"]["lag_records"]


def baseline_bulk(index):
    """The same documents straight into an empty backup index: one
    connection, sequential, REPLAY_BATCH docs per _bulk (what the replayer
    does), bodies built before the clock starts."""
    create_index(OS_, index)
    bodies = [bulk_body(range(s, min(s + REPLAY_BATCH, REPLAY_DOCS)))
              for s in range(0, REPLAY_DOCS, REPLAY_BATCH)]
    before = cpu_snapshot()
    took = send_bulks(OS_, f"/{index}/_bulk", bodies, 1)
    after = cpu_snapshot()
    n = count(OS_, index)
    assert n == REPLAY_DOCS, f"{index} holds {n} docs, expected {REPLAY_DOCS}"
    delete_index(OS_, index)
    res = {"seconds": took, "docs_per_s": REPLAY_DOCS / took, "cpu": cpu_delta(before, after)}
    log(f"baseline: {REPLAY_DOCS} docs straight into the backup in {took:.2f} s = "
        f"{res['docs_per_s']:.0f} docs/s (other {res['cpu']['other']:.2f} cores)")
    return res


def replay_once(index):
    """Resumes gateway B's replayer on a full queue, times it until the lag
    is 0, pauses it again."""
    before = cpu_snapshot()
    started = time.monotonic()
    call(GW2_ADMIN, "POST", "/replication/resume")
    while True:
        st = replication(GW2_ADMIN)
        if st["replayer"]["lag_records"] == 0:
            break
        if st.get("halted") or time.monotonic() - started > 600:
            raise RuntimeError(f"replay did not finish: {st}")
        time.sleep(0.02)
    took = time.monotonic() - started
    after = cpu_snapshot()
    call(GW2_ADMIN, "POST", "/replication/pause")
    n = count(OS_, index)
    assert n == REPLAY_DOCS, f"backup {index} holds {n} docs, expected {REPLAY_DOCS}"
    assert st["dead_letters"] == 0, f"dead letters after replay: {st}"
    res = {"seconds": took, "docs_per_s": REPLAY_DOCS / took, "cpu": cpu_delta(before, after)}
    log(f"replay:   {REPLAY_DOCS} docs from the queue to the backup in {took:.2f} s = "
        f"{res['docs_per_s']:.0f} docs/s (other {res['cpu']['other']:.2f} cores)")
    return res


def replay_phase():
    out = {"docs": REPLAY_DOCS, "batch": REPLAY_BATCH, "fill_bulk_docs": DOCS_PER_BULK, "rounds": []}
    assert replication(GW2_ADMIN)["paused"], "gateway B must start paused"
    # Warm the backup's JIT (the primary's is warm by now).
    create_index(OS_, "bench-os-warmup")
    send_bulks(OS_, "/bench-os-warmup/_bulk",
               [bulk_body(range(s, s + 1000)) for s in range(0, 30000, 1000)], 1)
    delete_index(OS_, "bench-os-warmup")
    fill_bodies = [bulk_body(range(s, min(s + DOCS_PER_BULK, REPLAY_DOCS)))
                   for s in range(0, REPLAY_DOCS, DOCS_PER_BULK)]
    for r in range(REPLAY_ROUNDS):
        index = f"bench-replay-{r}"
        create_index(ES, index)
        create_index(OS_, index)
        took = send_bulks(GW2, f"/{index}/_bulk", fill_bodies, FILL_CONNS)
        st = replication(GW2_ADMIN)
        queued = st["replayer"]["lag_records"]
        log(f"replay round {r}: {REPLAY_DOCS} docs through gateway B (replay paused) in {took:.1f} s; "
            f"queue lag {queued} records, {st['queue']['bytes'] / 1e6:.1f} MB")
        assert queued == REPLAY_DOCS, f"queue lag {queued}, expected {REPLAY_DOCS}"
        rnd = {"fill_seconds": took, "queue_bytes": st["queue"]["bytes"]}
        # Alternate which goes first, so drift hits both alike.
        if r % 2 == 0:
            rnd["baseline"] = baseline_bulk(f"bench-replay-direct-{r}")
            rnd["replay"] = replay_once(index)
        else:
            rnd["replay"] = replay_once(index)
            rnd["baseline"] = baseline_bulk(f"bench-replay-direct-{r}")
        rnd["ratio"] = rnd["replay"]["docs_per_s"] / rnd["baseline"]["docs_per_s"]
        out["rounds"].append(rnd)
        delete_index(ES, index)
        delete_index(OS_, index)
    return out


def live_phase():
    """Bulk writes through gateway B with its replayer running, next to nginx
    runs of the same shape (alternating order). Before each gateway run the
    replayer has caught up."""
    call(GW2_ADMIN, "POST", "/replication/resume")
    runs = []
    for r in range(LIVE_ROUNDS):
        order = [("nginx", NGINX), ("gateway+replay", GW2)]
        if r % 2:
            order.reverse()
        for path, url in order:
            if path == "nginx":
                res = bulk_run(path, url, CONNS, DURATION, f"live-nginx-{r}", guard=False)
            else:
                res = bulk_run(path, url, CONNS, DURATION, f"live-gw-{r}", guard=False,
                               after=lambda: lag(GW2_ADMIN))
                res["lag_at_end"] = res["after"]
                started = time.monotonic()
                while lag(GW2_ADMIN) > 0 and time.monotonic() - started < 300:
                    time.sleep(0.05)
                res["drain_seconds_after"] = time.monotonic() - started
                log(f"live: replay lag {res['lag_at_end']} records when the run ended, "
                    f"drained {res['drain_seconds_after']:.1f} s later")
                delete_index(OS_, f"bench-bulk-live-gw-{r}")
            res["round"] = r
            runs.append(res)
    return runs


def rss_kib(pid):
    """Resident set and its peak (VmRSS, VmHWM) of a process, KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                out[key] = int(value.split()[0])
    return out


def memory_phase():
    """Mixed load on gateway A: MEMORY_CONNS connections at once, nine in
    ten reading and one in ten sending `_bulk`, for DURATION seconds; the
    gateway's RSS is sampled every 0.2 s."""
    conns = int(ENV.get("BENCH_MEMORY_CONNECTIONS", "200"))
    bulk_conns = max(1, conns // 10)
    pid = int(ENV["BENCH_GW_PID"])
    before = rss_kib(pid)
    index = "bench-bulk-memory"
    create_index(ES, index)
    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            samples.append(rss_kib(pid)["VmRSS"])
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    results = {}

    def load(name, script, n, args):
        results[name] = wrk(script, GW, n, DURATION, args)

    runners = [threading.Thread(target=load, args=("read", "read.lua", conns - bulk_conns,
                                                   ["bench-read", READ_DOCS])),
               threading.Thread(target=load, args=("bulk", "bulk.lua", bulk_conns,
                                                   [index, DOCS_PER_BULK, DOC_BYTES, "mem"]))]
    for t in runners:
        t.start()
    for t in runners:
        t.join()
    stop.set()
    sampler.join()
    after = rss_kib(pid)
    delete_index(ES, index)
    out = {"connections": conns, "bulk_connections": bulk_conns, "rss_before_kib": before["VmRSS"],
           "rss_peak_kib": max(samples + [after["VmRSS"]]), "hwm_kib": after["VmHWM"],
           "rss_after_kib": after["VmRSS"],
           "read_rps": results["read"]["rps"], "bulk_rps": results["bulk"]["rps"],
           "failed": results["read"]["bad"] + results["bulk"]["bad"]}
    log(f"memory: {conns} connections, gateway RSS {out['rss_before_kib'] // 1024} MiB before, "
        f"peak {out['rss_peak_kib'] // 1024} MiB (VmHWM {out['hwm_kib'] // 1024} MiB)")
    return out


def queue_bench_rows(text):
    """Parses `cargo bench --bench queue` output (possibly several runs)."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^((?:raw|queue), [^\d]*?(\d+)?[^\d]*?)\s+(\d+)\s+([\d.]+)\s+([\d.]+)x\s*$", line)
        if m:
            rows.setdefault(m.group(1).strip(), []).append(
                {"records_per_s": int(m.group(3)), "mb_per_s": float(m.group(4)), "vs_raw": float(m.group(5))})
    return rows


def background_load(seconds=3):
    """CPU used by processes other than ours while we are idle."""
    a = cpu_snapshot()
    time.sleep(seconds)
    return cpu_delta(a, cpu_snapshot())


# ---------------------------------------------------------- environment


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=60).stdout.strip()
    except Exception as e:  # noqa: BLE001
        return f"({e})"


def environment():
    cpu_model = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    src = sh(f"findmnt -no SOURCE,FSTYPE --target {DIR}")
    dev = os.path.basename(src.split()[0]) if src else ""
    base_dev = re.sub(r"p?\d+$", "", dev) if not os.path.exists(f"/sys/block/{dev}") else dev
    rot = sh(f"cat /sys/block/{base_dev}/queue/rotational 2>/dev/null")
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "disk": f"{src} (rotational={rot or '?'}) for {DIR}",
        "es_version": call(ES, "GET", "/")["version"]["number"],
        "os_version": call(OS_, "GET", "/")["version"]["number"],
        "nginx": sh("nginx -v 2>&1"),
        "wrk": sh("wrk -v 2>&1 | head -1"),
        "java": sh("java -version 2>&1 | head -1"),
        "rustc": sh("rustc -V"),
        "git": ENV.get("BENCH_GIT_REV", "?"),
        "loadavg_at_start": sh("cat /proc/loadavg"),
        "top_cpu_at_start": sh("ps -eo pcpu,comm --sort=-pcpu | head -6 | tail -5 | tr -s ' ' | paste -sd ';'"),
    }


# --------------------------------------------------------------- report


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def ratio_text(xs):
    """Median of paired per-round ratios, with the range when there are
    several rounds."""
    if len(xs) == 1:
        return f"{xs[0]:.2f}×"
    return f"{median(xs):.2f}× ({min(xs):.2f}–{max(xs):.2f})"


def fmt_us(us):
    return f"{us / 1000:.2f} ms" if abs(us) >= 1000 else f"{us:.0f} µs"


def proxy_cores(path, cpu):
    return cpu["nginx"] if path == "nginx" else cpu["gateway"] if path.startswith("gateway") else 0.0


def summarize(runs):
    """Per path: throughput over all rounds, median latencies, paired
    per-round ratios (same round = adjacent in time) and CPU."""
    paths = [p for p, _ in PATHS]
    by_round = {}
    for r in runs:
        by_round.setdefault(r["round"], {})[r["path"]] = r
    out = {}
    for p in paths:
        rs = [r for r in runs if r["path"] == p]
        req = sum(r["requests"] for r in rs)
        secs = sum(r["duration_us"] for r in rs) / 1e6
        cpu = {k: sum(r["cpu"][k] for r in rs) / len(rs) for k in rs[0]["cpu"]}
        out[p] = {
            "rps": req / secs,
            "p50": median([r["latency_us"]["p50"] for r in rs]),
            "p99": median([r["latency_us"]["p99"] for r in rs]),
            "rounds": [r["rps"] for r in rs],
            "cpu": cpu,
            # CPU time the proxy spends per request, µs (noise-independent)
            "proxy_us_per_req": median([proxy_cores(p, r["cpu"]) / r["rps"] * 1e6 for r in rs]),
            "es_us_per_req": median([r["cpu"]["es"] / r["rps"] * 1e6 for r in rs]),
            "failed": sum(r["bad"] for r in rs),
            "discarded": sum(r.get("discarded", 0) for r in rs),
            "noisy": sum(1 for r in rs if r.get("noisy")),
        }
        for q in paths:
            pairs = [(rd[p], rd[q]) for rd in by_round.values() if p in rd and q in rd]
            out[p][f"vs_{q}"] = [x["rps"] / y["rps"] for x, y in pairs]
            out[p][f"added_p50_vs_{q}"] = median([x["latency_us"]["p50"] - y["latency_us"]["p50"] for x, y in pairs])
            out[p][f"added_p99_vs_{q}"] = median([x["latency_us"]["p99"] - y["latency_us"]["p99"] for x, y in pairs])
            if q == "nginx" and p != "direct":
                out[p]["cpu_vs_nginx"] = [
                    (proxy_cores(p, x["cpu"]) / x["rps"]) / (proxy_cores(q, y["cpu"]) / y["rps"])
                    for x, y in pairs if proxy_cores(q, y["cpu"]) > 0]
    return out


def table(runs, docs):
    a = summarize(runs)
    head = ("| path | req/s | " + ("docs/s | " if docs else "") +
            "p50 | p99 | vs nginx | vs direct | req/s per round | proxy CPU per request | "
            "CPU cores: search node / proxy / wrk / irq / other | failed | redone (still noisy) |")
    rows = [head, "|---|---:|" + ("---:|" if docs else "") + "---:|---:|---:|---:|---|---:|---|---:|---:|"]
    for p, _ in PATHS:
        x, c = a[p], a[p]["cpu"]
        rows.append(
            f"| {p} | {x['rps']:.0f} | " + (f"{x['rps'] * DOCS_PER_BULK:.0f} | " if docs else "") +
            f"{fmt_us(x['p50'])} | {fmt_us(x['p99'])} | {ratio_text(x['vs_nginx'])} | {ratio_text(x['vs_direct'])} | "
            f"{', '.join(f'{v:.0f}' for v in x['rounds'])} | "
            + (f"{x['proxy_us_per_req']:.0f} µs" if p != "direct" else "—") + " | "
            f"{c['es']:.2f} / {proxy_cores(p, c):.2f} / {c['loadgen']:.2f} / {c['irq']:.2f} / {c['other']:.2f} | "
            f"{x['failed']} | {x['discarded']} ({x['noisy']}) |")
    g = a["gateway"]
    added = (f"Added latency of the gateway (median over rounds of the per-round difference): "
             f"p50 {fmt_us(g['added_p50_vs_direct'])} vs direct, {fmt_us(g['added_p50_vs_nginx'])} vs nginx; "
             f"p99 {fmt_us(g['added_p99_vs_direct'])} vs direct, {fmt_us(g['added_p99_vs_nginx'])} vs nginx. "
             f"Added by nginx: p50 {fmt_us(a['nginx']['added_p50_vs_direct'])}, "
             f"p99 {fmt_us(a['nginx']['added_p99_vs_direct'])} vs direct. "
             f"Proxy CPU per request, gateway vs nginx (per-round pairs): "
             + (ratio_text(g["cpu_vs_nginx"]) if g.get("cpu_vs_nginx") else "—") + ".")
    return "\n".join(rows), added, a


def report(res):
    env = res["env"]
    bg = env["background_load"]
    out = [f"## Results ({env['date']})", "",
           f"Machine: {env['nproc']} cores ({env['cpu_model']}), {env['mem_gib']} GiB, kernel {env['kernel']}; "
           f"disk {env['disk']}. Elasticsearch {env['es_version']} (primary), OpenSearch {env['os_version']} "
           f"(backup), {env['nginx']}, {env['wrk']}, {env['java']}, {env['rustc']}. "
           f"Gateway built from: {env['git']}.", "",
           f"Background load before the first run (our processes idle): {bg['other']:.2f} cores used by "
           f"other processes; load average {env['loadavg_at_start']}.", "",
           f"Settings: `{json.dumps(res['settings'])}`", ""]
    titles = {
        "bulk": f"Bulk writes, {CONNS} connections: {DOCS_PER_BULK} docs × ~{DOC_BYTES} B per `_bulk`, "
                f"{DURATION} s per run after {WARMUP} s warm-up, {ROUNDS} rounds",
        "bulk1": f"Bulk writes, 1 connection (unloaded latency): {LAT_DURATION} s per run, {LAT_ROUNDS} rounds",
        "read": f"Reads `GET /{{index}}/_doc/{{id}}`, {CONNS} connections: {DURATION} s per run, {ROUNDS} rounds",
        "read1": f"Reads `GET /{{index}}/_doc/{{id}}`, 1 connection: {LAT_DURATION} s per run, {LAT_ROUNDS} rounds",
    }
    for key, docs in (("bulk", True), ("bulk1", True), ("read", False), ("read1", False)):
        if key in res:
            t, added, _ = table(res[key], docs)
            out += [f"### {titles[key]}", "", t, "", added, ""]
    if "replay" in res:
        r = res["replay"]
        rounds = r["rounds"]
        out += ["### Replay throughput", "",
                f"Per round: {r['docs']} docs written through gateway B with replay paused "
                f"(`_bulk` of {r['fill_bulk_docs']}), then the replayer resumed and timed until "
                f"`replayer.lag_records == 0`; baseline: the same docs in `_bulk` requests of {r['batch']} on "
                "one connection straight into an empty backup index (the order alternates per round).", "",
                "| round | fill through gateway | queue | baseline docs/s | replay docs/s | ratio | "
                "CPU cores during replay: backup / gateway / other | during baseline: backup / other | "
                "gateway CPU per replayed doc |",
                "|---:|---:|---:|---:|---:|---:|---|---|---:|"]
        for i, x in enumerate(rounds):
            c, cb = x["replay"]["cpu"], x["baseline"]["cpu"]
            out.append(f"| {i} | {x['fill_seconds']:.1f} s | {x['queue_bytes'] / 1e6:.1f} MB | "
                       f"{x['baseline']['docs_per_s']:.0f} | {x['replay']['docs_per_s']:.0f} | {x['ratio']:.2f}× | "
                       f"{c['os']:.2f} / {c['gateway']:.2f} / {c['other']:.2f} | {cb['os']:.2f} / {cb['other']:.2f} | "
                       f"{c['gateway'] / x['replay']['docs_per_s'] * 1e6:.1f} µs |")
        out += ["", f"Replay vs baseline: {ratio_text([x['ratio'] for x in rounds])} "
                    f"(median of the per-round ratios); replay "
                    f"{median([x['replay']['docs_per_s'] for x in rounds]):.0f} docs/s, baseline "
                    f"{median([x['baseline']['docs_per_s'] for x in rounds]):.0f} docs/s (medians).", ""]
    if "memory" in res:
        m = res["memory"]
        out += ["### Gateway memory under mixed load", "",
                f"{m['connections']} connections to gateway A for {DURATION} s: {m['connections'] - m['bulk_connections']} "
                f"reading ({m['read_rps']:.0f} req/s) and {m['bulk_connections']} sending `_bulk` "
                f"({m['bulk_rps']:.0f} req/s), {m['failed']} failed. Gateway RSS: {m['rss_before_kib'] / 1024:.1f} MiB "
                f"before, peak {m['rss_peak_kib'] / 1024:.1f} MiB sampled every 0.2 s (VmHWM "
                f"{m['hwm_kib'] / 1024:.1f} MiB since start), {m['rss_after_kib'] / 1024:.1f} MiB after.", ""]
    if "live" in res:
        runs = res["live"]
        out += ["### Bulk writes with replay running", "",
                "| round | path | req/s | docs/s | p50 | p99 | CPU cores: ES / OS / proxy / wrk / irq / other | "
                "replay lag at end | drained after |",
                "|---:|---|---:|---:|---:|---:|---|---:|---:|"]
        for x in runs:
            c = x["cpu"]
            out.append(f"| {x['round']} | {x['path']} | {x['rps']:.0f} | {x['docs_per_s']:.0f} | "
                       f"{fmt_us(x['latency_us']['p50'])} | {fmt_us(x['latency_us']['p99'])} | "
                       f"{c['es']:.2f} / {c['os']:.2f} / {proxy_cores(x['path'], c):.2f} / {c['loadgen']:.2f} / "
                       f"{c['irq']:.2f} / {c['other']:.2f} | "
                       + (f"{x['lag_at_end']} | {x['drain_seconds_after']:.1f} s |" if "lag_at_end" in x else "— | — |"))
        ratios = []
        for r in range(LIVE_ROUNDS):
            n = [x for x in runs if x["round"] == r and x["path"] == "nginx"]
            g = [x for x in runs if x["round"] == r and x["path"] != "nginx"]
            if n and g:
                ratios.append(g[0]["rps"] / n[0]["rps"])
        out += ["", f"Gateway with replay running vs nginx: {ratio_text(ratios)}.", ""]
    if res.get("queue_bench"):
        rows = queue_bench_rows(res["queue_bench"])
        out += ["### Queue append vs raw sequential write + fdatasync (`cargo bench --bench queue`)", "",
                "| row | records/s per run | median | vs raw (per run) | median vs raw |",
                "|---|---|---:|---|---:|"]
        for name, xs in rows.items():
            out.append(f"| {name} | {', '.join(str(x['records_per_s']) for x in xs)} | "
                       f"{median([x['records_per_s'] for x in xs]):.0f} | "
                       f"{', '.join('%.2f' % x['vs_raw'] for x in xs)} | {median([x['vs_raw'] for x in xs]):.2f}× |")
        out += ["", "Raw output:", "", "```text", res["queue_bench"].strip(), "```", ""]
    return "\n".join(out)


def main():
    started = time.monotonic()
    res = {"settings": {
        "duration_s": DURATION, "warmup_s": WARMUP, "connections": CONNS, "wrk_threads": THREADS,
        "rounds": ROUNDS, "latency_run_s": LAT_DURATION, "latency_rounds": LAT_ROUNDS,
        "docs_per_bulk": DOCS_PER_BULK, "doc_bytes": DOC_BYTES, "read_docs": READ_DOCS,
        "replay_docs": REPLAY_DOCS, "replay_batch": REPLAY_BATCH, "replay_rounds": REPLAY_ROUNDS,
        "live_rounds": LIVE_ROUNDS, "max_other_cores": MAX_OTHER, "retry_budget": RETRY_BUDGET,
        "gateway_threads": ENV.get("BENCH_GATEWAY_THREADS"),
        "nginx_workers": ENV.get("BENCH_NGINX_WORKERS"), "search_heap": ENV.get("BENCH_SEARCH_HEAP")}}
    res["env"] = environment()
    res["env"]["background_load"] = background_load()
    log(f"environment: {json.dumps(res['env'])}")
    out_json = os.path.join(DIR, "results.json")

    def save():
        with open(out_json, "w") as f:
            json.dump(res, f, indent=1)

    if GLOBAL_WARMUP > 0:
        # JIT and caches of the node, nginx and the gateways before any
        # measured run (each run still has its own warm-up).
        log(f"global warm-up: {GLOBAL_WARMUP} s of bulk writes and {GLOBAL_WARMUP // 2} s of reads per path")
        create_index(ES, "bench-warmup")
        for path, url in PATHS:
            wrk("bulk.lua", url, CONNS, GLOBAL_WARMUP, ["bench-warmup", DOCS_PER_BULK, DOC_BYTES, f"gw-{path}"])
        delete_index(ES, "bench-warmup")
    if "bulk" in PHASES:
        res["bulk"] = rounds_of(lambda p, u, r: bulk_run(p, u, CONNS, DURATION, f"{p}-c{CONNS}-r{r}"), ROUNDS)
        save()
    if "bulk1" in PHASES:
        res["bulk1"] = rounds_of(lambda p, u, r: bulk_run(p, u, 1, LAT_DURATION, f"{p}-c1-r{r}", warmup=2),
                                 LAT_ROUNDS)
        save()
    if "read" in PHASES or "read1" in PHASES:
        preload_reads()
        if GLOBAL_WARMUP > 0:
            for path, url in PATHS:
                wrk("read.lua", url, CONNS, max(1, GLOBAL_WARMUP // 2), ["bench-read", READ_DOCS])
        if "read" in PHASES:
            res["read"] = rounds_of(lambda p, u, r: read_run(p, u, CONNS, DURATION), ROUNDS)
            save()
        if "read1" in PHASES:
            res["read1"] = rounds_of(lambda p, u, r: read_run(p, u, 1, LAT_DURATION, warmup=2), LAT_ROUNDS)
            save()
        if "memory" in PHASES:
            res["memory"] = memory_phase()
            save()
        delete_index(ES, "bench-read")
    if "replay" in PHASES:
        res["replay"] = replay_phase()
        save()
    if "live" in PHASES:
        res["live"] = live_phase()
        save()
    qb = os.path.join(DIR, "queue-bench.txt")
    if os.path.exists(qb):
        with open(qb) as f:
            res["queue_bench"] = f.read()
    res["measure_seconds"] = time.monotonic() - started
    save()
    md = report(res)
    with open(os.path.join(DIR, "report.md"), "w") as f:
        f.write(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
