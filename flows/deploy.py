"""`ragops deploy`: serve the Prefect deployments and turn document edits into reindex runs.

    ragops deploy                    # against PREFECT_API_URL, or a temporary local server

- `ragops-reindex/on-document-change`: an event trigger on `ragops.documents.changed`. The
  trigger fires on the first event of a burst and ignores the rest of `index.debounce_seconds`;
  the run is scheduled for the end of that window and reads the documents folder itself, so
  it includes every change of the burst. Deployment concurrency 1 (ENQUEUE): a change during a
  run triggers a run that waits for it, then picks the change up.
- `ragops-retrain/on-demand`: the retraining flow, run from the UI or `prefect deployment run`.

Index builds and promotions of both flows hold the global concurrency limit `ragops-index`.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

from prefect import serve
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.events import DeploymentEventTrigger, emit_event
from prefect.events.schemas.automations import Posture

from components.config import Params
from components.watch import Changes, watch_folder
from flows.pipeline import INDEX_LOCK, retrain
from flows.reindex import reindex

DOCUMENTS_EVENT = "ragops.documents.changed"
DOCUMENTS_RESOURCE = "ragops.documents"


def emit_documents_changed(folder: Path, changes: Changes) -> None:
    emit_event(event=DOCUMENTS_EVENT, resource={"prefect.resource.id": DOCUMENTS_RESOURCE,
                                                "ragops.folder": str(folder.resolve())},
               payload={"added": changes.added, "modified": changes.modified, "removed": changes.removed})
    print(f"documents changed: {changes.count} files ({', '.join((changes.added + changes.modified + changes.removed)[:5])}"
          f"{'...' if changes.count > 5 else ''}) → event {DOCUMENTS_EVENT}")


def reindex_trigger(debounce_seconds: float) -> DeploymentEventTrigger:
    window = timedelta(seconds=debounce_seconds)
    return DeploymentEventTrigger(name="documents changed", expect={DOCUMENTS_EVENT},
                                  match={"prefect.resource.id": DOCUMENTS_RESOURCE}, posture=Posture.Reactive,
                                  threshold=1, within=window, schedule_after=window)


def deployments(project: Path, params_path: str, params: Params) -> list:
    args = {"project_path": str(project.resolve()), "params_path": params_path}
    one_at_a_time = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)
    return [
        reindex.to_deployment(name="on-document-change", parameters={**args, "reason": "documents-changed"},
                              triggers=[reindex_trigger(params.index.debounce_seconds)],
                              concurrency_limit=one_at_a_time,
                              description="Reindex when documents change, evaluate with the champion's models, promote."),
        retrain.to_deployment(name="on-demand", parameters=args, concurrency_limit=one_at_a_time,
                              description="Curate, validate, train router and generator, index, evaluate, promote."),
    ]


def deploy(project: Path, params_path: str, params: Params) -> None:
    """Serve the deployments and watch the documents folder until interrupted."""
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(INDEX_LOCK, 1)
    folder = project / params.data.raw_dir / "documents"
    stop = threading.Event()
    watcher = threading.Thread(target=watch_folder, name="documents-watcher", daemon=True, kwargs={
        "folder": folder, "on_change": lambda changes: emit_documents_changed(folder, changes),
        "poll_seconds": params.index.watch_poll_seconds, "settle_seconds": params.index.watch_poll_seconds,
        "stop": stop})
    watcher.start()
    try:
        serve(*deployments(project, params_path, params))
    finally:
        stop.set()
