"""The `ragops` CLI as a user runs it in a project: its own RAGOPS_HOME (.ragops), a wide console,
and a Prefect server that is already running (PREFECT_API_URL), as in docs/operations.md's server mode;
or, where a test asks for it, the temporary Prefect server a user's plain `ragops run` starts.

The running server is one per pytest process, started at its first use: a temporary server is
started and stopped by every command (about 6 s of a 33-s tiny reindex on a 2-core AMD EPYC).
The temporary server keeps being checked where it matters: the tiny champion's run and the trained
e2e run (what `make run` does), the secrets test (which greps that server's database) and the
killed training (a SIGKILLed run would hold the running server's concurrency slot until its lease
expired; the temporary server dies with the run)."""

from __future__ import annotations

import atexit
import functools
import os
import subprocess
import tempfile
from pathlib import Path

from tests.support.processes import free_port, start_prefect_server
from tests.support.project import BIN

RAGOPS = str(BIN / "ragops")


@functools.cache
def shared_prefect_api() -> str:
    """The API URL of this pytest process's Prefect server (`prefect server start`, leases on disk),
    started on first use and stopped at exit."""
    folder = Path(tempfile.mkdtemp(prefix="ragops-test-prefect-server-"))
    port = free_port()
    server = start_prefect_server(folder / "home", port, folder / "prefect-server.log")
    atexit.register(server.stop)
    return f"http://127.0.0.1:{port}/api"


def ragops_env(repo: Path, env: dict | None = None, temporary_prefect: bool = False) -> dict:
    """The environment of a `ragops` command in `repo`; `env` overrides (a test's own PREFECT_API_URL
    included)."""
    full = {**os.environ, "RAGOPS_HOME": str(repo / ".ragops"), "COLUMNS": "200"}
    full.pop("PREFECT_API_URL", None)
    if not temporary_prefect and "PREFECT_API_URL" not in (env or {}):
        full["PREFECT_API_URL"] = shared_prefect_api()
    return {**full, **(env or {})}


def ragops(repo: Path, *args: str, env: dict | None = None, timeout: int = 1800,
           temporary_prefect: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run([RAGOPS, *args], cwd=repo, env=ragops_env(repo, env, temporary_prefect), capture_output=True,
                          text=True, timeout=timeout)


def output(run: subprocess.CompletedProcess) -> str:
    return run.stdout + run.stderr


def said(run: subprocess.CompletedProcess) -> str:
    """The run's output with the console's line wrapping undone (Prefect logs prints to stderr, wrapped)."""
    return " ".join(output(run).split())


def succeeded(run: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """The run, once asserted to have exited 0 (its output's tail otherwise)."""
    assert run.returncode == 0, output(run)[-4000:]
    return run
