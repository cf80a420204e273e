"""`ragops deploy`: the Prefect deployments, and a watcher that turns document edits into events.

    ragops deploy                          # serve them in this process (PREFECT_API_URL, or a temporary server)
    ragops deploy --work-pool ragops       # register them on a work pool; its workers run them

- `ragops-reindex/on-document-change`: an event trigger on `ragops.documents.changed`. The
  trigger fires on the first event of a burst and ignores the rest of `index.debounce_seconds`;
  the run is scheduled for the end of that window and reads the documents folder itself, so
  it includes every change of the burst. Deployment concurrency 1 (ENQUEUE): a change during a
  run triggers a run that waits for it, then picks the change up.
- `ragops-retrain/retrain`: the retraining flow on `schedule.retrain_cron` (runs named
  `retrain-schedule`), on demand from the UI or `prefect deployment run` (`retrain-on-demand`), and
  on `ragops.feedback.harvested` (`retrain-feedback`: enough reviewed feedback joined the data).
- `ragops-harvest/harvest`: accepted review items into versioned data, on `schedule.harvest_cron`
  and on demand.
- `ragops-evaluate/on-demand`: registered models (by default the champion's) on the current
  index, evaluated and promoted if the gates pass.

Index builds and promotions of every flow hold the global concurrency limit `ragops-index`,
training holds `ragops-training`, curation and validation hold `ragops-data`. With a work pool,
the deployments' entry points are module paths (`flows.pipeline.retrain`): a worker needs ragops
installed and the project at the same path.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from pathlib import Path

from prefect import deploy as deploy_to_pool
from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.events import DeploymentEventTrigger
from prefect.events.schemas.automations import Posture
from prefect.schedules import Cron

from components.config import Params
from components.data.watch import watch_folder
from flows.evaluate import evaluate_candidate
from flows.events import DOCUMENTS_EVENT, DOCUMENTS_RESOURCE, FEEDBACK_EVENT, FEEDBACK_RESOURCE, emit_documents_changed
from flows.harvest import harvest
from flows.pipeline import retrain
from flows.reindex import reindex

def reindex_trigger(debounce_seconds: float) -> DeploymentEventTrigger:
    window = timedelta(seconds=debounce_seconds)
    return DeploymentEventTrigger(name="documents changed", expect={DOCUMENTS_EVENT},
                                  match={"prefect.resource.id": DOCUMENTS_RESOURCE}, posture=Posture.Reactive,
                                  threshold=1, within=window, schedule_after=window)


def feedback_trigger(parameters: dict) -> DeploymentEventTrigger:
    """A retrain run named `retrain-feedback`, with the deployment's other parameters."""
    return DeploymentEventTrigger(name="feedback harvested", expect={FEEDBACK_EVENT},
                                  match={"prefect.resource.id": FEEDBACK_RESOURCE}, posture=Posture.Reactive,
                                  threshold=1, within=timedelta(0), parameters={**parameters, "trigger": "feedback"})


def deployments(project: Path, params_path: str, params: Params, from_package: bool = False) -> list[RunnerDeployment]:
    """`from_package`: entry points as module paths of the installed ragops package (for workers),
    instead of this checkout's files (for serving in this process)."""
    args = {"project_path": str(project.resolve()), "params_path": params_path}
    one_at_a_time = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)
    entrypoint = {"entrypoint_type": EntrypointType.MODULE_PATH} if from_package else {}
    schedule = params.schedule

    def cron(expression: str) -> list[Cron]:
        return [Cron(expression, timezone=schedule.timezone, parameters={"trigger": "schedule"})] if expression else []

    return [
        reindex.to_deployment(name="on-document-change", parameters={**args, "reason": "documents-changed"},
                              triggers=[reindex_trigger(params.index.debounce_seconds)],
                              concurrency_limit=one_at_a_time, **entrypoint,
                              description="Reindex when documents change, evaluate with the champion's models, promote."),
        retrain.to_deployment(name="retrain", parameters={**args, "trigger": "on-demand"},
                              schedules=cron(schedule.retrain_cron), triggers=[feedback_trigger(args)],
                              concurrency_limit=one_at_a_time, **entrypoint,
                              description="Curate, validate, train router and generator (reused when their inputs "
                                          "are unchanged), index, evaluate, promote."),
        harvest.to_deployment(name="harvest", parameters={**args, "trigger": "on-demand"},
                              schedules=cron(schedule.harvest_cron), concurrency_limit=one_at_a_time, **entrypoint,
                              description="Accepted review items into the data (personal data scrubbed), curated, "
                                          "validated and versioned; requests a retrain once enough have accumulated."),
        evaluate_candidate.to_deployment(name="on-demand", parameters=args, concurrency_limit=one_at_a_time,
                                         **entrypoint,
                                         description="Evaluate registered router and generator versions (default: "
                                                     "the champion's) on the current index; promote if the gates pass."),
    ]


# How often the in-process runner asks the Prefect API for runs to start. Prefect's default (10 s)
# can start a debounced reindex up to 10 s after its scheduled time; a query every 2 s is one
# light API call and keeps a document edit's way to customers short (benchmarks/freshness.py).
RUNNER_QUERY_SECONDS = 2.0


def deploy(project: Path, params_path: str, params: Params, work_pool: str | None = None) -> None:
    """Serve the deployments (or register them on `work_pool`) and watch the documents folder
    until interrupted."""
    folder = project / params.data.raw_dir / "documents"
    # What the runner does with each run (submitted, or held back: "Aborted submission of flow run
    # ...: AwaitingConcurrencySlot") is what an operator of this command looks for; Prefect's own
    # loggers are quiet otherwise (flows/process.py).
    logging.getLogger("prefect.runner").setLevel(logging.INFO)
    stop = threading.Event()
    watcher = threading.Thread(target=watch_folder, name="documents-watcher", daemon=True, kwargs={
        "folder": folder, "on_change": lambda changes: emit_documents_changed(folder, changes),
        "poll_seconds": params.index.watch_poll_seconds, "settle_seconds": params.index.watch_poll_seconds,
        "stop": stop})
    watcher.start()
    try:
        if work_pool:
            deploy_to_pool(*deployments(project, params_path, params, from_package=True), work_pool_name=work_pool,
                           print_next_steps_message=False, ignore_warnings=True)
            print(f"deployments registered on work pool {work_pool!r}; watching {folder} (Ctrl-C to stop)")
            while not stop.wait(3600):
                pass
        else:
            serve(*deployments(project, params_path, params), query_seconds=RUNNER_QUERY_SECONDS)
    finally:
        stop.set()
