"""Moving the champion: the MLflow alias `champion` and the Weaviate serving alias move together,
and every move is written to the append-only promotion ledger.

    >>> rollback(Settings(), load_params("params.yaml"))  # doctest: +SKIP
    Rollback(version='3', collection='Catalog_v3', previous_version='4', previous_collection='Catalog_v4')
"""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass
from pathlib import Path

import mlflow

from components.config import Params, Settings
from components.gates import PAIRED_METRICS
from components.index.store import connect_weaviate, list_versions, point_alias, prune_versions
from components.registry import append_ledger, get_alias_version, set_alias


class PromotionError(RuntimeError):
    """The champion cannot be moved; the message says why and what to do. Nothing was changed."""


@dataclass(frozen=True)
class ChampionMove:
    previous_version: str | None
    previous_collection: str | None


def ledger_path(settings: Settings) -> Path:
    return settings.home / "promotions.jsonl"


def read_ledger(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def move_champion(settings: Settings, params: Params, version: str, collection: str) -> ChampionMove:
    """Point `champion` at bundle `version` and the Weaviate alias at its `collection`. If the second
    move fails the first is undone, so the two aliases always name the same bundle."""
    client = mlflow.MlflowClient()
    name = params.promotion.bundle_name
    previous = get_alias_version(client, name, "champion")
    set_alias(client, name, "champion", version)
    try:
        with connect_weaviate(settings) as weaviate_client:
            if collection not in list_versions(weaviate_client, params.index.alias):
                raise PromotionError(f"index version {collection} of bundle {name} v{version} no longer exists "
                                     f"(only the newest index.keep_versions={params.index.keep_versions} are kept)")
            previous_collection = point_alias(weaviate_client, params.index.alias, collection)
            prune_versions(weaviate_client, params.index.alias, params.index.keep_versions)
    except Exception:
        if previous is not None:
            set_alias(client, name, "champion", previous.version)
        else:
            client.delete_registered_model_alias(name, "champion")
        raise
    return ChampionMove(str(previous.version) if previous else None, previous_collection)


def promote(settings: Settings, params: Params, version: str, collection: str, reasons: list[str]) -> ChampionMove:
    """Make bundle `version` (serving `collection`) the champion and record it in the ledger."""
    version = str(version)  # the SQLite registry hands out ints where the API promises strings
    moved = move_champion(settings, params, version, collection)
    append_ledger(ledger_path(settings), {
        "action": "promote", "bundle": params.promotion.bundle_name, "version": version, "collection": collection,
        "previous_version": moved.previous_version, "previous_collection": moved.previous_collection,
        "reasons": reasons})
    return moved


def champion_history(entries: list[dict], bundle: str) -> list[dict]:
    """The champions of `bundle` in order, replayed from the ledger: a promotion pushes its entry,
    a rollback pops the champion it replaced."""
    stack: list[dict] = []
    for entry in entries:
        if entry.get("bundle") != bundle:
            continue
        if entry["action"] == "promote":
            stack.append(entry)
        elif entry["action"] == "rollback" and stack:
            stack.pop()
    return stack


@dataclass(frozen=True)
class Rollback:
    version: str
    collection: str
    previous_version: str
    previous_collection: str | None


def rollback(settings: Settings, params: Params) -> Rollback:
    """Restore the champion pair (bundle version and index version) that was live before the
    current one; a second rollback goes one further back."""
    name = params.promotion.bundle_name
    path = ledger_path(settings)
    history = champion_history(read_ledger(path), name)
    current = get_alias_version(mlflow.MlflowClient(), name, "champion")
    if current is None:
        raise PromotionError(f"{name} has no champion to roll back; run `ragops run` first")
    if not history or str(history[-1]["version"]) != str(current.version):
        recorded = history[-1]["version"] if history else "none"
        raise PromotionError(f"{name}@champion is v{current.version} but the ledger {path} says v{recorded}: the "
                             f"alias was moved outside ragops; move it back or promote with `ragops promote`")
    if len(history) < 2:
        raise PromotionError(f"{name} v{current.version} is the first champion in {path}; there is none to "
                             f"roll back to")
    target = history[-2]
    moved = move_champion(settings, params, target["version"], target["collection"])
    append_ledger(path, {"action": "rollback", "bundle": name, "version": target["version"],
                         "collection": target["collection"], "previous_version": moved.previous_version,
                         "previous_collection": moved.previous_collection,
                         "reasons": [f"rolled back from v{current.version}"]})
    return Rollback(str(target["version"]), target["collection"], str(current.version), moved.previous_collection)


def approve(settings: Settings, params: Params, version: str) -> ChampionMove:
    """The human approval step (`ragops promote VERSION`): a bundle version whose gates passed
    becomes the champion; one whose gates failed is refused with its reasons."""
    name = params.promotion.bundle_name
    found = mlflow.MlflowClient().get_model_version(name, version)
    if found.tags.get("gates_passed") != "True":
        raise PromotionError(f"{name} v{version} did not pass its gates ({found.tags.get('gate_reasons', 'no gate record')}); "
                             f"it cannot be promoted")
    return promote(settings, params, version, found.tags["collection"], [f"approved by {getpass.getuser()}"])


@dataclass(frozen=True)
class Candidate:
    version: str
    collection: str
    gates_passed: bool
    reasons: str
    compared_with: str  # the champion version its paired comparison was made against ("none": no champion then)
    deltas: dict[str, tuple[float, float, float]]  # metric → (candidate minus champion, 95% CI low, high)


def review(params: Params, metrics: tuple[str, ...] = PAIRED_METRICS) -> tuple[str | None, list[Candidate]]:
    """The champion version and every newer bundle version, with its gate outcome and the paired
    differences from the champion its evaluation was compared with."""
    client = mlflow.MlflowClient()
    name = params.promotion.bundle_name
    champion = get_alias_version(client, name, "champion")
    newer = [v for v in client.search_model_versions(f"name = '{name}'")
             if champion is None or int(v.version) > int(champion.version)]
    candidates = []
    for found in sorted(newer, key=lambda v: int(v.version)):
        logged = client.get_run(found.tags["run_id"]).data.metrics if "run_id" in found.tags else {}
        deltas = {m: (logged[f"vs_champion_{m}"], logged[f"vs_champion_{m}_low"], logged[f"vs_champion_{m}_high"])
                  for m in metrics if f"vs_champion_{m}" in logged}
        candidates.append(Candidate(
            str(found.version), found.tags.get("collection", ""), found.tags.get("gates_passed") == "True",
            found.tags.get("gate_reasons", ""), found.tags.get("compared_with_champion", "none"), deltas))
    return (str(champion.version) if champion else None), candidates
