"""Shared fixtures: real services in temporary places, torn down after use. Helpers that are not
fixtures live in tests/support.

Library settings are set before anything imports Prefect, MLflow or transformers.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from tests.support.environment import without_services

without_services(os.environ)  # before the settings below and any import that reads them
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
    # The suite runs two workers on two cores, and tests run a server beside a pipeline: torch's
    # OpenMP threads then share cores with other busy processes. By default they spin while they
    # wait for each other, and a descheduled thread stalls the rest: two SmolLM2 trainings side by
    # side ran at 27 tokens/s each, 11x slower than one alone (300). Sleeping instead of spinning:
    # 190 each (one alone: 240). Measured on a 2-core Intel Xeon (AMX, bf16).
    "OMP_WAIT_POLICY": "PASSIVE",
}.items():
    os.environ.setdefault(_key, _value)

import pytest  # noqa: E402

from components.settings import Settings  # noqa: E402
from tests.support.champion import ChampionSnapshot, build_champion  # noqa: E402
from tests.support.cli import shared_prefect_api  # noqa: E402
from tests.support.processes import start_mlflow_server  # noqa: E402
from tests.support.project import ROOT  # noqa: E402


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest test (`heavy(longest=True)`) opens the first worker's share; the other `heavy`
    tests and those starting from the tiny champion open the second's, so the longest runs beside
    everything else, nothing waits behind it, and one worker builds the tiny champion (~75 s).

    xdist's worksteal scheduler hands each of the two workers a contiguous half of this order and
    later moves tests from the tail of a busy worker's queue, but a worker always keeps the test
    after the one it runs (it needs it for teardown). With every heavy test first, the second heavy
    test (2.5 min) waited behind the 26-min trained e2e on one worker: the suite's wall time was the
    two together, while the other worker ran out of work. Now the test after the longest is a
    light one, which the other worker may take; and the tails of both shares, which the workers
    steal from each other, are light tests that need no champion."""
    heavy = [item for item in items if item.get_closest_marker("heavy")]
    longest = [item for item in heavy if item.get_closest_marker("heavy").kwargs.get("longest")]
    others = [item for item in heavy if item not in longest]
    champion = [item for item in items if item not in heavy and "champion_repo" in getattr(item, "fixturenames", ())]
    light = [item for item in items if item not in heavy and item not in champion]
    # Workers collect (the scheduler takes their order); xdist tells each how many there are.
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    second_share = len(items) // workers if workers >= 2 else 0
    cut = max(0, second_share - len(longest))
    items[:] = longest + light[:cut] + others + champion + light[cut:]


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
def weaviate_service(tmp_path_factory):
    """One standalone Weaviate server (free ports, temp data path) for the session's tests that do
    not kill it; each test uses collections and aliases of its own."""
    from components.index.server import weaviate_server

    folder = tmp_path_factory.mktemp("weaviate")
    with weaviate_server(Settings(), folder / "data", folder / "weaviate.log") as server:
        yield server


@pytest.fixture(scope="session")
def weaviate_client(weaviate_service):
    from components.index.store import connect_weaviate

    with connect_weaviate(Settings(**weaviate_service.connection())) as client:
        assert client.is_ready()
        yield client


@pytest.fixture(scope="session")
def encoder_path() -> str:
    from components.config import ModelsConfig
    from components.models.resolve import resolve_model

    return resolve_model(ModelsConfig().encoder, Settings().models_dir)


@pytest.fixture(scope="session")
def curated_docs(project_root) -> list[dict]:
    from components.config import DataConfig, IndexConfig
    from components.data.curate import curate_documents, read_documents

    docs, _ = curate_documents(read_documents(project_root / "data" / "raw" / "documents"), DataConfig(),
                               IndexConfig().metadata_fields)
    return docs


@pytest.fixture(scope="session")
def tiny_champion(project_root, tmp_path_factory) -> ChampionSnapshot:
    """The tiny profile's `ragops run`, once per session (tests/support/champion.py)."""
    return build_champion(project_root, tmp_path_factory.mktemp("tiny-champion"))


@pytest.fixture()
def champion_repo(tiny_champion) -> Path:
    """A project where `ragops run` on the tiny profile just made bundle v1 the champion (index
    `Catalog_v1` live, data pushed to the DVC remote under .ragops), all its own: restored for
    each test, in its local state (embedded MLflow, local Weaviate server, local DVC remote)."""
    return tiny_champion.restore()


@pytest.fixture(scope="session")
def prefect_api() -> str:
    """The API URL of the Prefect server the session's `ragops` commands use (tests/support/cli.py)."""
    return shared_prefect_api()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on a free loopback port with a SQLite backend store and proxied artifacts
    in a temp folder, for the test module; yields the tracking URI."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    server, uri = start_mlflow_server(folder / "store", folder / "mlflow-server.log")
    yield uri
    server.stop()
