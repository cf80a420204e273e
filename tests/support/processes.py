"""Servers and daemons as processes: started in their own session with their log in a file,
waited for until they answer, stopped with their whole process group."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from flows.process import stop_process_group
from tests.support.project import BIN


def free_port() -> int:
    """A loopback port free right now (for a server a test starts as a subprocess)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate, timeout: float, what: str, interval: float = 1.0):
    """The first truthy value of predicate(), polled until `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class Server:
    """A server subprocess (own session, log to a file), returned once `health_url` answers 200."""

    def __init__(self, command: list[str], env: dict, log_path: Path, health_url: str, what: str):
        self.log_path = log_path
        with log_path.open("ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

        def healthy() -> bool:
            assert self.process.poll() is None, f"{what} exited: " + log_path.read_text(errors="replace")[-3000:]
            try:
                return httpx.get(health_url, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 300, what)

    def stop(self) -> None:
        """SIGTERM to the process group (SIGKILL after 60 s)."""
        stop_process_group(self.process, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown hook runs, in-memory state is lost."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


# With Prefect's default in-memory lease storage a restarted server forgets the leases of running
# flow runs and their global-concurrency slots stay taken for good (docs/operations.md, server mode).
LEASES_ON_DISK = {"PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect.server.concurrency.lease_storage.filesystem"}


def start_prefect_server(home: Path, port: int, log_path: Path, database_url: str | None = None) -> Server:
    """`prefect server start` on `port`, its leases in `home` and its database there (SQLite) or at
    `database_url` (postgresql+asyncpg://...); the same on a restart."""
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_UI_ENABLED": "false",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **LEASES_ON_DISK,
           **({"PREFECT_SERVER_DATABASE_CONNECTION_URL": database_url} if database_url else {})}
    return Server([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)], env,
                  log_path, f"http://127.0.0.1:{port}/api/health", "the Prefect server")


def start_mlflow_server(store: Path, log_path: Path, app: str | None = None, env: dict | None = None,
                        database: Path | None = None, backend_uri: str | None = None,
                        artifacts: str | None = None) -> tuple[Server, str]:
    """`mlflow server` on a free loopback port with a SQL backend store (`backend_uri`, e.g.
    postgresql+psycopg2://...; else SQLite at `database`, by default a new one in `store`) and
    proxied artifacts (`artifacts`, e.g. s3://bucket/prefix; else under `store`), optionally
    another app (e.g. basic-auth); returns it and its URI."""
    store.mkdir(parents=True, exist_ok=True)
    port = free_port()
    backend_uri = backend_uri or f"sqlite:///{database or store / 'mlflow.db'}"
    command = [str(BIN / "mlflow"), "server", *(["--app-name", app] if app else []), "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1", "--backend-store-uri", backend_uri,
               "--artifacts-destination", artifacts or str(store / "artifacts")]
    uri = f"http://127.0.0.1:{port}"
    # As docs/operations.md's server mode runs it: without MLflow's job execution (a job runner and seven
    # huey consumer processes, ~24 s of CPU and ~2 GB at each start, for server-side jobs ragops
    # never submits).
    full = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or {})}
    return Server(command, full, log_path, f"{uri}/health", f"the MLflow server ({app or 'tracking'})"), uri


def start_daemon(command: list[str], cwd: Path, env: dict, log_path: Path) -> subprocess.Popen:
    """A long-running command (own session, output to `log_path`), as a user starts it in a terminal."""
    with log_path.open("wb") as log:  # the child keeps its own descriptor
        # Unbuffered: the log holds everything up to the moment a test reads it, in order.
        return subprocess.Popen(command, cwd=cwd, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop_daemon(process: subprocess.Popen, log_path: Path) -> None:
    """Ctrl-C (SIGKILL after 60 s), then its log's tail into the test output."""
    stop_process_group(process)
    print(f"--- {log_path.name}\n{log_path.read_text(errors='replace')[-4000:]}")


@contextlib.contextmanager
def command_lines_watched(needles: dict[str, bytes]) -> Iterator[list[str]]:
    """Every process's command line (what any local user sees in `ps`), sampled every 50 ms while
    the block runs; yields the list of "<needle name>: <command line>" hits, filled on exit."""
    hits: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for path in Path("/proc").glob("[0-9]*/cmdline"):
                with contextlib.suppress(OSError):
                    line = path.read_bytes()
                    shown = line.replace(b"\0", b" ").decode(errors="replace")[:300]
                    hits.extend(f"{name}: {shown}" for name, needle in needles.items() if needle in line)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, name="command-line-watch", daemon=True)
    watcher.start()
    try:
        yield hits
    finally:
        done.set()
        watcher.join(timeout=30)
