"""Moving the champion: the MLflow alias `champion` and the Weaviate serving alias move together,
and every move is written to the append-only promotion ledger (an intent record covers a run
that dies or loses a service half way).

    >>> rollback(Settings(), load_params("params.yaml"))  # doctest: +SKIP
    Rollback(version='3', collection='Catalog_v3', previous_version='4', previous_collection='Catalog_v4')
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import mlflow

from components.config import PAIRED_METRICS, Params
from components.index.store import connect_weaviate, list_versions, live_collection, point_alias, prune_versions
from components.registry.tracking import get_alias_version, set_alias
from components.settings import Settings

# Set on a bundle version once its promotion step has acted ("promoted" or "held: <why>"). A version
# registered by a run that died before promoting has none until a later run's promotion step marks it
# "not acted on ..." (close_unacted_versions); its evaluation is never reused.
VERDICT_TAG = "verdict"
ACTED_VERDICTS = ("promoted", "held")  # the verdict values an evaluation can be reused on (prefixes)


def close_unacted_versions(client: mlflow.MlflowClient, settings: Settings, name: str, current: str) -> list[str]:
    """Give every version of `name` older than `current` that has no verdict one saying it was never
    acted on: the run that registered it stopped before its promotion step (a service down, a kill),
    and a later run evaluated again. Call under the index lock, after a pending move is settled (a
    version the pending record names is left to it). Returns the versions tagged."""
    pending = _read_pending(settings) or {}
    tagged = []
    for version in client.search_model_versions(f"name = '{name}'"):
        number = str(version.version)
        if (VERDICT_TAG in version.tags or int(number) >= int(current)
                or (pending.get("bundle") == name and pending.get("version") == number)):
            continue
        client.set_model_version_tag(name, number, VERDICT_TAG,
                                     f"not acted on: the run that registered it stopped before its promotion step; "
                                     f"superseded by v{current}")
        tagged.append(number)
    return tagged


class PromotionError(RuntimeError):
    """The champion cannot be moved; the message says why, what state things are in and what to do."""


@dataclass(frozen=True)
class ChampionMove:
    previous_version: str | None
    previous_collection: str | None


def promotion_ledger_path(settings: Settings) -> Path:
    return settings.home / "promotions.jsonl"


def pending_path(settings: Settings) -> Path:
    """The move in progress: written before the aliases move, removed once the ledger has it."""
    return settings.home / "promotion-pending.json"


def read_promotion_ledger(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _read_pending(settings: Settings) -> dict | None:
    path = pending_path(settings)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _write_pending(settings: Settings, entry: dict) -> None:
    path = pending_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entry, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def _point_or_remove(weaviate_client, alias: str, collection: str | None) -> None:
    if collection is not None:
        point_alias(weaviate_client, alias, collection)
    elif live_collection(weaviate_client, alias) is not None:
        weaviate_client.alias.delete(alias_name=alias)


def finish_interrupted_move(settings: Settings, params: Params) -> str | None:
    """Settle a move a failed or killed run left half done (see move_champion). The MLflow alias
    is the commit point: if it names the pending version the move happened, and the Weaviate
    alias and the ledger are brought up to it; otherwise the Weaviate alias goes back. Returns
    what was done, None when nothing was pending. Needs both services; raises if one is down
    (the record stays for the next attempt)."""
    entry = _read_pending(settings)
    if entry is None:
        return None
    name = entry["bundle"]
    champion = get_alias_version(mlflow.MlflowClient(), name, "champion")
    committed = champion is not None and str(champion.version) == entry["version"]
    with connect_weaviate(settings) as weaviate_client:
        _point_or_remove(weaviate_client, params.index.alias, entry["collection"] if committed else
                         entry["previous_collection"])
    ledger = promotion_ledger_path(settings)
    recorded = [e for e in read_promotion_ledger(ledger) if e.get("bundle") == name]
    already = bool(recorded) and all(recorded[-1].get(k) == entry[k] for k in ("action", "version", "collection"))
    if committed and not already:
        append_promotion_ledger(ledger, {**entry, "reasons": entry["reasons"] + ["completed after an interrupted run"]})
    if committed and entry["action"] == "promote":
        mlflow.MlflowClient().set_model_version_tag(name, entry["version"], VERDICT_TAG, "promoted")
    pending_path(settings).unlink()
    done = (f"{entry['action']} of {name} v{entry['version']} was interrupted after its commit; completed"
            if committed else f"{entry['action']} of {name} v{entry['version']} was interrupted before its commit; "
            f"undone (champion v{entry['previous_version']}, index {entry['previous_collection']})")
    print(done)
    return done


def move_champion(settings: Settings, params: Params, version: str, collection: str, action: str,
                  reasons: list[str]) -> ChampionMove:
    """Point the Weaviate alias at `collection`, then `champion` at bundle `version` (the commit
    point: serving follows it), then record the move in the ledger. An intent record makes the
    three one unit: a failure undoes what moved when it can, and the next move settles a run
    that died half way (finish_interrupted_move), so the aliases and the ledger end up agreeing."""
    try:
        finish_interrupted_move(settings, params)
    except Exception as exc:
        raise PromotionError(f"an earlier move of the champion is recorded in {pending_path(settings)} but not settled, "
                             f"and settling it failed ({type(exc).__name__}: {str(exc)[:300]}); rerun once MLflow and "
                             f"Weaviate answer") from exc
    client = mlflow.MlflowClient()
    name = params.promotion.bundle_name
    previous = get_alias_version(client, name, "champion")
    previous_version = str(previous.version) if previous else None
    with connect_weaviate(settings) as weaviate_client:
        if collection not in list_versions(weaviate_client, params.index.alias):
            raise PromotionError(f"index version {collection} of bundle {name} v{version} no longer exists "
                                 f"(only the newest index.keep_versions={params.index.keep_versions} are kept)")
        previous_collection = live_collection(weaviate_client, params.index.alias)
        entry = {"action": action, "bundle": name, "version": version, "collection": collection,
                 "previous_version": previous_version, "previous_collection": previous_collection, "reasons": reasons}
        _write_pending(settings, entry)
        try:
            point_alias(weaviate_client, params.index.alias, collection)
            set_alias(client, name, "champion", version)
        except Exception as exc:
            failed = f"moving {name}@champion to v{version} failed ({type(exc).__name__}: {str(exc)[:300]})"
            try:
                finish_interrupted_move(settings, params)
            except Exception:
                # MLflow cannot tell whether its alias moved (down, or the answer was lost): the index
                # alias goes back, for the likelier case of a refused request; the record stays.
                with contextlib.suppress(Exception):
                    _point_or_remove(weaviate_client, params.index.alias, previous_collection)
                raise PromotionError(
                    f"{failed}; it could not be settled now: {pending_path(settings)} records the move and the next "
                    f"promotion or rollback completes or undoes it once MLflow and Weaviate answer; rerun then") from exc
            raise PromotionError(f"{failed}; undone: the champion is still v{previous_version}, the index alias "
                                 f"still {previous_collection}; rerun once the service answers") from exc
        append_promotion_ledger(promotion_ledger_path(settings), entry)
        pending_path(settings).unlink()
        target = rollback_target(champion_history(read_promotion_ledger(promotion_ledger_path(settings)), name))
        prune_versions(weaviate_client, params.index.alias, params.index.keep_versions,
                       protect=[target["collection"]] if target else [])
    return ChampionMove(previous_version, previous_collection)


def promote(settings: Settings, params: Params, version: str, collection: str, reasons: list[str]) -> ChampionMove:
    """Make bundle `version` (serving `collection`) the champion and record it in the ledger."""
    version = str(version)  # the SQLite registry hands out ints where the API promises strings
    return move_champion(settings, params, version, collection, "promote", reasons)


def rollback_target(history: list[dict]) -> dict | None:
    """The champion a rollback restores (the one before the current), from `champion_history`."""
    return history[-2] if len(history) >= 2 else None


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
    path = promotion_ledger_path(settings)
    history = champion_history(read_promotion_ledger(path), name)
    current = get_alias_version(mlflow.MlflowClient(), name, "champion")
    if current is None:
        raise PromotionError(f"{name} has no champion to roll back; run `ragops run` first")
    if not history or str(history[-1]["version"]) != str(current.version):
        recorded = history[-1]["version"] if history else "none"
        raise PromotionError(f"{name}@champion is v{current.version} but the ledger {path} says v{recorded}: the "
                             f"alias was moved outside ragops; move it back or promote with `ragops promote`")
    target = rollback_target(history)
    if target is None:
        raise PromotionError(f"{name} v{current.version} is the first champion in {path}; there is none to "
                             f"roll back to")
    moved = move_champion(settings, params, str(target["version"]), target["collection"], "rollback",
                          [f"rolled back from v{current.version}"])
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


def append_promotion_ledger(path: Path, entry: dict) -> None:
    """Append-only JSONL record of every promotion decision (MLflow keeps no alias history)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "by": getpass.getuser(), **entry}
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
