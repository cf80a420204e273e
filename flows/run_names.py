"""Flow-run names that say what the run did, set when it ends (the Prefect UI lists them).

A run starts as `retrain-schedule` or `reindex-documents-changed`; it ends as, for example,
`retrain (schedule): router v2 reused, generator v3 trained, Catalog_v4 new, bundle v5 → champion`.
"""

from __future__ import annotations

from prefect.client.orchestration import get_client
from prefect.runtime import flow_run

MAX_NAME = 200


def rename_current_run(name: str) -> None:
    """Rename the running flow run; a no-op outside a flow run."""
    if flow_run.id:
        with get_client(sync_client=True) as client:
            client.update_flow_run(flow_run.id, name=name[:MAX_NAME])


def model_part(kind: str, model) -> str:
    return f"{kind} v{model.version} {'reused' if model.reused else 'trained'}"


def index_part(index) -> str:
    if not index.new:
        return f"{index.collection} unchanged"
    return f"{index.collection} new ({len(index.changed_docs)} changed, {len(index.deleted_docs)} deleted documents)"


def bundle_part(promotion, evaluated: bool) -> str:
    if not evaluated:
        return f"nothing new to evaluate, bundle v{promotion.bundle_version} stays {promotion.alias}"
    return f"bundle v{promotion.bundle_version} → {promotion.alias}"
