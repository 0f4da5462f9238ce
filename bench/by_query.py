#!/usr/bin/env python3
"""By-query replay cost: how long the backup takes to follow a
`_delete_by_query` / `_update_by_query` replayed as reconciliation (ADR 008),
against the same by-query run directly on the backup (what a re-run costs,
the baseline), in one run on the same nodes.

For each round and kind, two fresh indices get the same N documents: one
written through a replicating gateway (so both clusters hold it), one written
straight to the backup. Then:

- baseline: the by-query request sent directly to the backup, timed to its
  answer (`refresh=true`);
- tandem: the same request sent through the gateway (the primary runs it),
  timed from the client's answer until the gateway reports lag 0 and no
  pending reconciliations: the replay's cost alone.

The query matches half of the documents. Prints a markdown table.

    bench/by_query.py --primary URL --backup URL [--docs 20000] [--rounds 2]

Needs a built gateway (`cargo build --release -p tandem-gateway`; the debug
build works, slower): --gateway PATH (default: $CARGO_TARGET_DIR/release,
else debug).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path


def call(method: str, url: str, body=None, ndjson: bool = False, timeout: float = 600):
    data = None
    headers = {}
    if body is not None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        headers["content-type"] = "application/x-ndjson" if ndjson else "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status, json.loads(resp.read() or b"null")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load(url: str, index: str, docs: int) -> None:
    call("PUT", f"{url}/{index}", {"settings": {"number_of_shards": 1, "number_of_replicas": 0},
                                    "mappings": {"properties": {"n": {"type": "long"}}}})
    batch = 2000
    for start in range(0, docs, batch):
        lines = []
        for n in range(start, min(docs, start + batch)):
            lines.append(json.dumps({"index": {"_index": index, "_id": str(n)}}))
            lines.append(json.dumps({"n": n, "text": "document number %d for the by-query benchmark" % n}))
        status, answer = call("POST", f"{url}/_bulk", "\n".join(lines) + "\n", ndjson=True)
        assert status == 200 and not answer["errors"], answer
    call("POST", f"{url}/{index}/_refresh")


def drained(admin: str) -> bool:
    _, status = call("GET", f"{admin}/replication")
    return (status["replayer"] or {}).get("lag_records") == 0 and status["pending_reconciles"] == 0


def wait_drained(admin: str, limit: float = 3600) -> float:
    started = time.monotonic()
    while not drained(admin):
        if time.monotonic() - started > limit:
            raise SystemExit("the gateway did not drain")
        time.sleep(0.05)
    return time.monotonic() - started


def request(kind: str, docs: int):
    query = {"query": {"range": {"n": {"lt": docs // 2}}}}
    if kind == "delete":
        return "_delete_by_query?refresh=true&conflicts=proceed", query
    return "_update_by_query?refresh=true&conflicts=proceed", query


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--primary", required=True)
    ap.add_argument("--backup", required=True)
    ap.add_argument("--docs", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--gateway")
    args = ap.parse_args()
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/tandem/target"))
    gateway = args.gateway or next(
        str(p) for p in (target / "release/tandem-gateway", target / "debug/tandem-gateway") if p.exists())

    work = Path(tempfile.mkdtemp(prefix="tandem-byquery-"))
    port, admin_port = free_port(), free_port()
    (work / "gateway.toml").write_text(
        f'listen = "127.0.0.1:{port}"\nadmin_listen = "127.0.0.1:{admin_port}"\n'
        f'data_dir = "{work / "data"}"\n'
        f'[primary]\nurl = "{args.primary}"\n[backup]\nurl = "{args.backup}"\n'
        "[replay]\nverify_docs_per_second = 0\n")
    proc = subprocess.Popen([gateway, "--config", str(work / "gateway.toml")],
                            stdout=open(work / "gateway.log", "w"), stderr=subprocess.STDOUT)
    gw, admin = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}"
    try:
        for _ in range(200):
            try:
                call("GET", f"{admin}/replication")
                break
            except OSError:
                time.sleep(0.1)
        results: dict[str, dict[str, list[float]]] = {}
        for round_ in range(args.rounds):
            for kind in ("delete", "update"):
                path, query = request(kind, args.docs)
                base = f"bq-base-{kind}-{round_}-{os.getpid()}"
                load(args.backup, base, args.docs)
                started = time.monotonic()
                status, answer = call("POST", f"{args.backup}/{base}/{path}", query)
                baseline = time.monotonic() - started
                assert status == 200, answer
                call("DELETE", f"{args.backup}/{base}")

                index = f"bq-tandem-{kind}-{round_}-{os.getpid()}"
                load(gw, index, args.docs)
                wait_drained(admin)
                status, answer = call("POST", f"{gw}/{index}/{path}", query)
                assert status == 200, answer
                replay = wait_drained(admin)
                for cluster in (args.primary, args.backup):
                    call("POST", f"{cluster}/{index}/_refresh")
                counts = [call("GET", f"{c}/{index}/_count")[1]["count"] for c in (args.primary, args.backup)]
                assert counts[0] == counts[1], f"{index}: counts differ {counts}"
                for cluster in (args.primary, args.backup):
                    call("DELETE", f"{cluster}/{index}")
                r = results.setdefault(kind, {"baseline": [], "replay": []})
                r["baseline"].append(baseline)
                r["replay"].append(replay)
                print(f"round {round_ + 1} {kind}: re-run on the backup {baseline:.2f} s, "
                      f"reconciling replay {replay:.2f} s", flush=True)
        matched = args.docs // 2
        print(f"\n{args.docs} documents, the query matches {matched}; medians of {args.rounds} rounds\n")
        print("| by-query | re-run on the backup (baseline) | replay as reconciliation | ratio | docs/s replayed |")
        print("|---|---:|---:|---:|---:|")
        for kind, r in results.items():
            b, t = statistics.median(r["baseline"]), statistics.median(r["replay"])
            print(f"| `_{kind}_by_query` | {b:.2f} s | {t:.2f} s | {t / b:.2f}x | {matched / t:,.0f} |")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
