"""The `ragops` CLI as a user runs it in a project: its own RAGOPS_HOME (.ragops), its own
temporary Prefect server unless the test gives a PREFECT_API_URL, a wide console."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.project import BIN

RAGOPS = str(BIN / "ragops")


def ragops_env(repo: Path, env: dict | None = None) -> dict:
    full = {**os.environ, "RAGOPS_HOME": str(repo / ".ragops"), "COLUMNS": "200"}
    full.pop("PREFECT_API_URL", None)  # a user's run starts its own temporary Prefect server
    return {**full, **(env or {})}


def ragops(repo: Path, *args: str, env: dict | None = None, timeout: int = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([RAGOPS, *args], cwd=repo, env=ragops_env(repo, env), capture_output=True, text=True,
                          timeout=timeout)


def output(run: subprocess.CompletedProcess) -> str:
    return run.stdout + run.stderr


def said(run: subprocess.CompletedProcess) -> str:
    """The run's output with the console's line wrapping undone (Prefect logs prints to stderr, wrapped)."""
    return " ".join(output(run).split())


def succeeded(run: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """The run, once asserted to have exited 0 (its output's tail otherwise)."""
    assert run.returncode == 0, output(run)[-4000:]
    return run
