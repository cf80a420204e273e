"""Freshness end to end: from a document's price edit to the first served answer that states the new price.

    make run   # first: the benchmark edits the demo catalog of an existing champion (RAGOPS_HOME, .ragops)
    .venv/bin/python benchmarks/freshness.py --edits 10 > freshness.json

Starts a Prefect server (its own, in a temporary folder; or PREFECT_API_URL's), `ragops deploy` (the
documents watcher and the reindex deployment) and `ragops serve`, then edits one document's price
`--edits` times, one at a time: after each write it waits until `ragops serve` answers the price
question with the new price, and measures that time. Where the time goes comes from the Prefect API
(the reindex run's start and its tasks) and from `/readyz` (when the server switched bundles). At
the end the document's original text is written back and that reindex is waited for too (not
measured), so the catalog is left as it was found. Prints one JSON object; the machine is shared
and noisy, so quote figures from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import yaml

from bench_support import emit, free_port, require_champion, start_daemon, stop_daemon
from components.config import load_params
from components.settings import Settings

BIN = Path(sys.executable).parent
DEPLOYMENT = "ragops-reindex/on-document-change"


def _wait(what: str, check, timeout_s: float, processes: dict[str, tuple[subprocess.Popen, Path]]):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for name, (process, log) in processes.items():
            if process.poll() is not None:
                sys.exit(f"{name} exited with code {process.returncode} while waiting for {what}; "
                         f"its log ({log}) ends:\n{log.read_text()[-3000:]}")
        try:
            found = check()
        except httpx.HTTPError:
            found = None  # not listening yet
        if found:
            return found
        time.sleep(0.25)
    sys.exit(f"gave up waiting for {what} after {timeout_s:.0f} s")


def _when(text: str | None) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else float("nan")


def _reindex_run(api: str, after: float) -> dict | None:
    """The first reindex run of the deployment that started after `after` (epoch seconds) and ended."""
    found = httpx.get(f"{api}/deployments/name/{DEPLOYMENT}", timeout=30).json()
    runs = httpx.post(f"{api}/flow_runs/filter", timeout=30,
                      json={"deployments": {"id": {"any_": [found["id"]]}}}).json()
    runs = sorted((r for r in runs if _when(r.get("start_time")) > after), key=lambda r: r["start_time"])
    return runs[0] if runs and runs[0]["state_type"] in ("COMPLETED", "FAILED", "CRASHED") else None


def _task_seconds(api: str, flow_run_id: str) -> dict[str, float]:
    tasks = httpx.post(f"{api}/task_runs/filter", timeout=30,
                       json={"flow_runs": {"id": {"any_": [flow_run_id]}}}).json()
    seconds: dict[str, float] = {}
    for task in tasks:
        name = task["name"].rsplit("-", 1)[0]
        seconds[name] = seconds.get(name, 0.0) + _when(task["end_time"]) - _when(task["start_time"])
    return {name: round(s, 2) for name, s in sorted(seconds.items())}


def _edit_price(doc: Path, original: str, price: str) -> None:
    head, body = original.split("---\n", 2)[1:]
    old = str(yaml.safe_load(head)["price"])
    doc.write_text(original.replace(f"price: {old}", f"price: {price}", 1)
                   .replace(f"Price: {float(old):.2f}", f"Price: {price}", 1))


def _served(client: httpx.Client, base: str, question: str, price: str) -> tuple[bool, dict]:
    answer = client.post(f"{base}/v1/answer", json={"question": question}).json()
    return price in answer.get("answer", ""), answer


def _one_edit(i: int, doc: Path, original: str, question: str, price: str, api: str, base: str,
              client: httpx.Client, processes: dict, timeout_s: float) -> dict:
    before = client.get(f"{base}/readyz").json()["version"]
    wrote = time.time()
    _edit_price(doc, original, price)
    run = _wait(f"the reindex run of edit {i}", lambda: _reindex_run(api, wrote), timeout_s, processes)
    if run["state_type"] != "COMPLETED":
        sys.exit(f"edit {i}: the reindex run {run['name']} ended {run['state_type']}: {run['state']['message']}")
    ready = _wait(f"ragops serve to load the bundle of edit {i}",
                  lambda: (lambda r: r if r["version"] != before else None)(client.get(f"{base}/readyz").json()),
                  timeout_s, processes)
    swapped = time.time()
    answers = 0
    while True:
        answers += 1
        fresh, answer = _served(client, base, question, price)
        if fresh or time.time() - wrote > timeout_s:
            break
    served = time.time()
    return {"edit": i, "price": price, "seconds": round(served - wrote, 2), "fresh": fresh,
            "bundle_version": ready["version"], "answer": answer.get("answer", ""), "answers_asked": answers,
            "write_to_run_start": round(_when(run["start_time"]) - wrote, 2),
            "run": round(_when(run["end_time"]) - _when(run["start_time"]), 2),
            "run_end_to_serve_swap": round(swapped - _when(run["end_time"]), 2),
            "swap_to_answer": round(served - swapped, 2), "tasks": _task_seconds(api, run["id"])}


def _summary(rows: list[dict]) -> dict:
    seconds = [r["seconds"] for r in rows]
    parts = ["write_to_run_start", "run", "run_end_to_serve_swap", "swap_to_answer"]
    tasks = sorted({t for r in rows for t in r["tasks"]})
    return {"n": len(rows), "fresh": sum(r["fresh"] for r in rows),
            "p50_s": round(float(np.percentile(seconds, 50)), 1), "p95_s": round(float(np.percentile(seconds, 95)), 1),
            "max_s": round(max(seconds), 1),
            "median_parts_s": {p: round(float(np.median([r[p] for r in rows])), 2) for p in parts},
            "median_tasks_s": {t: round(float(np.median([r["tasks"].get(t, 0.0) for r in rows])), 2) for t in tasks}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edits", type=int, default=10)
    parser.add_argument("--doc", default="", help="document file to edit (default: the first with a price)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for each step")
    args = parser.parse_args()

    params = load_params(args.params)
    require_champion(params.promotion.bundle_name, Settings())
    folder = Path(params.data.raw_dir) / "documents"
    doc = Path(args.doc) if args.doc else next(p for p in sorted(folder.glob("*.md")) if "\nprice: " in p.read_text())
    original = doc.read_text()
    name = yaml.safe_load(original.split("---\n")[1]).get("name", doc.stem)
    question = f"How much does the {name} cost?"
    scratch = Path(tempfile.mkdtemp(prefix="ragops-freshness-"))
    env = {}
    processes: dict[str, tuple[subprocess.Popen, Path]] = {}
    try:
        api = os.environ.get("PREFECT_API_URL", "")
        if not api:
            port = free_port()
            api = f"http://127.0.0.1:{port}/api"
            log = scratch / "prefect-server.log"
            processes["prefect server"] = (start_daemon(
                [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)], log,
                {"PREFECT_HOME": str(scratch / "prefect"), "PREFECT_UI_ENABLED": "false",
                 "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                 "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect.server.concurrency.lease_storage.filesystem"}),
                log)
            _wait("the Prefect server", lambda: httpx.get(f"{api}/health", timeout=5).status_code == 200, 300, processes)
        env["PREFECT_API_URL"] = api
        serve_port = free_port()
        base = f"http://127.0.0.1:{serve_port}"
        for label, command in (("ragops serve", ["serve", "--port", str(serve_port)]), ("ragops deploy", ["deploy"])):
            log = scratch / f"{label.split()[1]}.log"
            processes[label] = (start_daemon([str(BIN / "ragops"), *command, "--params", str(args.params)], log, env), log)
        _wait("ragops serve to be ready", lambda: httpx.get(f"{base}/readyz", timeout=5).status_code == 200, 600,
              processes)
        _wait("the reindex deployment", lambda: httpx.get(f"{api}/deployments/name/{DEPLOYMENT}",
                                                          timeout=5).status_code == 200, 600, processes)
        time.sleep(3)  # the watcher's first snapshot
        rows = []
        with httpx.Client(timeout=300) as client:
            old_price = float(yaml.safe_load(original.split("---\n")[1])["price"])
            for i in range(1, args.edits + 1):
                price = f"{old_price + i + i / 100:.2f}"
                rows.append(_one_edit(i, doc, original, question, price, api, base, client, processes, args.timeout))
                print(json.dumps(rows[-1]), file=sys.stderr)
            restored = time.time()
            doc.write_text(original)  # back as it was; its reindex is waited for, not measured
            _wait("the reindex of the restored document", lambda: _reindex_run(api, restored), args.timeout, processes)
        emit("freshness", {"document": str(doc), "question": question,
                          "debounce_seconds": params.index.debounce_seconds,
                          "reload_poll_seconds": params.serve.reload_poll_seconds,
                          "summary": _summary(rows), "edits": rows})
    finally:
        if doc.read_text() != original:
            doc.write_text(original)
        for process, _ in reversed(list(processes.values())):
            stop_daemon(process)
        shutil.rmtree(scratch / "prefect", ignore_errors=True)


if __name__ == "__main__":
    main()
