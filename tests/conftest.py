"""Shared fixtures: real services in temporary places, torn down after use.

Library settings are set before anything imports Prefect, MLflow or transformers.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
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

import pytest  # noqa: E402

from components.config import Settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT


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
