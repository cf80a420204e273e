"""Readers of what a run leaves behind: the MLflow registry, the promotion ledger, the live
Weaviate alias, and a Prefect server's flow runs."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from mlflow import MlflowClient

from components.index.store import chunk_counts, connect_weaviate, live_collection, read_index_ledger
from components.settings import Settings

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


def assert_every_chunk_once(settings: Settings, collection: str, alias: str = "Catalog") -> None:
    """The index version holds exactly the objects its ledger lists: no chunk lost, none twice."""
    with connect_weaviate(settings) as client:
        sealed = read_index_ledger(client, alias, collection)
        counts = chunk_counts(client, collection)
        assert counts == {doc: len(entry.chunk_ids) for doc, entry in sealed.documents.items()}
        assert len(client.collections.get(collection)) == sealed.chunk_count


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


def deployment_exists(api: str, deployment: str) -> bool:
    return prefect_request("GET", f"{api}/deployments/name/{deployment}").status_code == 200
