"""Server mode on one machine: `prefect server`, a worker on a process work pool, `mlflow server`
with a SQL backend and a standalone Weaviate server, all real and on loopback. The deployments
are registered on the pool by `ragops deploy --work-pool`; the retraining deployment is run, then
document edits reach the reindex deployment as events. The champion moves only when the gates pass."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml
from mlflow import MlflowClient

from components.config import Settings
from components.index.server import weaviate_server
from components.index.store import connect_weaviate, live_collection
from tests.conftest import BIN, start_daemon, stop_daemon, wait_for
from tests.e2e.test_cli import _ledger, _project

pytestmark = pytest.mark.integration
POOL = "ragops-test-pool"


def _runs(api: str, deployment: str) -> list[dict]:
    found = httpx.get(f"{api}/deployments/name/{deployment}", timeout=10)
    if found.status_code != 200:
        return []
    runs = httpx.post(f"{api}/flow_runs/filter", timeout=10,
                      json={"deployments": {"id": {"any_": [found.json()["id"]]}}}).json()
    return sorted(runs, key=lambda r: r["created"])


def _finished(api: str, deployment: str, count: int) -> list[dict]:
    """The deployment's runs once `count` of them are final; a failed or crashed one fails the test."""
    runs = _runs(api, deployment)
    final = [r for r in runs if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")]
    bad = [(r["name"], r["state_type"], r["state"]["message"]) for r in final if r["state_type"] != "COMPLETED"]
    assert not bad, bad
    return final if len(final) >= count else []


def _edit_first_product(repo: Path, old: str, new: str) -> None:
    doc = sorted((repo / "data" / "raw" / "documents").glob("p-*.md"))[0]
    text = doc.read_text()
    assert old in text, (doc, old)
    doc.write_text(text.replace(old, new, 1))


@pytest.mark.timeout(2400)
def test_deployments_on_a_work_pool_promote_only_through_gates(project_root, tmp_path, prefect_api, mlflow_server):
    repo = _project(project_root, tmp_path, {
        "models": {"generator": "tiny:llama"},
        "generator": {"max_steps": 2, "warmup_steps": 0, "max_new_tokens": 8, "max_length": 1024,
                      "holdout_examples": 2},
        "router": {"epochs": 1},
        # the random tiny generator never cites: retrieval is what can pass
        "evaluation": {"max_questions": 6, "gates": {"retrieval_recall_at_k": 0.5},
                       "non_inferiority": {"retrieval_recall_at_k": 0.05}},
        "index": {"debounce_seconds": 3, "watch_poll_seconds": 0.5},
    })
    with weaviate_server(Settings(), tmp_path / "weaviate", tmp_path / "weaviate.log") as weaviate:
        env = {**os.environ, **weaviate.env(), "RAGOPS_HOME": str(repo / ".ragops"), "PREFECT_API_URL": prefect_api,
               "RAGOPS_MLFLOW_TRACKING_URI": mlflow_server, "PREFECT_WORKER_QUERY_SECONDS": "2",
               "PREFECT_WORKER_PREFETCH_SECONDS": "2", "COLUMNS": "200"}
        env.pop("PREFECT_HOME", None)  # the worker and `ragops deploy` keep their own client state
        worker = start_daemon([str(BIN / "ragops"), "worker", "--pool", POOL], repo, env, tmp_path / "worker.log")
        deploy = None
        try:
            wait_for(lambda: httpx.get(f"{prefect_api}/work_pools/{POOL}", timeout=5).status_code == 200, 300,
                     "the worker to create its process work pool")
            deploy = start_daemon([str(BIN / "ragops"), "deploy", "--work-pool", POOL], repo, env, tmp_path / "deploy.log")
            for name in ("ragops-retrain/retrain", "ragops-reindex/on-document-change", "ragops-evaluate/on-demand"):
                wait_for(lambda name=name: httpx.get(f"{prefect_api}/deployments/name/{name}", timeout=5).status_code
                         == 200, 300, f"deployment {name}")
            retrain = httpx.get(f"{prefect_api}/deployments/name/ragops-retrain/retrain", timeout=5).json()
            assert retrain["work_pool_name"] == POOL and retrain["entrypoint"] == "flows.pipeline.retrain"
            assert [s["schedule"]["cron"] for s in retrain["schedules"]] == ["0 3 * * *"]

            # The retraining deployment, run on demand, executed by the worker.
            started = subprocess.run([str(BIN / "prefect"), "deployment", "run", "ragops-retrain/retrain"], env=env,
                                     capture_output=True, text=True, timeout=120)
            assert started.returncode == 0, started.stdout + started.stderr
            (trained,) = wait_for(lambda: _finished(prefect_api, "ragops-retrain/retrain", 1), 1200,
                                  "the retrain run", interval=3)
            assert trained["name"].startswith("retrain (on-demand): router v1 trained, generator v1 trained")
            assert trained["name"].endswith("bundle v1 → champion"), trained["name"]
            client = MlflowClient(mlflow_server)
            assert client.get_model_version_by_alias("ragops-assistant", "champion").version == "1"

            # A price edit → event → reindex on the worker → gates pass → champion moves.
            _edit_first_product(repo, "Warranty:", "Extended warranty:")
            (first,) = wait_for(lambda: _finished(prefect_api, "ragops-reindex/on-document-change", 1), 900,
                                "the first reindex run", interval=3)
            assert first["name"].endswith("bundle v2 → champion"), first["name"]
            assert client.get_model_version_by_alias("ragops-assistant", "champion").version == "2"

            # Gates the candidate cannot pass: the next edit is indexed and evaluated, but held back.
            params = yaml.safe_load((repo / "params.yaml").read_text())
            params["evaluation"]["gates"]["key_fact_accuracy"] = 0.95
            (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            with connect_weaviate(Settings(weaviate_url=weaviate.url, weaviate_grpc_url=weaviate.grpc_url)) as wv:
                live = live_collection(wv, "Catalog")
                _edit_first_product(repo, "Extended warranty:", "Lifetime warranty:")
                runs = wait_for(lambda: _finished(prefect_api, "ragops-reindex/on-document-change", 2), 900,
                                "the second reindex run", interval=3)
                assert runs[-1]["name"].endswith("bundle v3 → challenger"), runs[-1]["name"]
                assert live_collection(wv, "Catalog") == live  # the served index did not move either
            held = client.get_model_version_by_alias("ragops-assistant", "challenger")
            assert held.version == "3" and held.tags["gates_passed"] == "False"
            assert "key_fact_accuracy" in held.tags["gate_reasons"]
            assert client.get_model_version_by_alias("ragops-assistant", "champion").version == "2"
            assert [e["action"] for e in _ledger(repo)] == ["promote", "promote", "hold"]
        finally:
            if deploy is not None:
                stop_daemon(deploy, tmp_path / "deploy.log")
            stop_daemon(worker, tmp_path / "worker.log")
