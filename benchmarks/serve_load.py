"""`ragops serve` under load, with keys: `--clients` clients for `--seconds` mixing answers,
retrievals, feedback and bad requests, the champion moved back (`ragops rollback`) halfway and
forward again (`ragops promote`) after. Every request must be answered or refused with one of
401 / 413 / 415 / 422 / 429 / 503: no other 5xx, no dropped connection.

    make run   # first, and a champion with one before it (a reindex or a second run)
    .venv/bin/python benchmarks/serve_load.py --clients 32 --seconds 120 > load.json

Loopback only, bounded in count (clients) and time. The server gets a key file of its own (one
key with answer and feedback scopes for every eight clients; the mix sends a wrong key too).
Prints one JSON object: per endpoint the count, statuses, p50 / p95 / p99 ms of the answered (200) and requests per
second; transport errors; the swap (versions before and after, when /readyz showed it). Clients
wait as Retry-After says after a 429 or 503; eight clients share a key.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import numpy as np

from bench_support import champion_arguments, champion_inputs, emit, free_port, start_daemon, stop_daemon, wait_ready

BIN = Path(sys.executable).parent
ALLOWED = {200, 401, 413, 415, 422, 429, 503}
MIX = (("answer", 0.35), ("retrieve", 0.3), ("feedback", 0.1), ("bad", 0.25))
CLIENTS_PER_KEY = 8  # each key has its own rate limit (serve.rate_limit_*)


def _request(http: httpx.Client, kind: str, question: str, traces: list[str], rng: random.Random) -> tuple[str, httpx.Response]:
    """One request of the mix: (what it was, the reply)."""
    if kind == "answer":
        reply = http.post("/v1/answer", json={"question": question})
        if reply.status_code == 200 and reply.json().get("trace_id"):
            traces.append(reply.json()["trace_id"])
        return "answer", reply
    if kind == "retrieve":
        return "retrieve", http.post("/v1/retrieve", json={"question": question})
    if kind == "feedback" and traces:
        return "feedback", http.post("/v1/feedback", json={"trace_id": rng.choice(traces), "rating": "up"})
    bad = rng.choice(["no key", "empty", "text", "large", "unknown field"])
    if bad == "no key":
        return "bad", http.post("/v1/answer", json={"question": question}, headers={"Authorization": "Bearer rgo_wrong"})
    if bad == "text":
        return "bad", http.post("/v1/answer", content=b'{"question": "hi"}', headers={"Content-Type": "text/plain"})
    if bad == "large":
        return "bad", http.post("/v1/answer", json={"question": "x" * 1_000_000})  # over the body cap: 413
    payload = {"question": " "} if bad == "empty" else {"question": question, "top_k": 50}
    return "bad", http.post("/v1/retrieve", json=payload)


def _client(base: str, key: str, questions: list[str], stop: float, seed: int, results: list, traces: list) -> None:
    """Requests of the mix back to back; after a 429 or 503 the client waits as Retry-After says
    (at most 5 s), as a well-behaved client does."""
    rng = random.Random(seed)
    kinds, weights = zip(*MIX, strict=True)
    with httpx.Client(base_url=base, timeout=300, headers={"Authorization": f"Bearer {key}"}) as http:
        while time.monotonic() < stop:
            kind = rng.choices(kinds, weights)[0]
            tic = time.perf_counter()
            wait = 0.0
            try:
                what, reply = _request(http, kind, rng.choice(questions), traces, rng)
                status = reply.status_code
                if status in (429, 503):
                    wait = min(5.0, float(reply.headers.get("Retry-After", 1)))
            except httpx.TransportError as exc:
                what, status = kind, f"dropped: {type(exc).__name__}"
            results.append((what, status, (time.perf_counter() - tic) * 1000, time.monotonic()))
            time.sleep(wait)


def _swap(base: str, params: Path, at: float, swap: dict) -> None:
    """`ragops rollback` at `at`; when /readyz serves the version before, noted in `swap`."""
    time.sleep(max(0.0, at - time.monotonic()))
    swap["before"] = httpx.get(f"{base}/readyz", timeout=10).json()["version"]
    done = subprocess.run([str(BIN / "ragops"), "rollback", "--params", str(params)], capture_output=True, text=True)
    swap["rollback_exit"] = done.returncode
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        version = httpx.get(f"{base}/readyz", timeout=10).json().get("version")
        if version != swap["before"]:
            swap["after"], swap["served_at"] = version, time.monotonic()
            return
        time.sleep(0.5)


def _report(results: list, seconds: float) -> dict:
    by_kind: dict[str, list] = defaultdict(list)
    for what, status, millis, _ in results:
        by_kind[what].append((status, millis))
    report = {}
    for what, rows in sorted(by_kind.items()):
        ok = [m for s, m in rows if s == 200]
        report[what] = {"requests": len(rows), "statuses": dict(Counter(str(s) for s, _ in rows)),
                        "per_second": round(len(rows) / seconds, 2)}
        if ok:
            report[what] |= {f"p{q}_ms": round(float(np.percentile(ok, q)), 1) for q in (50, 95, 99)}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=120)
    champion_arguments(parser)
    args = parser.parse_args()
    _, questions = champion_inputs(args)
    scratch = Path(tempfile.mkdtemp(prefix="ragops-serve-load-"))
    env = {"RAGOPS_SERVE_KEYS": str(scratch / "keys.yaml")}
    keys = []
    for i in range((args.clients + CLIENTS_PER_KEY - 1) // CLIENTS_PER_KEY):
        made = subprocess.run([str(BIN / "ragops"), "keys", "add", f"load-{i}", "--scope", "answer", "--scope", "feedback"],
                              capture_output=True, text=True, check=True, env={**os.environ, **env})
        keys.append(made.stdout.strip().splitlines()[-1])
    port = free_port()
    base, log = f"http://127.0.0.1:{port}", scratch / "serve.log"
    server = start_daemon([str(BIN / "ragops"), "serve", "--port", str(port), "--params", str(args.params)], log, env)
    results: list = []
    traces: list[str] = []
    swap: dict = {}
    try:
        first = wait_ready(base, server, log, 600)["version"]
        start = time.monotonic()
        stop = start + args.seconds
        threads = [threading.Thread(target=_client, args=(base, keys[i // CLIENTS_PER_KEY], questions, stop, i, results,
                                                          traces)) for i in range(args.clients)]
        threads.append(threading.Thread(target=_swap, args=(base, args.params, start + args.seconds / 2, swap)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - start
        exit_code_after = server.poll()
    finally:
        stop_daemon(server)
        if swap.get("after"):  # forward again: the champion as it was
            subprocess.run([str(BIN / "ragops"), "promote", str(first), "--params", str(args.params)], capture_output=True)
    unexpected = [(w, s) for w, s, _, _ in results if s not in ALLOWED]
    emit("serve_load", {"clients": args.clients, "seconds": round(elapsed, 1), "requests": len(results),
                      "endpoints": _report(results, elapsed), "unexpected": Counter(map(str, unexpected)),
                      "server_exited_during_load": exit_code_after,
                      "swap": {k: (round(v - start, 1) if k == "served_at" else v) for k, v in swap.items()},
                      "log": str(log)})


if __name__ == "__main__":
    main()
