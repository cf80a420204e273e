"""What the benchmarks that serve the champion share: its check, a free port, and the daemons they
start and stop (`ragops serve`, `ragops deploy`, a Prefect server). Imported by the scripts beside it
(`python benchmarks/<name>.py` puts this folder on the path)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import figures
import httpx

from components.config import Params, load_params
from components.registry.tracking import configure_mlflow, get_alias_version
from components.settings import Settings
from flows.process import stop_process_group


def require_champion(bundle: str, settings: Settings) -> Any:
    """The champion version of `bundle`; exits saying what to run first when there is none."""
    champion = get_alias_version(configure_mlflow(settings), bundle, "champion")
    if champion is None:
        sys.exit(f"no champion of {bundle} in {settings.tracking_uri} (RAGOPS_HOME={settings.home}); "
                 f"run `make run` first, then this benchmark")
    return champion


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_daemon(command: list[str], log_path: Path, env: dict | None = None) -> subprocess.Popen:
    """`command` in its own session (Ctrl-C in the terminal does not reach it), output to `log_path`."""
    with log_path.open("wb") as log:
        return subprocess.Popen(command, env={**os.environ, "COLUMNS": "200", **(env or {})}, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def peak_rss_gb(pid: int) -> float | None:
    """The peak resident memory of a running process (Linux: VmHWM), or None where unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 2**20, 2)
    except OSError:
        pass
    return None


def stop_daemon(process: subprocess.Popen) -> None:
    """Ctrl-C to its session, SIGKILL after 60 s."""
    stop_process_group(process)


def wait_ready(base: str, server: subprocess.Popen, log_path: Path, timeout_s: float) -> dict:
    """/readyz's body once `ragops serve` at `base` is ready; exits naming its log if it dies or times out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"ragops serve exited with code {server.returncode} before it was ready; its log "
                     f"({log_path}) ends:\n{log_path.read_text()[-3000:]}")
        try:
            ready = httpx.get(f"{base}/readyz", timeout=5)
            if ready.status_code == 200:
                return ready.json()
        except httpx.HTTPError:
            pass  # not listening yet
        time.sleep(0.2)
    sys.exit(f"ragops serve was not ready after {timeout_s:.0f} s; see {log_path}")


RAW_GOLDEN = Path("data/raw/golden.jsonl")


def champion_arguments(parser: argparse.ArgumentParser) -> None:
    """`--params` and `--golden`, the options of every benchmark that serves the champion."""
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--golden", type=Path, default=Path("data/curated/golden.jsonl"),
                        help=f"questions ({RAW_GOLDEN} when this does not exist)")


def champion_inputs(args: argparse.Namespace) -> tuple[Params, list[str]]:
    """The params of `args`, once their bundle has a champion (else exit saying what to run), and
    the golden questions."""
    params = load_params(args.params)
    require_champion(params.promotion.bundle_name, Settings())
    return params, golden_questions(args.golden)


def golden_questions(curated: Path) -> list[str]:
    """The golden set's questions, from `curated` (RAW_GOLDEN when it is not curated yet)."""
    path = curated if curated.exists() else RAW_GOLDEN
    return [json.loads(line)["question"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _cpuinfo(key: str) -> str | None:
    """The first `key: value` of /proc/cpuinfo (None where there is none)."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(key)), None)


def cpu_model() -> str:
    """The CPU's model name (every figure is quoted with the machine it was measured on)."""
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_features() -> list[str]:
    """The vector instructions that decide training and inference speed (bf16 is emulated without
    avx512_bf16 or amx_bf16, about 70x slower)."""
    flags = (_cpuinfo("flags") or "").split()
    return [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]


RESULTS = Path(__file__).resolve().parent / "results"


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=RESULTS.parent.parent, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def emit(name: str, result: dict) -> None:
    """Print a benchmark's figures as JSON and keep them as benchmarks/results/<name>.json, stamped
    with the commit (and whether the tree had changes), the CPU and the time they were measured:
    the one place the docs' figures come from (docs/benchmarks.md)."""
    changed = [line for line in _git("status", "--porcelain").splitlines() if "benchmarks/results/" not in line]
    stamped = {"benchmark": name, "commit": _git("rev-parse", "--short", "HEAD") or "unknown",
               "uncommitted_changes": bool(changed), "cpu": cpu_model(), "cpu_features": cpu_features(),
               "cores": len(os.sched_getaffinity(0)),
               "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **result}
    text = json.dumps(stamped, indent=1)
    print(text, flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(text + "\n")
    figures.write()  # docs/benchmarks.md quotes the figures from these files
