"""Latency of `ragops serve` over HTTP, one request at a time: route+retrieve (/v1/retrieve) and full
answers (/v1/answer) on golden questions, and how long the server takes from start to ready.

    make run   # first: the benchmark serves the champion of an existing RAGOPS_HOME (.ragops)
    .venv/bin/python benchmarks/serving_latency.py --n 100 --m 16

Prints one JSON object, with the server's peak resident memory (its own process; the Weaviate server
is another). The figures include HTTP and JSON on loopback on top of what the evaluation's
latency metrics measure in-process; the machine is shared and noisy, so compare within one run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from itertools import cycle, islice
from pathlib import Path

import httpx
import numpy as np

from bench_support import (RAW_GOLDEN, champion_arguments, champion_inputs, emit, free_port, peak_rss_gb, start_daemon,
                           stop_daemon, wait_ready)

RAGOPS = str(Path(sys.executable).parent / "ragops")


def _timed(client: httpx.Client, url: str, questions: list[str]) -> list[float]:
    millis = []
    for question in questions:
        tic = time.perf_counter()
        response = client.post(url, json={"question": question})
        millis.append((time.perf_counter() - tic) * 1000)
        response.raise_for_status()
    return millis


def _summary(millis: list[float]) -> dict:
    return {"n": len(millis), "p50_ms": round(float(np.percentile(millis, 50)), 1),
            "p95_ms": round(float(np.percentile(millis, 95)), 1), "mean_ms": round(float(np.mean(millis)), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="route+retrieve requests (/v1/retrieve)")
    parser.add_argument("--m", type=int, default=16, help="full answers (/v1/answer)")
    parser.add_argument("--port", type=int, default=0, help="port for ragops serve (0 = a free one)")
    parser.add_argument("--ready-timeout", type=float, default=600, help="seconds to wait for /readyz")
    champion_arguments(parser)
    args = parser.parse_args()
    params, questions = champion_inputs(args)
    bundle = params.promotion.bundle_name
    port = args.port or free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = Path(tempfile.mkdtemp(prefix="ragops-serving-latency-")) / "serve.log"
    tic = time.perf_counter()
    server = start_daemon([RAGOPS, "serve", "--port", str(port), "--params", str(args.params)], log_path)
    try:
        ready = wait_ready(base, server, log_path, args.ready_timeout)
        start_to_ready = time.perf_counter() - tic
        with httpx.Client(timeout=300) as client:
            _timed(client, f"{base}/v1/retrieve", questions[:1])  # the connection and first-request costs
            _timed(client, f"{base}/v1/answer", questions[:1])
            route_retrieve = _timed(client, f"{base}/v1/retrieve", list(islice(cycle(questions), args.n)))
            answers = _timed(client, f"{base}/v1/answer", list(islice(cycle(questions), args.m)))
        server_peak = peak_rss_gb(server.pid)
    finally:
        stop_daemon(server)
    emit("serving_latency", {"bundle": bundle, "bundle_version": ready["version"], "collection": ready["collection"],
                      "server_start_to_ready_s": round(start_to_ready, 1), "server_peak_rss_gb": server_peak,
                      "route_retrieve": _summary(route_retrieve), "answer": _summary(answers),
                      "questions": str(args.golden if args.golden.exists() else RAW_GOLDEN)})


if __name__ == "__main__":
    main()
