"""Document edits while `ragops deploy` and `ragops serve` run: a real Prefect server, a standalone
Weaviate server, the deployments served by the CLI. A burst of ten edits gives one reindex run
that includes all of them, is evaluated, promoted and goes live while queries keep being answered,
and `ragops serve` answers with the new bundle without a restart; a later edit gives the next run."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from components.config import Settings
from components.index.embedding import embed_texts, load_embedder
from components.index.search import search
from components.index.server import weaviate_server
from components.index.store import connect_weaviate, live_collection
from tests.conftest import free_port, start_daemon, stop_daemon, wait_for
from tests.e2e.test_cli import _front_matter, _ledger, _project

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent
DEBOUNCE = 6.0


def _reindex_runs(api: str) -> list[dict]:
    deployment = httpx.get(f"{api}/deployments/name/ragops-reindex/on-document-change", timeout=10)
    if deployment.status_code != 200:
        return []
    runs = httpx.post(f"{api}/flow_runs/filter", timeout=10,
                      json={"deployments": {"id": {"any_": [deployment.json()["id"]]}}}).json()
    return sorted(runs, key=lambda r: r["created"])


def _served_version(served: httpx.Client) -> str | None:
    """The bundle version `ragops serve` answers with, or None while it is not ready."""
    try:
        ready = served.get("/readyz", timeout=5)
    except httpx.HTTPError:
        return None
    return ready.json()["version"] if ready.status_code == 200 else None


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new))


def test_document_edits_trigger_one_reindex_each_burst_without_downtime(project_root, tmp_path, prefect_api,
                                                                          encoder_path):
    repo = _project(project_root, tmp_path, {
        "models": {"generator": "tiny:llama"},
        "generator": {"max_steps": 2, "warmup_steps": 0, "max_new_tokens": 8, "max_length": 1024,
                      "holdout_examples": 2},
        "router": {"epochs": 1},
        # the random tiny generator never cites: only retrieval is gated and compared with the champion
        "evaluation": {"max_questions": 6, "gates": {"retrieval_recall_at_k": 0.5},
                       "non_inferiority": {"retrieval_recall_at_k": 0.05}},
        "index": {"debounce_seconds": DEBOUNCE, "watch_poll_seconds": 0.5},
        "serve": {"reload_poll_seconds": 1},
    })
    with weaviate_server(Settings(), tmp_path / "weaviate", tmp_path / "weaviate.log") as weaviate:
        env = {**os.environ, **weaviate.env(), "RAGOPS_HOME": str(repo / ".ragops"), "PREFECT_API_URL": prefect_api,
               "PREFECT_RUNNER_POLL_FREQUENCY": "2", "COLUMNS": "200"}
        first = subprocess.run([str(BIN / "ragops"), "run"], cwd=repo, env=env, capture_output=True, text=True,
                               timeout=900)
        assert first.returncode == 0 and "champion" in first.stdout, first.stdout[-3000:] + first.stderr[-3000:]

        deploy = start_daemon([str(BIN / "ragops"), "deploy"], repo, env, tmp_path / "deploy.log")
        serve_port = free_port()
        serve = start_daemon([str(BIN / "ragops"), "serve", "--port", str(serve_port)], repo, env, tmp_path / "serve.log")
        served = httpx.Client(base_url=f"http://127.0.0.1:{serve_port}", timeout=120)
        settings = Settings(weaviate_url=weaviate.url, weaviate_grpc_url=weaviate.grpc_url)
        embedder = load_embedder(encoder_path)
        try:
            with connect_weaviate(settings) as client:
                wait_for(lambda: httpx.get(f"{prefect_api}/deployments/name/ragops-reindex/on-document-change",
                                        timeout=5).status_code == 200, 300, "the reindex deployment")
                time.sleep(3)  # the watcher takes its first snapshot
                live_before = live_collection(client, "Catalog")
                version_before = wait_for(lambda: _served_version(served), 300, "ragops serve to be ready")

                # Readers keep querying the live alias during the whole reindex.
                question = "How much does a kettle cost?"
                vector = embed_texts(embedder, [question], 8)[0]
                answered, failures, stop = [], [], threading.Event()

                def read_live():
                    while not stop.is_set():
                        try:
                            answered.append(len(search(client, "Catalog", question, vector, 3, 0.5)))
                        except Exception as exc:  # noqa: BLE001 (any failure is what this test looks for)
                            failures.append(repr(exc))
                        time.sleep(0.05)

                reader = threading.Thread(target=read_live)
                reader.start()
                docs = sorted((repo / "data" / "raw" / "documents").glob("p-*.md"))[:10]
                edited = _front_matter(docs[0])
                for i, path in enumerate(docs):  # a burst: ten edits within a few seconds
                    _edit(path, "Warranty:", f"Edition {i} warranty:")
                    time.sleep(0.3)
                _edit(docs[0], f"Price: {edited['price']:.2f} USD", "Price: 1.23 USD")

                runs = wait_for(lambda: [r for r in _reindex_runs(prefect_api) if r["state_type"] == "COMPLETED"],
                             600, "the reindex run", interval=2)
                time.sleep(DEBOUNCE + 6)  # a second run for the same burst would have been created by now
                stop.set()
                reader.join()
                all_runs = _reindex_runs(prefect_api)
                assert len(all_runs) == 1, [(r["name"], r["state_type"]) for r in all_runs]
                # named for what it did when it ended
                assert runs[0]["name"].startswith("reindex (documents-changed): Catalog_v"), runs[0]["name"]
                assert "(10 changed, 0 deleted documents)" in runs[0]["name"] and "→ champion" in runs[0]["name"]
                assert not failures and answered and all(n > 0 for n in answered)

                ledger = _ledger(repo)
                assert ledger[-1]["action"] == "promote" and ledger[-1]["previous_collection"] == live_before
                live_after = live_collection(client, "Catalog")
                assert live_after == ledger[-1]["collection"] != live_before
                changed = {o.properties["doc_id"] for o in client.collections.get(live_after).iterator()
                           if "Edition" in o.properties["text"]}
                assert changed == {path.stem for path in docs}  # all ten edits are in the one run
                hits = search(client, "Catalog", f"{edited['name']} price", embed_texts(
                    embedder, [f"{edited['name']} price"], 8)[0], 3, 0.5)
                assert any("1.23 USD" in h.text for h in hits if h.doc_id == edited["id"])

                # `ragops serve`, never restarted, answers with the promoted bundle and its new index.
                promoted = ledger[-1]["version"]
                assert promoted != version_before
                wait_for(lambda: _served_version(served) == promoted, 300, f"ragops serve to load bundle v{promoted}")
                reply = served.post("/v1/answer", json={"question": f"How much does the {edited['name']} cost?"})
                assert reply.status_code == 200, reply.text
                answer = reply.json()
                assert answer["bundle_version"] == promoted
                assert any("1.23 USD" in c["text"] for c in answer["chunks"] if c["doc_id"] == edited["id"]), answer

                # A later edit: the next run picks it up.
                _edit(docs[1], "Edition 1 warranty:", "Second edition warranty:")
                wait_for(lambda: len([r for r in _reindex_runs(prefect_api) if r["state_type"] == "COMPLETED"]) == 2,
                      600, "the second reindex run", interval=2)
                newest = live_collection(client, "Catalog")
                assert newest != live_after
                texts = [o.properties["text"] for o in client.collections.get(newest).iterator()
                         if o.properties["doc_id"] == docs[1].stem]
                assert any("Second edition" in t for t in texts)
        finally:
            served.close()
            stop_daemon(serve, tmp_path / "serve.log")
            stop_daemon(deploy, tmp_path / "deploy.log")
