"""Champion moves against a real MLflow registry (SQLite) and a real Weaviate server: promotions
and rollbacks move both aliases together, and a move that cannot complete changes nothing."""

import dataclasses
import json

import mlflow
import pytest

from components.config import load_params
from components.index.store import connect_weaviate, create_collection, list_versions, live_collection
from components.registry.promotion import (
    PromotionError,
    approve,
    close_unacted_versions,
    pending_path,
    promote,
    read_promotion_ledger,
    review,
    rollback,
)
from components.registry.tracking import configure_mlflow, get_alias_version, set_alias
from components.settings import Settings

pytestmark = pytest.mark.integration


def _champion(settings, params) -> tuple[str, str]:
    version = str(get_alias_version(mlflow.MlflowClient(), params.promotion.bundle_name, "champion").version)
    with connect_weaviate(settings) as client:
        return version, live_collection(client, params.index.alias)


@pytest.fixture()
def registry(settings, project_root, tmp_path, monkeypatch, weaviate_service, request):
    """Four empty index versions of an alias of this test's own on the session's Weaviate server,
    an MLflow store with the bundle registered (no versions yet), the default params (but that
    alias), and a model source folder."""
    params = load_params(project_root / "params.yaml")
    alias = "Promo" + "".join(part.capitalize() for part in request.node.name.split("_")[1:4])
    params = dataclasses.replace(params, index=dataclasses.replace(params.index, alias=alias))
    for key, value in weaviate_service.env().items():
        monkeypatch.setenv(key, value)
    served = Settings()
    with connect_weaviate(served) as weaviate_client:
        for n in range(1, 5):
            create_collection(weaviate_client, f"{params.index.alias}_v{n}")
    client = configure_mlflow(served, "test")
    client.create_registered_model(params.promotion.bundle_name)
    (tmp_path / "model").mkdir()
    return served, params, client, str(tmp_path / "model")


def test_rollback_restores_the_previous_pairs_and_refuses_what_it_cannot_restore(registry):
    settings, params, client, source = registry
    name, alias = params.promotion.bundle_name, params.index.alias
    versions = [str(client.create_model_version(name, source=source).version) for _ in range(4)]
    for n, version in enumerate(versions, start=1):
        promote(settings, params, version, f"{alias}_v{n}", ["gates passed"])
    assert _champion(settings, params) == (versions[3], f"{alias}_v4")
    with connect_weaviate(settings) as weaviate_client:  # keep_versions=3 pruned the first index version
        assert list_versions(weaviate_client, alias) == [f"{alias}_v{n}" for n in (2, 3, 4)]

    done = rollback(settings, params)
    assert (done.version, done.collection, done.previous_version) == (versions[2], f"{alias}_v3", versions[3])
    assert _champion(settings, params) == (versions[2], f"{alias}_v3")
    assert rollback(settings, params).version == versions[1]  # a second rollback goes one further back
    assert _champion(settings, params) == (versions[1], f"{alias}_v2")

    ledger = settings.home / "promotions.jsonl"
    before = ledger.read_text()
    with pytest.raises(PromotionError, match=f"{alias}_v1 .* no longer exists"):
        rollback(settings, params)  # version 1's index was pruned: MLflow moved first, then was undone
    assert _champion(settings, params) == (versions[1], f"{alias}_v2")
    assert ledger.read_text() == before

    set_alias(client, name, "champion", versions[3])  # moved by hand, outside ragops
    with pytest.raises(PromotionError, match="moved outside ragops"):
        rollback(settings, params)
    entries = read_promotion_ledger(ledger)
    assert [(e["action"], e["version"]) for e in entries] == (
        [("promote", v) for v in versions] + [("rollback", versions[2]), ("rollback", versions[1])])
    assert all({"at", "by", "reasons", "collection", "previous_version"} <= set(e) for e in entries)
    assert json.loads(ledger.read_text().splitlines()[-1])["previous_collection"] == f"{alias}_v3"


def test_held_challengers_never_push_out_the_rollback_target(registry):
    """keep_versions=3: the champion's index v1, two challengers held (v2, v3 built, never live),
    then v4 promoted. The newest three stay, and so does the rollback target v1."""
    settings, params, client, source = registry
    name, alias = params.promotion.bundle_name, params.index.alias
    first, second = (str(client.create_model_version(name, source=source).version) for _ in range(2))
    promote(settings, params, first, f"{alias}_v1", ["gates passed"])
    promote(settings, params, second, f"{alias}_v4", ["gates passed"])
    with connect_weaviate(settings) as weaviate_client:
        assert list_versions(weaviate_client, alias) == [f"{alias}_v{n}" for n in (1, 2, 3, 4)]
    assert rollback(settings, params).collection == f"{alias}_v1"
    assert _champion(settings, params) == (first, f"{alias}_v1")


def _evaluated_version(client, name: str, source: str, collection: str, passed: bool, deltas: dict,
                       compared_with: str = "none") -> str:
    """A bundle version whose evaluation run logged paired differences (delta, low, high) from champion `compared_with`."""
    with mlflow.start_run(run_name="evaluate-bundle") as run:
        for metric, (delta, low, high) in deltas.items():
            mlflow.log_metrics({f"vs_champion_{metric}": delta, f"vs_champion_{metric}_low": low,
                                f"vs_champion_{metric}_high": high})
    tags = {"gates_passed": str(passed), "collection": collection, "run_id": run.info.run_id,
            "compared_with_champion": compared_with,
            "gate_reasons": "key_fact_accuracy 0.100 < 0.300" if not passed else "all gates passed"}
    return str(client.create_model_version(name, source=source, tags=tags).version)


def test_review_shows_deltas_and_promote_approves_only_what_passed(registry):
    settings, params, client, source = registry
    name, alias = params.promotion.bundle_name, params.index.alias
    first = _evaluated_version(client, name, source, f"{alias}_v1", True, {})
    promote(settings, params, first, f"{alias}_v1", ["gates passed"])
    worse = _evaluated_version(client, name, source, f"{alias}_v2", False,
                               {"key_fact_accuracy": (-0.70, -0.80, -0.60), "retrieval_mrr": (0.05, 0.0, 0.1)}, first)
    better = _evaluated_version(client, name, source, f"{alias}_v3", True,
                                {"key_fact_accuracy": (0.05, -0.02, 0.12), "retrieval_mrr": (0.0, 0.0, 0.0)}, first)

    champion, candidates = review(params)
    assert champion == first and [c.version for c in candidates] == [worse, better]
    assert not candidates[0].gates_passed and "key_fact_accuracy" in candidates[0].reasons
    assert candidates[0].deltas["key_fact_accuracy"] == pytest.approx((-0.70, -0.80, -0.60))
    assert set(candidates[1].deltas) == {"key_fact_accuracy", "retrieval_mrr"}
    assert candidates[1].deltas["key_fact_accuracy"] == pytest.approx((0.05, -0.02, 0.12))
    assert {c.compared_with for c in candidates} == {first}

    with pytest.raises(PromotionError, match="did not pass its gates .*key_fact_accuracy"):
        approve(settings, params, worse)
    assert _champion(settings, params) == (first, f"{alias}_v1")
    approve(settings, params, better)
    assert _champion(settings, params) == (better, f"{alias}_v3")
    last = read_promotion_ledger(settings.home / "promotions.jsonl")[-1]
    assert (last["action"], last["version"], last["previous_version"]) == ("promote", better, first)
    assert last["reasons"][0].startswith("approved by ")
    assert review(params) == (better, [])


def test_versions_never_acted_on_get_a_verdict_saying_so(registry):
    settings, params, client, source = registry
    name = params.promotion.bundle_name
    promoted, orphan, pending, current = (str(client.create_model_version(name, source=source).version)
                                          for _ in range(4))
    client.set_model_version_tag(name, promoted, "verdict", "promoted")
    # `pending` is the version a half-done move names: it is left for that move to settle.
    pending_path(settings).write_text(json.dumps({"bundle": name, "version": pending}))
    client.set_model_version_tag(name, current, "verdict", "held: awaiting approval")
    later = str(client.create_model_version(name, source=source).version)  # registered after `current`

    assert close_unacted_versions(client, settings, name, current) == [orphan]
    verdicts = {str(v.version): v.tags.get("verdict") for v in client.search_model_versions(f"name = '{name}'")}
    assert verdicts[promoted] == "promoted" and verdicts[current] == "held: awaiting approval"
    assert verdicts[orphan] == ("not acted on: the run that registered it stopped before its promotion step; "
                                f"superseded by v{current}")
    assert verdicts[pending] is None and verdicts[later] is None
    assert close_unacted_versions(client, settings, name, current) == []  # once only


def test_without_a_champion_ask_names_the_held_version_and_why(registry):
    """`ragops ask` with no champion: the newest held version, its failed gates, or, when its gates
    passed (promotion.require_approval), that it awaits approval and the command that gives it."""
    from components.serving.ask import no_champion_message

    settings, params, client, source = registry
    name, alias = params.promotion.bundle_name, params.index.alias
    assert "no bundle version yet; run `ragops run` first" in no_champion_message(params, settings)
    failed = _evaluated_version(client, name, source, f"{alias}_v1", False, {})
    said = no_champion_message(params, settings)
    assert f"v{failed} is held, failed gates: key_fact_accuracy 0.100 < 0.300" in said
    assert f"`ragops ask --version {failed} QUESTION`" in said
    passed = _evaluated_version(client, name, source, f"{alias}_v2", True, {})
    said = no_champion_message(params, settings)
    assert f"v{passed} passed its gates and awaits approval (`ragops promote {passed}`)" in said
    assert "failed gates" not in said
