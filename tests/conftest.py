"""Shared fixtures: real services in temporary places, torn down after use.

Library settings are set before anything imports Prefect, MLflow or transformers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_PREFECT_HOME = tempfile.mkdtemp(prefix="ragops-test-prefect-")
for _key, _value in {
    "PREFECT_HOME": _PREFECT_HOME,
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "GX_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_VERBOSITY": "error",
}.items():
    os.environ.setdefault(_key, _value)

import httpx  # noqa: E402
import pytest  # noqa: E402

from components.config import Settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT


@pytest.fixture(scope="session", autouse=True)
def _stop_prefect_temporary_server():
    """A flow run in this process starts Prefect's temporary server, which Prefect stops at exit,
    after pytest has closed the stream its "Stopping temporary server" line goes to (a "Logging
    error" traceback at the end of every run): stop it while the session is still open."""
    yield
    server = sys.modules.get("prefect.server.api.server")
    if server is not None:
        for instance in list(server.SubprocessASGIServer._instances.values()):
            instance.stop()


@pytest.fixture()
def settings(tmp_path, monkeypatch) -> Settings:
    """Settings whose state (MLflow store, Weaviate data, DVC remote, ledger) lives in tmp_path;
    the cache (Weaviate binary, models) is the shared one `make setup` filled."""
    home = tmp_path / "state"
    monkeypatch.setenv("RAGOPS_HOME", str(home))
    for key in ("RAGOPS_WEAVIATE_URL", "RAGOPS_MLFLOW_TRACKING_URI", "RAGOPS_DVC_REMOTE_URL"):
        monkeypatch.delenv(key, raising=False)
    return Settings()


@pytest.fixture(scope="session")
def weaviate_client(tmp_path_factory):
    """One embedded Weaviate server (free ports, temp data path) for the session."""
    from components.index.store import connect_weaviate

    settings = Settings(home=tmp_path_factory.mktemp("weaviate-home"))
    with connect_weaviate(settings) as client:
        assert client.is_ready()
        yield client


@pytest.fixture(scope="session")
def encoder_path() -> str:
    from components.config import ModelsConfig
    from components.models import resolve_model

    return resolve_model(ModelsConfig().encoder, Settings().models_dir)


@pytest.fixture(scope="session")
def curated_docs(project_root) -> list[dict]:
    from components.config import DataConfig
    from components.data.curate import curate_documents, read_documents

    docs, _ = curate_documents(read_documents(project_root / "data" / "raw" / "documents"), DataConfig())
    return docs


def free_port() -> int:
    """A loopback port free right now (for a server a test starts as a subprocess)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def copy_project(root: Path, target: Path) -> Path:
    """A fresh copy of the project's tracked and new files (what a clone would hold), as its own
    git repository so DVC runs as it does for a user."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=root, capture_output=True,
                            text=True, check=True).stdout.split()
    for rel in listed:
        src = root / rel
        if src.is_file():
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target / rel)
    subprocess.run(["git", "init", "-q"], cwd=target, check=True)
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A"], cwd=target, check=True)
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "copy"], cwd=target,
                   check=True)
    return target


def wait_for(predicate, timeout: float, what: str, interval: float = 1.0):
    """The first truthy value of predicate(), polled until `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _start_server(command: list[str], env: dict, log_path: Path, health_url: str, what: str):
    """A server subprocess (own session, log to a file), returned once `health_url` answers 200."""
    log = open(log_path, "wb")  # noqa: SIM115 (closed by the caller's teardown)
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def healthy():
        assert process.poll() is None, f"{what} exited: " + log_path.read_text()[-3000:]
        try:
            return httpx.get(health_url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, 300, what)
    return process, log


def _stop_server(process: subprocess.Popen, log) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    log.close()


@pytest.fixture()
def prefect_api(tmp_path):
    """`prefect server start` on a free loopback port (SQLite in a temp PREFECT_HOME); yields the API URL."""
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-server"), "PREFECT_UI_ENABLED": "false",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    api = f"http://127.0.0.1:{port}/api"
    process, log = _start_server([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                 env, tmp_path / "prefect-server.log", f"{api}/health", "the Prefect server")
    yield api
    _stop_server(process, log)


@pytest.fixture()
def mlflow_server(tmp_path):
    """`mlflow server` on a free loopback port with a SQL (SQLite) backend store and proxied
    artifacts in a temp folder; yields the tracking URI."""
    port = free_port()
    store = tmp_path / "mlflow-server"
    store.mkdir()
    command = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
               "--artifacts-destination", str(store / "artifacts")]
    uri = f"http://127.0.0.1:{port}"
    process, log = _start_server(command, {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
                                 tmp_path / "mlflow-server.log", f"{uri}/health", "the MLflow server")
    yield uri
    _stop_server(process, log)


def start_daemon(command: list[str], cwd: Path, env: dict, log_path: Path) -> subprocess.Popen:
    """A long-running command (own session, output to `log_path`), as a user starts it in a terminal."""
    log = open(log_path, "wb")  # noqa: SIM115 (the child keeps its own descriptor)
    try:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    finally:
        log.close()


def stop_daemon(process: subprocess.Popen, log_path: Path) -> None:
    """Ctrl-C (SIGKILL after 60 s), then its log's tail into the test output."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    print(f"--- {log_path.name}\n{log_path.read_text()[-4000:]}")
