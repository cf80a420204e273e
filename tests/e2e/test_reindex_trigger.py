"""Document changes while `ragops deploy` runs against a real Prefect server and a standalone
Weaviate server: a burst of them, from the deployment's own watcher (a file edited) and from ten
producers emitting `ragops.documents.changed` through the Prefect API in the same instant (ten
catalog feeds, say), makes one reindex run that includes every change, writes every chunk once,
is evaluated and promoted, and goes live while readers keep querying the live alias without a
failure. A later edit makes the next run. (That `ragops serve` follows the champion the run
promotes: tests/e2e/test_serve.py.)"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from components.index.embedding import embed_texts, load_embedder
from components.index.search import search
from components.index.server import weaviate_server
from components.index.store import connect_weaviate, live_collection
from components.settings import Settings
from tests.support.cli import RAGOPS, ragops_env
from tests.support.processes import start_daemon, stop_daemon, wait_for
from tests.support.project import documents, edit, front_matter, update_params
from tests.support.registry import assert_every_chunk_once, deployment_exists, deployment_runs, ledger

pytestmark = [pytest.mark.e2e, pytest.mark.reliability]
DEPLOYMENT = "ragops-reindex/on-document-change"
DEBOUNCE = 6.0
# Ten producers released by a barrier: ten events in the same instant.
EMIT_TEN = """
import sys, threading
from pathlib import Path
from components.data.watch import Changes
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


def _completed(api: str) -> list[dict]:
    return [r for r in deployment_runs(api, DEPLOYMENT) if r["state_type"] == "COMPLETED"]


@pytest.mark.timeout(1800)
def test_a_burst_of_changes_makes_one_reindex_with_every_change_and_no_downtime(champion_repo, tmp_path, prefect_api,
                                                                                encoder_path):
    repo = champion_repo
    update_params(repo, {"index": {"debounce_seconds": DEBOUNCE, "watch_poll_seconds": 0.5}})
    folder = repo / "data" / "raw" / "documents"
    fed, watched = documents(repo)[:10], documents(repo)[10]
    for i, doc in enumerate(fed):  # edited before the watcher starts: only their events announce them
        edit(doc, "Warranty:", f"Feed {i} warranty:")
    price = front_matter(watched)["price"]

    settings = Settings(home=repo / ".ragops")
    with weaviate_server(settings, settings.weaviate_data_path, tmp_path / "weaviate.log") as weaviate:
        env = ragops_env(repo, {**weaviate.env(), "PREFECT_API_URL": prefect_api, "PREFECT_RUNNER_POLL_FREQUENCY": "2"})
        deploy = start_daemon([RAGOPS, "deploy"], repo, env, tmp_path / "deploy.log")
        embedder = load_embedder(encoder_path)
        try:
            with connect_weaviate(Settings(**weaviate.connection())) as client:
                wait_for(lambda: deployment_exists(prefect_api, DEPLOYMENT), 300, "the reindex deployment")
                time.sleep(3)  # the watcher takes its first snapshot (which holds the fed edits)
                live_before = live_collection(client, "Catalog")

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
                emitted = subprocess.run([sys.executable, "-c", EMIT_TEN, str(folder), *[d.name for d in fed]], env=env,
                                         capture_output=True, text=True, timeout=120)
                assert emitted.returncode == 0 and emitted.stdout.count("→ event") == 10, emitted.stdout + emitted.stderr
                edit(watched, f"Price: {price:.2f} USD", "Price: 1.23 USD")  # the watcher's part of the burst

                runs = wait_for(lambda: _completed(prefect_api), 600, "the reindex run", interval=2)
                time.sleep(DEBOUNCE + 6)  # a second run for the same burst would have been created by now
                stop.set()
                reader.join()
                all_runs = deployment_runs(prefect_api, DEPLOYMENT)
                assert [(r["name"], r["state_type"]) for r in all_runs] == [(runs[0]["name"], "COMPLETED")]
                # named for what it did when it ended
                assert runs[0]["name"].startswith("reindex (documents-changed): Catalog_v2 new"), runs[0]["name"]
                assert "(11 changed, 0 deleted documents)" in runs[0]["name"], runs[0]["name"]
                assert runs[0]["name"].endswith("bundle v2 → champion"), runs[0]["name"]
                assert not failures and answered and all(n > 0 for n in answered), failures[:5]

                promoted = ledger(repo)[-1]
                assert promoted["action"] == "promote" and promoted["previous_collection"] == live_before
                live_after = live_collection(client, "Catalog")
                assert live_after == promoted["collection"] != live_before
                changed = {o.properties["doc_id"] for o in client.collections.get(live_after).iterator()
                           if "Feed" in o.properties["text"]}
                assert changed == {d.stem for d in fed}  # every event's change is in the one run
                name = front_matter(watched)["name"]
                hits = search(client, "Catalog", f"{name} price", embed_texts(embedder, [f"{name} price"], 8)[0], 3, 0.5)
                assert any("1.23 USD" in h.text for h in hits if h.doc_id == watched.stem)  # and the watcher's

                # A later edit: the next run picks it up.
                edit(fed[1], "Feed 1 warranty:", "Second edition warranty:")
                wait_for(lambda: len(_completed(prefect_api)) == 2, 600, "the second reindex run", interval=2)
                newest = live_collection(client, "Catalog")
                assert newest != live_after
                texts = [o.properties["text"] for o in client.collections.get(newest).iterator()
                         if o.properties["doc_id"] == fed[1].stem]
                assert any("Second edition" in t for t in texts)
            served = Settings(**weaviate.connection())
            for version in (live_after, newest):
                assert_every_chunk_once(served, version)
        finally:
            stop_daemon(deploy, tmp_path / "deploy.log")
