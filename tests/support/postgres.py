"""A PostgreSQL server for a test, as server mode runs MLflow and Prefect on one: the binaries of
Debian's postgresql package (`make test` installs it when they are missing), a new cluster in a
temporary folder, password authentication, listening on a loopback port only.

    with postgres_server(tmp_path / "postgres.log", ["mlflow", "prefect"]) as server:
        server.url("mlflow")  # postgresql://ragops:...@127.0.0.1:PORT/mlflow
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from flows.process import stop_process_group
from tests.support.processes import free_port, wait_for

USER = "ragops"


def postgres_bindir() -> Path:
    """The newest PostgreSQL of Debian's packages (/usr/lib/postgresql/<major>/bin), else initdb on PATH."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if found:
        return found[-1].parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    raise RuntimeError("no PostgreSQL server binaries (initdb) found: install Debian's postgresql package "
                       "(`apt-get install postgresql`; `make test` does it when run as root)")


@dataclass
class PostgresServer:
    port: int
    password: str
    process: subprocess.Popen

    def url(self, database: str, driver: str = "") -> str:
        """A SQLAlchemy URL of `database` (driver: "psycopg2" for MLflow, "asyncpg" for Prefect)."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"


def _as_postgres() -> dict:
    """PostgreSQL refuses to run as root: as root, its programs run as Debian's `postgres` user."""
    return {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}


def _connects(server: PostgresServer) -> bool:
    assert server.process.poll() is None, "the PostgreSQL server exited"
    try:
        psycopg2.connect(server.url("postgres"), connect_timeout=2).close()
        return True
    except psycopg2.OperationalError:
        return False


@contextlib.contextmanager
def postgres_server(log_path: Path, databases: list[str]) -> Iterator[PostgresServer]:
    """A new cluster with `databases` owned by USER; stopped (fast shutdown) and deleted on exit."""
    bindir, as_postgres = postgres_bindir(), _as_postgres()
    # Not under pytest's tmp_path: its folders are private to root, and the server runs as `postgres`.
    folder = Path(tempfile.mkdtemp(prefix="ragops-postgres-"))
    password = secrets.token_urlsafe(16)
    (folder / "password").write_text(password)
    if as_postgres:
        for path in (folder, folder / "password"):
            shutil.chown(path, "postgres", "postgres")
    process = None
    try:
        with log_path.open("ab") as log:
            subprocess.run([str(bindir / "initdb"), "-D", str(folder / "data"), "-U", USER, "--auth=scram-sha-256",
                            f"--pwfile={folder / 'password'}", "--no-sync"], check=True, stdout=log,
                           stderr=subprocess.STDOUT, timeout=120, **as_postgres)
            port = free_port()
            # fsync off: a test server's data need not survive a power cut, and syncing costs seconds.
            process = subprocess.Popen([str(bindir / "postgres"), "-D", str(folder / "data"), "-p", str(port),
                                        "-h", "127.0.0.1", "-k", str(folder), "-c", "fsync=off"],
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **as_postgres)
        server = PostgresServer(port, password, process)
        wait_for(lambda: _connects(server), 60, "the PostgreSQL server")
        admin = psycopg2.connect(server.url("postgres"))
        admin.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with admin.cursor() as cursor:
            for database in databases:
                cursor.execute(f'CREATE DATABASE "{database}"')
        admin.close()
        yield server
    finally:
        if process is not None:  # SIGINT: a fast shutdown, running transactions rolled back
            stop_process_group(process, signal.SIGINT, timeout_s=60)
        shutil.rmtree(folder, ignore_errors=True)
