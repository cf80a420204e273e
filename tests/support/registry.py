"""Readers of what a run leaves behind: the MLflow registry, the promotion ledger, the live
Weaviate alias, and a Prefect server's flow runs."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from mlflow import MlflowClient

from components.index.store import chunk_counts, connect_weaviate, live_collection, read_index_ledger
from components.settings import Settings
from tests.support.processes import wait_for

BUNDLE = "ragops-assistant"
FINAL_STATES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def mlflow_client(repo: Path) -> MlflowClient:
    """The project's embedded MLflow store (SQLite under .ragops)."""
    return MlflowClient(f"sqlite:///{repo / '.ragops' / 'mlflow.db'}")


def champion(client: MlflowClient, name: str = BUNDLE) -> str | None:
    aliases = client.get_registered_model(name).aliases
    return str(aliases["champion"]) if "champion" in aliases else None


def version_counts(client: MlflowClient) -> dict[str, int]:
    return {m.name: len(client.search_model_versions(f"name = '{m.name}'")) for m in client.search_registered_models()}


def ledger(repo: Path) -> list[dict]:
    path = repo / ".ragops" / "promotions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def live_index(settings: Settings, alias: str = "Catalog") -> str | None:
    with connect_weaviate(settings) as client:
        return live_collection(client, alias)


def chunk_mismatch(settings: Settings, collection: str, alias: str = "Catalog") -> str:
    """What the index version lacks against its ledger, read from the server `settings` names (on a
    cluster, that node's own replica): "" when it holds exactly the chunks the ledger lists, once."""
    with connect_weaviate(settings) as client:
        sealed = read_index_ledger(client, alias, collection)
        if sealed is None:
            return f"{collection} has no ledger"
        expected = {doc: len(entry.chunk_ids) for doc, entry in sealed.documents.items()}
        counts = chunk_counts(client, collection)
        if counts != expected:
            wrong = sorted(doc for doc in expected.keys() | counts.keys() if counts.get(doc) != expected.get(doc))
            return f"{collection}: {len(wrong)} documents with other chunk counts than the ledger's, e.g. " + ", ".join(
                f"{doc} {counts.get(doc, 0)}/{expected.get(doc, 0)}" for doc in wrong[:5])
        stored = len(client.collections.get(collection))
        return "" if stored == sealed.chunk_count else f"{collection}: {stored} objects, the ledger lists {sealed.chunk_count}"


def assert_every_chunk_once(settings: Settings, collection: str, alias: str = "Catalog") -> None:
    """The index version holds exactly the objects its ledger lists: no chunk lost, none twice."""
    mismatch = chunk_mismatch(settings, collection, alias)
    assert not mismatch, mismatch


def prefect_request(method: str, url: str, attempts: int = 3, **kwargs) -> httpx.Response:
    """A request to a Prefect server that answers slowly at times: its SQLite database is written by
    the flow runs it orchestrates, on a machine that also trains models (a 10 s read timeout was
    hit once with both test workers busy). A timed-out request is sent again; anything else raises."""
    for _ in range(attempts - 1):
        try:
            return httpx.request(method, url, timeout=30, **kwargs)
        except httpx.TimeoutException:
            continue
    return httpx.request(method, url, timeout=30, **kwargs)


def deployment_runs(api: str, deployment: str) -> list[dict]:
    """The flow runs of a deployment ("flow/deployment"), oldest first."""
    found = prefect_request("GET", f"{api}/deployments/name/{deployment}")
    if found.status_code != 200:
        return []
    runs = prefect_request("POST", f"{api}/flow_runs/filter",
                           json={"deployments": {"id": {"any_": [found.json()["id"]]}}}).json()
    return sorted(runs, key=lambda r: r["created"])


def flow_run_final(api: str, run_id: str) -> dict | None:
    """The flow run once it is in a final state, else None."""
    run = prefect_request("GET", f"{api}/flow_runs/{run_id}").json()
    return run if run["state_type"] in FINAL_STATES else None


def flow_run_story(api: str, run_id: str) -> str:
    """The flow run's name and states, oldest first, with their messages: what a test says when the
    run did not end as expected (still SCHEDULED: no runner took it; AwaitingConcurrencySlot: a
    deployment slot was held)."""
    run = prefect_request("GET", f"{api}/flow_runs/{run_id}").json()
    states = prefect_request("GET", f"{api}/flow_run_states/", params={"flow_run_id": run_id}).json()
    lines = [f"{s['timestamp']} {s['type']}/{s['name']}: {(s.get('message') or '')[:300]}"
             for s in sorted(states, key=lambda s: s["timestamp"])]
    return f"flow run {run['name']!r} ({run_id}), now {run['state_type']}:\n" + "\n".join(lines)


def finished_flow_run(api: str, run_id: str, timeout: float, what: str) -> dict:
    """The flow run once final; its story in the failure when it is not final after `timeout`
    seconds or did not complete."""
    try:
        run = wait_for(lambda: flow_run_final(api, run_id), timeout, what, interval=2)
    except AssertionError as late:
        raise AssertionError(f"{late}\n{flow_run_story(api, run_id)}") from None
    assert run["state_type"] == "COMPLETED", flow_run_story(api, run_id)
    return run


def deployment_exists(api: str, deployment: str) -> bool:
    return prefect_request("GET", f"{api}/deployments/name/{deployment}").status_code == 200
