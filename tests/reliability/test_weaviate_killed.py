"""The Weaviate server is killed (SIGKILL) while a reindex writes the new index version of the
tiny champion's project.

- An external server (RAGOPS_WEAVIATE_URL, here started on the project's index data), which ragops
  does not manage: the run fails after its step retries with a reason that names the service and
  says to rerun; the live alias, the champion and the ledger are as before. With the server back
  (same data), the next run discards the half-written version and completes.
- The local server of RAGOPS_HOME (the default): the retried step starts a new server on the
  same data, the same run completes and stops that server as it ends.
In both, the index that goes live holds every chunk once (its objects match its ledger).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from components.index.server import weaviate_server
from components.settings import Settings
from tests.support.cli import RAGOPS, output, ragops, ragops_env
from tests.support.project import documents
from tests.support.registry import assert_every_chunk_once, champion, ledger, live_index, mlflow_client

pytestmark = pytest.mark.reliability


def _touch_every_product(repo: Path) -> int:
    """A sentence added to every product: the reindex embeds the whole catalog again (seconds
    of work, so the kill lands inside the build)."""
    docs = documents(repo)
    for doc in docs:
        doc.write_text(doc.read_text() + "\nShips in recyclable packaging.\n")
    return len(docs)


def _reindex_in_background(repo: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([RAGOPS, "reindex"], cwd=repo, env=ragops_env(repo, env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _kill_when_building(url: str, api_key: str, pid: int, run: subprocess.Popen, version: str = "Catalog_v2") -> None:
    """SIGKILL the server at `pid` as soon as the new version's collection exists."""
    auth = {"Authorization": f"Bearer {api_key}"}
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        assert run.poll() is None, "the reindex ended before the server could be killed: " + run.stdout.read()[-3000:]
        try:
            classes = {c["class"] for c in httpx.get(f"{url}/v1/schema", headers=auth, timeout=5).json()["classes"]}
        except httpx.HTTPError:
            classes = set()
        if version in classes:
            os.kill(pid, signal.SIGKILL)
            return
        time.sleep(0.1)
    raise AssertionError(f"{version} never appeared")


def _assert_consistent(settings: Settings, collection: str) -> None:
    """Every chunk once: the live version's objects are exactly those its ledger lists."""
    assert live_index(settings) == collection
    assert_every_chunk_once(settings, collection)


@pytest.mark.timeout(1800)
def test_external_server_killed_fails_cleanly_and_the_next_run_completes(champion_repo, tmp_path):
    repo = champion_repo
    data, log = Settings(home=repo / ".ragops").weaviate_data_path, tmp_path / "weaviate.log"
    with weaviate_server(Settings(), data, log) as server:
        _touch_every_product(repo)
        run = _reindex_in_background(repo, server.env())
        _kill_when_building(server.url, server.api_key, server.process.pid, run)
        said, _ = run.communicate(timeout=900)
    assert run.returncode != 0, said[-4000:]
    assert "the reindex stopped" in said and "a service did not answer" in said and "rerun" in said, said[-4000:]
    mlflow = mlflow_client(repo)
    assert champion(mlflow) == "1"
    assert [(e["action"], e["version"]) for e in ledger(repo)] == [("promote", "1")]

    with weaviate_server(Settings(), data, log) as server:  # back, on the same data
        settings = Settings(**server.connection())
        assert live_index(settings) == "Catalog_v1"  # the live alias never moved
        rerun = ragops(repo, "reindex", env=server.env())
        assert rerun.returncode == 0, output(rerun)[-4000:]
        now = champion(mlflow)
        assert now == "2", output(rerun)[-3000:]
        _assert_consistent(settings, mlflow.get_model_version("ragops-assistant", now).tags["collection"])


@pytest.mark.timeout(1800)
def test_local_server_killed_is_restarted_and_the_run_completes(champion_repo):
    repo = champion_repo
    _touch_every_product(repo)
    run = _reindex_in_background(repo, {})
    record = repo / ".ragops" / "weaviate-server.json"
    deadline = time.monotonic() + 300
    while not record.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    advertised = json.loads(record.read_text())
    _kill_when_building(f"http://127.0.0.1:{advertised['http_port']}", advertised["api_key"], advertised["pid"], run)
    said, _ = run.communicate(timeout=900)
    assert run.returncode == 0, said[-4000:]
    assert "transient failure, retrying" in said, said[-4000:]
    # the server the retried step started was stopped with the run, not left running unused
    assert not record.exists(), record.read_text()
    mlflow = mlflow_client(repo)
    now = champion(mlflow)
    assert now == "2"
    assert [(e["action"], e["version"]) for e in ledger(repo)] == [("promote", "1"), ("promote", "2")]
    _assert_consistent(Settings(home=repo / ".ragops"), mlflow.get_model_version("ragops-assistant", now).tags["collection"])
