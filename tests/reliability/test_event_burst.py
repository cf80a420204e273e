"""Ten document-change events at once (ten producers emitting through the Prefect API in the same
instant, e.g. ten catalog feeds): the reindex deployment must run once, include all ten changes,
and write every chunk once. `ragops deploy` serves the deployments against a real Prefect server;
the documents are edited before it starts, so its own watcher sees no change and the ten events
are the only trigger."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
from mlflow import MlflowClient

from components.config import Settings
from components.index.store import chunk_counts, connect_weaviate, live_collection, read_ledger
from tests.conftest import BIN, start_daemon, stop_daemon, wait_for
from tests.integration.test_server_mode import _runs
from tests.reliability.conftest import champion, output, ragops, tiny_project

pytestmark = pytest.mark.reliability
DEPLOYMENT = "ragops-reindex/on-document-change"
DEBOUNCE = 5
EMIT_TEN = """
import sys, threading
from pathlib import Path
from components.watch import Changes
from flows.events import emit_documents_changed
folder, names = Path(sys.argv[1]), sys.argv[2:]
start = threading.Barrier(len(names))
def emit(name):
    start.wait()
    emit_documents_changed(folder, Changes([], [name], []))
threads = [threading.Thread(target=emit, args=(n,)) for n in names]
[t.start() for t in threads]
[t.join() for t in threads]
"""


@pytest.mark.timeout(1800)
def test_ten_events_at_once_make_one_reindex_with_every_change(project_root, tmp_path, prefect_api):
    repo = tiny_project(project_root, tmp_path, index={"debounce_seconds": DEBOUNCE, "watch_poll_seconds": 0.5})
    first = ragops(repo, "run")
    assert first.returncode == 0, output(first)[-4000:]
    folder = repo / "data" / "raw" / "documents"
    docs = sorted(folder.glob("p-*.md"))[:10]
    for i, doc in enumerate(docs):
        doc.write_text(doc.read_text().replace("Warranty:", f"Feed {i} warranty:", 1))

    env = {**os.environ, "RAGOPS_HOME": str(repo / ".ragops"), "PREFECT_API_URL": prefect_api,
           "PREFECT_RUNNER_POLL_FREQUENCY": "2", "COLUMNS": "200"}
    deploy = start_daemon([str(BIN / "ragops"), "deploy"], repo, env, tmp_path / "deploy.log")
    try:
        wait_for(lambda: httpx.get(f"{prefect_api}/deployments/name/{DEPLOYMENT}", timeout=5).status_code == 200, 300,
                 "the reindex deployment")
        time.sleep(3)  # the watcher's first snapshot already holds the edits
        emitted = subprocess.run([sys.executable, "-c", EMIT_TEN, str(folder), *[d.name for d in docs]], env=env,
                                 capture_output=True, text=True, timeout=120)
        assert emitted.returncode == 0 and emitted.stdout.count("→ event") == 10, emitted.stdout + emitted.stderr

        done = wait_for(lambda: [r for r in _runs(prefect_api, DEPLOYMENT) if r["state_type"] == "COMPLETED"], 900,
                        "the reindex run", interval=2)
        time.sleep(DEBOUNCE + 10)  # a second run for the same burst would exist by now
        runs = _runs(prefect_api, DEPLOYMENT)
        assert [(r["name"], r["state_type"]) for r in runs] == [(done[0]["name"], "COMPLETED")]
        assert "Catalog_v2 new (10 changed, 0 deleted documents)" in done[0]["name"], done[0]["name"]
        assert done[0]["name"].endswith("bundle v2 → champion"), done[0]["name"]
    finally:
        stop_daemon(deploy, tmp_path / "deploy.log")

    assert champion(MlflowClient(f"sqlite:///{repo / '.ragops' / 'mlflow.db'}")) == "2"
    with connect_weaviate(Settings(home=repo / ".ragops")) as client:
        assert live_collection(client, "Catalog") == "Catalog_v2"
        sealed = read_ledger(client, "Catalog", "Catalog_v2")
        counts = chunk_counts(client, "Catalog_v2")
        assert counts == {doc: len(entry.chunk_ids) for doc, entry in sealed.documents.items()}  # no duplicates
        assert len(client.collections.get("Catalog_v2")) == sealed.chunk_count
        texts = {o.properties["doc_id"]: o.properties["text"] for o in client.collections.get("Catalog_v2").iterator()
                 if o.properties["doc_id"] in {d.stem for d in docs} and "warranty" in o.properties["text"]}
        assert {doc_id for doc_id, text in texts.items() if "Feed" in text} == {d.stem for d in docs}
