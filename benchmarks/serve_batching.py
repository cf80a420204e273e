"""Concurrent answers, batched against one at a time: two `ragops serve` processes on the same
champion, one with `serve.batch_answers` on (the default) and one with it off, each under the same
load of `--clients` clients asking /v1/answer back to back, in turns of `--seconds` (A B A B...),
so the machine's noise falls on both alike.

    make run   # first: the servers serve the champion of an existing RAGOPS_HOME (.ragops)
    .venv/bin/python benchmarks/serve_batching.py --clients 8 --seconds 30 --turns 2

Prints one JSON object: per server answers per second, latency p50 / p95, errors; the throughput
ratio and the p95 ratio (batched / one at a time). Loopback only, bounded in time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from itertools import cycle
from pathlib import Path

import httpx
import numpy as np
import yaml

from bench_support import champion_arguments, champion_inputs, emit, free_port, start_daemon, stop_daemon, wait_ready

RAGOPS = str(Path(sys.executable).parent / "ragops")


def _load(base: str, questions: list[str], clients: int, seconds: float) -> tuple[list[float], int]:
    """`clients` threads asking back to back for `seconds`: each answer's milliseconds, and errors."""
    millis, errors, stop = [], [0], time.monotonic() + seconds
    start = iter(range(clients))

    def client() -> None:
        offset = next(start)
        with httpx.Client(base_url=base, timeout=300) as http:
            for question in cycle(questions[offset:] + questions[:offset]):
                if time.monotonic() > stop:
                    return
                tic = time.perf_counter()
                reply = http.post("/v1/answer", json={"question": question})
                if reply.status_code == 200:
                    millis.append((time.perf_counter() - tic) * 1000)
                else:
                    errors[0] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return millis, errors[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30, help="length of one turn")
    parser.add_argument("--turns", type=int, default=2, help="turns per server")
    champion_arguments(parser)
    args = parser.parse_args()
    _, questions = champion_inputs(args)
    scratch = Path(tempfile.mkdtemp(prefix="ragops-serve-batching-"))
    servers = {}
    try:
        for name, batched in (("batched", True), ("one_at_a_time", False)):
            raw = yaml.safe_load(args.params.read_text()) or {}
            raw.setdefault("serve", {})["batch_answers"] = batched
            (scratch / f"{name}.yaml").write_text(yaml.safe_dump(raw))
            port = free_port()
            log = scratch / f"{name}.log"
            process = start_daemon([RAGOPS, "serve", "--port", str(port), "--params", str(scratch / f"{name}.yaml")], log)
            servers[name] = (f"http://127.0.0.1:{port}", process, log)
        for base, process, log in servers.values():
            wait_ready(base, process, log, 600)
            _load(base, questions[:2], 1, 0.1)  # first-request costs
        results = {name: {"millis": [], "errors": 0, "seconds": 0.0} for name in servers}
        for _ in range(args.turns):
            for name, (base, _, _) in servers.items():
                tic = time.monotonic()
                millis, errors = _load(base, questions, args.clients, args.seconds)
                results[name]["millis"] += millis
                results[name]["errors"] += errors
                results[name]["seconds"] += time.monotonic() - tic
    finally:
        for _, process, _ in servers.values():
            stop_daemon(process)
    report = {"clients": args.clients, "turn_seconds": args.seconds, "turns": args.turns}
    for name, r in results.items():
        report[name] = {"answers": len(r["millis"]), "errors": r["errors"],
                        "answers_per_second": round(len(r["millis"]) / r["seconds"], 2),
                        "p50_ms": round(float(np.percentile(r["millis"], 50)), 1),
                        "p95_ms": round(float(np.percentile(r["millis"], 95)), 1)}
    report["throughput_ratio"] = round(report["batched"]["answers_per_second"]
                                       / report["one_at_a_time"]["answers_per_second"], 2)
    report["p95_ratio"] = round(report["batched"]["p95_ms"] / report["one_at_a_time"]["p95_ms"], 2)
    emit("serve_batching", report)


if __name__ == "__main__":
    main()
