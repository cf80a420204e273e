"""MLflow becomes unreachable while a run registers or promotes a bundle.

A real `mlflow server` sits behind a proxy that goes down at a chosen request (tests/reliability/
faults.py): the request that creates the bundle's model version (registration), or the one that
moves `champion` (promotion), either refused or carried out with its answer lost. The run must
fail with a reason that says what to do, nothing may be half promoted (the MLflow alias, the
Weaviate alias and the ledger name one champion, or the pending record says how the next run
settles them), and the rerun, with MLflow back, must end with the new champion everywhere.
"""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from components.config import Settings
from components.index.store import connect_weaviate, live_collection
from tests.reliability.conftest import champion, edit_first_product, ledger, output, ragops, tiny_project
from tests.reliability.faults import CuttingProxy

pytestmark = pytest.mark.reliability
BUNDLE = "ragops-assistant"
CUTS = {
    "registration refused": (b"POST /api/2.0/mlflow/model-versions/create", "refuse"),
    "promotion refused": (b"POST /api/2.0/mlflow/registered-models/alias", "refuse"),
    "promotion answer lost": (b"POST /api/2.0/mlflow/registered-models/alias", "lose-answer"),
}


def _live(repo) -> str | None:
    with connect_weaviate(Settings(home=repo / ".ragops")) as client:
        return live_collection(client, "Catalog")


def _promoted(repo) -> list[tuple[str, str]]:
    return [(e["version"], e["collection"]) for e in ledger(repo) if e["action"] == "promote"]


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("cut", CUTS, ids=list(CUTS))
def test_no_partial_promotion_and_the_rerun_completes(project_root, tmp_path, mlflow_server, cut):
    upstream = MlflowClient(mlflow_server)  # the tests' own view, past the proxy
    proxy = CuttingProxy(int(mlflow_server.rsplit(":", 1)[1]))
    env = {"RAGOPS_MLFLOW_TRACKING_URI": proxy.url, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
           "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
    repo = tiny_project(project_root, tmp_path)
    try:
        first = ragops(repo, "run", env=env)
        assert first.returncode == 0, output(first)[-4000:]
        assert champion(upstream) == "1" and _live(repo) == "Catalog_v1"

        edit_first_product(repo, "Warranty:", "Extended warranty:")
        pattern, mode = CUTS[cut]
        proxy.arm(pattern, mode)
        failed = ragops(repo, "reindex", env=env)
        assert proxy.cut.is_set(), "the run never sent the request the fault was set on"
        assert failed.returncode != 0, output(failed)[-4000:]
        said = output(failed)
        if cut.startswith("promotion"):
            assert f"moving {BUNDLE}@champion to v2 failed" in said, said[-4000:]
            assert "rerun" in said
        else:
            assert "model-versions/create" in said or "Connection refused" in said, said[-4000:]

        # Nothing half promoted: the index alias and the ledger still name v1. The MLflow alias does
        # too, unless the lost answer had already moved it: then the pending record says so.
        assert _promoted(repo) == [("1", "Catalog_v1")]
        assert _live(repo) == "Catalog_v1"
        pending = repo / ".ragops" / "promotion-pending.json"
        if mode == "lose-answer":
            assert champion(upstream) == "2" and pending.exists()
        else:
            assert champion(upstream) == "1"

        proxy.restore()
        rerun = ragops(repo, "reindex", env=env)
        assert rerun.returncode == 0, output(rerun)[-4000:]
        now = champion(upstream)
        version = upstream.get_model_version(BUNDLE, now)
        assert int(now) >= 2 and version.tags["gates_passed"] == "True"
        assert _promoted(repo)[-1] == (now, version.tags["collection"]) == (now, _live(repo))
        assert not pending.exists()
        if mode == "lose-answer":  # the move the lost answer hid is completed, not redone
            assert now == "2" and "was interrupted after its commit; completed" in output(rerun)
        # Every registered version says what became of it; one its failed run never acted on says so.
        verdicts = {str(v.version): v.tags.get("verdict") for v in upstream.search_model_versions(f"name = '{BUNDLE}'")}
        assert all(verdicts.values()), verdicts
        if cut == "promotion refused":
            assert now == "3" and verdicts["2"].startswith("not acted on") and "superseded by v3" in verdicts["2"]
    finally:
        proxy.close()
