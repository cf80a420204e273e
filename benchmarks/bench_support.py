"""What the benchmarks that serve the champion share: its check, a free port, and the daemons they
start and stop (`ragops serve`, `ragops deploy`, a Prefect server). Imported by the scripts beside it
(`python benchmarks/<name>.py` puts this folder on the path)."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

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


def golden_questions(curated: Path) -> list[str]:
    """The golden set's questions, from `curated` (RAW_GOLDEN when it is not curated yet)."""
    path = curated if curated.exists() else RAW_GOLDEN
    return [json.loads(line)["question"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def cpu_model() -> str:
    """The CPU's model name (every figure is quoted with the machine it was measured on)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()
