"""ragops against a 3-node Weaviate cluster (components/index/cluster.py: three servers of the
provisioned binary on loopback, one Raft cluster), with `index.replication_factor: 3` and reads
at QUORUM, on the tiny champion's project:

- `ragops reindex` builds a replicated index version on the cluster, promotes it, and every node
  holds every chunk of it once (read from that node's own replica).
- `ragops serve` keeps answering while a node is SIGKILLed: no request fails.
- A node SIGKILLed while a reindex writes the new version: the run completes on the nodes that
  answer (or stops saying to rerun, and the rerun completes); the node, restarted, catches up
  (async replication) and holds every chunk of the new version.
  `ragops rollback` puts the previous pair back.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter

import httpx
import pytest
from weaviate.exceptions import UnexpectedStatusCodeError

from components.index.cluster import weaviate_cluster
from components.index.store import connect_weaviate
from components.settings import Settings
from tests.support.cli import RAGOPS, output, ragops, ragops_env
from tests.support.processes import free_port, start_daemon, stop_daemon, wait_for
from tests.support.project import documents, front_matter, update_params
from tests.support.registry import BUNDLE, assert_every_chunk_once, champion, chunk_mismatch, live_index, mlflow_client

pytestmark = pytest.mark.integration


def _on_every_node(cluster, collection: str) -> None:
    """Every node's own replica of the live version holds exactly the chunks of its ledger."""
    for node in cluster.nodes:
        settings = Settings(**node.server.connection())
        assert live_index(settings) == collection, node.name
        assert_every_chunk_once(settings, collection)


def _exists(cluster, collection: str) -> bool:
    with connect_weaviate(Settings(**cluster.nodes[0].server.connection())) as client:
        return client.collections.exists(collection)


def _seen_dead(cluster, node: str) -> bool:
    """The surviving nodes no longer list `node` (its gossip timed out): a new replicated version
    cannot be placed on it."""
    with connect_weaviate(Settings(**cluster.nodes[0].server.connection())) as client:
        try:
            return node not in {n.name for n in client.cluster.nodes()}
        except UnexpectedStatusCodeError:  # 500 while the node is only suspected: its status call is refused
            return False


def _ready(port: int, serve) -> bool:
    assert serve.poll() is None, "ragops serve exited"
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def _retrieve_while(port: int, stop: threading.Event, outcomes: list[int], question: str) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
        while not stop.is_set():
            try:
                outcomes.append(http.post("/v1/retrieve", json={"question": question}).status_code)
            except httpx.HTTPError:
                outcomes.append(0)


@pytest.mark.timeout(1200)
def test_a_replicated_index_is_built_served_through_a_killed_node_and_caught_up(champion_repo, tmp_path):
    repo = champion_repo
    update_params(repo, {"index": {"replication_factor": 3, "consistency_level": "QUORUM"}})
    mlflow = mlflow_client(repo)
    # Async replication compares replicas every 30 s and sends objects older than 30 s by default;
    # the test's node catches up sooner with 5 s and 2 s.
    quick = {"ASYNC_REPLICATION_FREQUENCY": "5s", "ASYNC_REPLICATION_PROPAGATION_DELAY": "2s"}
    with weaviate_cluster(Settings(), tmp_path / "cluster", nodes=3, environment=quick) as cluster:
        env = cluster.nodes[0].server.env()
        first = ragops(repo, "reindex", env=env)
        assert first.returncode == 0 and champion(mlflow) == "2", output(first)[-4000:]
        collection = mlflow.get_model_version(BUNDLE, "2").tags["collection"]
        _on_every_node(cluster, collection)

        # Serving through a crash: route + retrieve (no generation: many requests in a few seconds).
        port = free_port()
        serve = start_daemon([RAGOPS, "serve", "--port", str(port)], repo, ragops_env(repo, env), tmp_path / "serve.log")
        outcomes: list[int] = []
        stop = threading.Event()
        product = front_matter(documents(repo)[0])
        client = threading.Thread(target=_retrieve_while, args=(port, stop, outcomes, f"What does the {product['name']} cost?"),
                                  daemon=True)
        try:
            wait_for(lambda: _ready(port, serve), 300, "ragops serve")
            client.start()
            time.sleep(2)
            before = len(outcomes)
            cluster.kill(2)
            wait_for(lambda: _seen_dead(cluster, cluster.nodes[2].name), 120, "the cluster to see the node gone")
            time.sleep(2)
        finally:
            stop.set()
            if client.is_alive():
                client.join()
            stop_daemon(serve, tmp_path / "serve.log")
        failed = {code: n for code, n in Counter(outcomes).items() if code != 200}  # 0: no answer at all
        assert len(outcomes) > before > 0 and not failed, (f"{len(outcomes)} requests, {before} before the kill; "
                                                           f"failed by status: {failed}")

        # The node back, then SIGKILLed while a reindex writes the new version (every product
        # touched: the build embeds the whole catalog, seconds of work). The run completes on the
        # nodes that answer, or stops saying to rerun and changes nothing; the node, restarted on
        # its data, catches up (async replication) and holds every chunk of the new version.
        cluster.restart(2)
        for doc in documents(repo):
            doc.write_text(doc.read_text() + "\nShips in recyclable packaging.\n")
        building = f"Catalog_v{int(collection.rsplit('_v', 1)[1]) + 1}"
        tic = time.monotonic()
        run = subprocess.Popen([RAGOPS, "reindex"], cwd=repo, env=ragops_env(repo, env), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
        wait_for(lambda: _exists(cluster, building) or run.poll() is not None, 600, f"{building} to be created",
                 interval=0.2)
        cluster.kill(2)
        told, _ = run.communicate(timeout=900)
        print(f"reindex with node c killed at {building}'s creation: exit {run.returncode} after "
              f"{time.monotonic() - tic:.0f} s; its retries:\n" + "\n".join(
                  line[:300] for line in told.splitlines() if "etr" in line))
        if run.returncode != 0:
            assert run.returncode == 2 and "rerun" in told, told[-4000:]
            assert champion(mlflow) == "2" and live_index(Settings(**cluster.nodes[0].server.connection())) == collection
            cluster.restart(2)
            rerun = ragops(repo, "reindex", env=env)
            assert rerun.returncode == 0, output(rerun)[-4000:]
        else:
            cluster.restart(2)
        assert champion(mlflow) == "3", told[-4000:]
        newest = mlflow.get_model_version(BUNDLE, "3").tags["collection"]
        wait_for(lambda: not chunk_mismatch(Settings(**cluster.nodes[2].server.connection()), newest), 180,
                 "the restarted node to catch up")
        _on_every_node(cluster, newest)

        back = ragops(repo, "rollback", env=env)
        assert back.returncode == 0 and champion(mlflow) == "2", output(back)[-4000:]
        _on_every_node(cluster, collection)
