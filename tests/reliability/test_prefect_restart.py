"""The Prefect server restarts during a run: the deployment recovers on the next trigger.

Fault: server mode as in tests/integration/test_server_mode.py (`prefect server`, a worker on a
process pool, `ragops deploy --work-pool`, `mlflow server`, a standalone Weaviate). The retrain
deployment is triggered; while its run holds a slot (`ragops-training` in training, `ragops-index` from index build to promotion),
the Prefect server's process group is SIGKILLed, and a few seconds later the server is started
again on the same port and database.

Asserted: the interrupted run ends in a final state; no global concurrency slot stays taken
once it has ended (a leaked slot would make every later run wait forever); the champion is not
half moved (the MLflow alias `champion` and the promotion ledger agree, and the Weaviate alias
`Catalog` serves the champion's collection); and a new trigger of the deployment completes.

The server keeps its concurrency leases on disk, as the README's server mode says to: with
Prefect's default in-memory lease storage the restart loses the run's lease, the run's release
of the slot is then a no-op, and `ragops-index` stays taken for good.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from components.config import Settings
from components.index.server import weaviate_server
from components.index.store import connect_weaviate, live_collection
from components.promotion import champion_history, read_ledger
from flows.pipeline import INDEX_LOCK, TRAINING_LOCK
from tests.conftest import BIN, _start_server, _stop_server, free_port, start_daemon, stop_daemon, wait_for
from tests.e2e.test_cli import _project
from tests.integration.test_server_mode import POOL, _runs

pytestmark = pytest.mark.reliability
DEPLOYMENT = "ragops-retrain/retrain"
BUNDLE = "ragops-assistant"
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
LEASES_ON_DISK = {"PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect.server.concurrency.lease_storage.filesystem"}


def _start_prefect(home: Path, port: int, log_path: Path):
    """`prefect server start` on `port` with its SQLite database and leases in `home`: the same on a restart."""
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_UI_ENABLED": "false",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **LEASES_ON_DISK}
    return _start_server([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                         env, log_path, f"http://127.0.0.1:{port}/api/health", "the Prefect server")


def _kill_prefect(process: subprocess.Popen, log) -> None:
    """SIGKILL the server's whole process group: no shutdown hook runs, in-memory state is lost."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    log.close()


def _held_slots(api: str) -> dict[str, int]:
    limits = httpx.post(f"{api}/v2/concurrency_limits/filter", json={}, timeout=10).json()
    return {limit["name"]: limit["active_slots"] for limit in limits}


def _trigger(env: dict) -> None:
    started = subprocess.run([str(BIN / "prefect"), "deployment", "run", DEPLOYMENT], env=env, capture_output=True,
                             text=True, timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr


def _triggered(api: str) -> list[dict]:
    """The deployment's runs started by `prefect deployment run`, not the future ones its cron
    schedule has the scheduler create."""
    return [r for r in _runs(api, DEPLOYMENT) if not r.get("auto_scheduled")]


def _final_run(api: str, count: int) -> dict | None:
    """The `count`-th triggered run once it is final (whatever the final state)."""
    runs = _triggered(api)
    return runs[count - 1] if len(runs) >= count and runs[count - 1]["state_type"] in FINAL else None


def _assert_champion_consistent(repo: Path, mlflow_uri: str, weaviate_settings: Settings) -> str | None:
    """MLflow `champion`, the ledger's current champion and the Weaviate alias name the same bundle."""
    history = champion_history(read_ledger(repo / ".ragops" / "promotions.jsonl"), BUNDLE)
    client = MlflowClient(mlflow_uri)
    aliases = client.get_registered_model(BUNDLE).aliases if client.search_registered_models(
        f"name = '{BUNDLE}'") else {}
    champion = aliases.get("champion")
    assert (str(champion) if champion else None) == (str(history[-1]["version"]) if history else None), (
        aliases, history)
    with connect_weaviate(weaviate_settings) as wv:
        served = live_collection(wv, "Catalog")
    if champion is None:
        assert served is None, served
        return None
    assert served == client.get_model_version(BUNDLE, str(champion)).tags["collection"] == history[-1]["collection"]
    return str(champion)


@pytest.mark.timeout(1800)
def test_deployment_recovers_after_prefect_server_restart(project_root, tmp_path, mlflow_server):
    repo = _project(project_root, tmp_path, {
        "models": {"generator": "tiny:llama"},
        # 40 steps: the run holds the training slot long enough to be caught holding it
        "generator": {"max_steps": 40, "warmup_steps": 0, "max_new_tokens": 8, "max_length": 1024,
                      "holdout_examples": 2, "eval_every": 20},
        "router": {"epochs": 1},
        # the random tiny generator never cites: retrieval is what can pass
        "evaluation": {"max_questions": 6, "gates": {"retrieval_recall_at_k": 0.5},
                       "non_inferiority": {"retrieval_recall_at_k": 0.05}, "bootstrap_resamples": 200,
                       "ablation_questions": 4, "general_prompts": 2, "freshness_probes": 0,
                       "latency_questions": 2, "injection_attacks": 4},
    })
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    prefect_home = tmp_path / "prefect-server"
    server, server_log = _start_prefect(prefect_home, port, tmp_path / "prefect-server-1.log")
    with weaviate_server(Settings(), tmp_path / "weaviate", tmp_path / "weaviate.log") as weaviate:
        weaviate_settings = Settings(weaviate_url=weaviate.url, weaviate_grpc_url=weaviate.grpc_url)
        env = {**os.environ, **weaviate.env(), "RAGOPS_HOME": str(repo / ".ragops"), "PREFECT_API_URL": api,
               "RAGOPS_MLFLOW_TRACKING_URI": mlflow_server, "PREFECT_WORKER_QUERY_SECONDS": "2",
               "PREFECT_WORKER_PREFETCH_SECONDS": "2", "COLUMNS": "200"}
        env.pop("PREFECT_HOME", None)
        worker = start_daemon([str(BIN / "ragops"), "worker", "--pool", POOL], repo, env, tmp_path / "worker.log")
        deploy = None
        try:
            wait_for(lambda: httpx.get(f"{api}/work_pools/{POOL}", timeout=5).status_code == 200, 300,
                     "the worker to create its process work pool")
            deploy = start_daemon([str(BIN / "ragops"), "deploy", "--work-pool", POOL], repo, env,
                                  tmp_path / "deploy.log")
            wait_for(lambda: httpx.get(f"{api}/deployments/name/{DEPLOYMENT}", timeout=5).status_code == 200, 300,
                     f"deployment {DEPLOYMENT}")

            _trigger(env)
            # killed while the run holds a slot: training's or the index build's (whichever is seen first)
            wait_for(lambda: any(_held_slots(api).get(name) for name in (TRAINING_LOCK, INDEX_LOCK)), 900,
                     f"the run to hold the {TRAINING_LOCK} or {INDEX_LOCK} slot", interval=0.5)
            (interrupted,) = _triggered(api)
            assert interrupted["state_type"] == "RUNNING", interrupted["state"]
            _kill_prefect(server, server_log)
            time.sleep(5)
            server, server_log = _start_prefect(prefect_home, port, tmp_path / "prefect-server-2.log")

            ended = wait_for(lambda: _final_run(api, 1), 900, "the interrupted run to end", interval=3)
            print(f"interrupted run: {ended['state_type']} ({ended['state']['name']}): {ended['state']['message']}")
            wait_for(lambda: not any(_held_slots(api).get(name) for name in (INDEX_LOCK, TRAINING_LOCK)), 60,
                     f"the ended run's {INDEX_LOCK} and {TRAINING_LOCK} slots to be free (a server that lost "
                     "the run's lease never frees them)")
            _assert_champion_consistent(repo, mlflow_server, weaviate_settings)

            _trigger(env)
            recovered = wait_for(lambda: _final_run(api, 2), 900, "the run triggered after the restart", interval=3)
            assert recovered["state_type"] == "COMPLETED", (recovered["state"]["message"], recovered["name"])
            assert _assert_champion_consistent(repo, mlflow_server, weaviate_settings) is not None
        finally:
            if deploy is not None:
                stop_daemon(deploy, tmp_path / "deploy.log")
            stop_daemon(worker, tmp_path / "worker.log")
            if server.poll() is None:
                _stop_server(server, server_log)
