"""MLflow becomes unreachable while a run registers or promotes a bundle.

The tiny champion's project, its tracking store now behind a real `mlflow server` (as a team
moving its embedded store to a server does), which sits behind a proxy that goes down at a chosen
request (tests/support/faults.py): the request that creates the bundle's model version (registration), or the one that
moves `champion` (promotion), either refused or carried out with its answer lost. The run must
fail with a reason that says what to do, nothing may be half promoted (the MLflow alias, the
Weaviate alias and the ledger name one champion, or the pending record says how the next run
settles them), and the rerun, with MLflow back, must end with the new champion everywhere.
"""

from __future__ import annotations

import re

import pytest
from mlflow import MlflowClient

from components.settings import Settings
from tests.support.cli import output, ragops
from tests.support.faults import CuttingProxy
from tests.support.processes import start_mlflow_server
from tests.support.project import edit_first_product
from tests.support.registry import champion, ledger, live_index

pytestmark = pytest.mark.reliability
BUNDLE = "ragops-assistant"
CUTS = {
    "registration refused": (b"POST /api/2.0/mlflow/model-versions/create", "refuse"),
    "promotion refused": (b"POST /api/2.0/mlflow/registered-models/alias", "refuse"),
    "promotion answer lost": (b"POST /api/2.0/mlflow/registered-models/alias", "lose-answer"),
}


def _live(repo) -> str | None:
    return live_index(Settings(home=repo / ".ragops"))


def _promoted(repo) -> list[tuple[str, str]]:
    return [(e["version"], e["collection"]) for e in ledger(repo) if e["action"] == "promote"]


def _fail_once(repo, proxy: CuttingProxy, env: dict, cut: str, edit: tuple[str, str]):
    """Edit a document, arm the proxy for `cut`, reindex: the run must fail on that request."""
    edit_first_product(repo, *edit)
    proxy.arm(*CUTS[cut])
    failed = ragops(repo, "reindex", env=env)
    assert proxy.cut.is_set(), f"{cut}: the run never sent the request the fault was set on"
    assert failed.returncode != 0, output(failed)[-4000:]
    return output(failed)


def _rerun_completes(repo, proxy: CuttingProxy, env: dict, upstream: MlflowClient) -> tuple[str, str]:
    """MLflow back: the rerun ends with one champion everywhere (MLflow, ledger, Weaviate alias)."""
    proxy.restore()
    rerun = ragops(repo, "reindex", env=env)
    assert rerun.returncode == 0, output(rerun)[-4000:]
    now = champion(upstream)
    version = upstream.get_model_version(BUNDLE, now)
    assert version.tags["gates_passed"] == "True"
    assert _promoted(repo)[-1] == (now, version.tags["collection"]) == (now, _live(repo))
    assert not (repo / ".ragops" / "promotion-pending.json").exists()
    return now, output(rerun)


# One project goes through the three cuts in turn (a first run per cut would add minutes to CI).
@pytest.mark.heavy
@pytest.mark.timeout(2400)
def test_no_partial_promotion_and_the_rerun_completes(champion_repo, tmp_path):
    repo = champion_repo
    server, uri = start_mlflow_server(tmp_path / "mlflow-server", tmp_path / "mlflow-server.log",
                                      database=repo / ".ragops" / "mlflow.db")
    upstream = MlflowClient(uri)  # the tests' own view, past the proxy
    proxy = CuttingProxy(int(uri.rsplit(":", 1)[1]))
    env = {"RAGOPS_MLFLOW_TRACKING_URI": proxy.url, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
           "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
    pending = repo / ".ragops" / "promotion-pending.json"
    try:
        assert champion(upstream) == "1" and _live(repo) == "Catalog_v1"

        # Registration refused: no version, nothing moved.
        said = _fail_once(repo, proxy, env, "registration refused", ("Warranty:", "Warranty (a):"))
        assert "model-versions/create" in said or "Connection refused" in said, said[-4000:]
        assert _promoted(repo) == [("1", "Catalog_v1")] and _live(repo) == "Catalog_v1"
        assert champion(upstream) == "1"
        before, _ = _rerun_completes(repo, proxy, env, upstream)
        assert int(before) >= 2

        # Promotion refused: the registered version is not the champion anywhere.
        promoted, live = _promoted(repo), _live(repo)
        said = _fail_once(repo, proxy, env, "promotion refused", ("Warranty (a):", "Warranty (b):"))
        refused = re.search(rf"moving {BUNDLE}@champion to v(\d+) failed", said)
        assert refused and "rerun" in said, said[-4000:]
        assert _promoted(repo) == promoted and _live(repo) == live and champion(upstream) == before
        now, _ = _rerun_completes(repo, proxy, env, upstream)
        orphan = upstream.get_model_version(BUNDLE, refused[1]).tags.get("verdict", "")
        # the refused version was never acted on, and says so
        assert int(now) > int(refused[1]) and orphan.startswith("not acted on") and f"superseded by v{now}" in orphan

        # Promotion answer lost: MLflow committed, the index alias and the ledger did not follow yet;
        # the pending record says so, and the rerun completes that move instead of redoing it.
        promoted, live = _promoted(repo), _live(repo)
        said = _fail_once(repo, proxy, env, "promotion answer lost", ("Warranty (b):", "Warranty (c):"))
        lost = re.search(rf"moving {BUNDLE}@champion to v(\d+) failed", said)
        assert lost and "rerun" in said, said[-4000:]
        assert _promoted(repo) == promoted and _live(repo) == live
        assert champion(upstream) == lost[1] and pending.exists()
        now, said = _rerun_completes(repo, proxy, env, upstream)
        assert now == lost[1] and "was interrupted after its commit; completed" in said

        # Every registered version says what became of it.
        verdicts = {str(v.version): v.tags.get("verdict") for v in upstream.search_model_versions(f"name = '{BUNDLE}'")}
        assert all(verdicts.values()), verdicts
    finally:
        proxy.close()
        server.stop()
