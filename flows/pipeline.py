"""The retraining flow: curate → validate → train → register → index → evaluate → promote.

    ragops run                      # the CLI entry point (flows/cli.py)
    python -m flows.pipeline        # the same flow, directly

Each step is a Prefect task wrapping one stage of components/stages/ (flows/steps.py); the
flow only wires. Models trained from unchanged inputs are reused and a candidate already
evaluated is not evaluated again, so a rerun with nothing changed trains and promotes nothing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectAlreadyExists
from prefect.concurrency.sync import concurrency
from prefect.runtime import deployment

from components import stages
from components.assistant import Manifest
from components.config import ConfigError
from components.evaluation.metrics import Metric
from components.index.build import IndexVersion
from components.index.store import local_server_held
from components.settings import PROJECT_VARIABLE, Settings, file_lock
from flows.events import emit_bundle_decision
from flows.run_names import bundle_part, index_part, model_part, rename_current_run
from flows.steps import Steps, configure_steps


@dataclass(frozen=True)
class PipelineResult:
    data_versions: dict[str, str]
    router: stages.TrainedModel
    generator: stages.TrainedModel
    index: IndexVersion
    metrics: dict[str, Metric]
    promotion: stages.Promotion
    golden_path: Path
    evaluated: bool  # False: an earlier evaluation of the same candidate stands
    quarantined: dict[str, str] = field(default_factory=dict)  # documents the injection scan held back → matches


# Global concurrency limits (1 slot each): held from index build to promotion, so two flows (a
# scheduled retrain, a reindex, an on-demand evaluation) never build or move the alias at once;
# and around training, so a scheduled and an on-demand retrain do not train side by side.
INDEX_LOCK = "ragops-index"
TRAINING_LOCK = "ragops-training"
# Curation and validation: DVC fails a second `dvc repro` in a project at once (its rwlock), so two
# flow runs of one project (two workers, or one worker running a retrain and a reindex) curate in turn.
DATA_LOCK = "ragops-data"


@contextlib.contextmanager
def global_lock(name: str, settings: Settings) -> Iterator[None]:
    """One holder at a time. Always a file lock under RAGOPS_HOME, which the kernel frees when its
    holder dies; with a Prefect server (PREFECT_API_URL) also a slot of its global concurrency
    limit `name` (created with 1 slot if missing), for flow runs on other machines. Without one,
    the slot would live in the DB of `ragops run`'s temporary server, whose leases are kept in
    memory and never reclaimed: a killed run would block every later one (seen in
    tests/reliability/test_training_killed.py)."""
    path = settings.home / "locks" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        stack.enter_context(file_lock(path))
        if os.environ.get("PREFECT_API_URL"):
            with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):  # a concurrent creator
                client.upsert_global_concurrency_limit_by_name(name, 1)
            stack.enter_context(concurrency(name, strict=True))
        yield


def run_project(project_path: str, params_path: str) -> tuple[Path, Path]:
    """The project and params file a flow run may work on. A flow run of a deployment takes its
    parameters from whoever reaches the Prefect API, and the project decides which dvc.yaml `dvc
    repro` runs (commands): such a run works only on the project its worker serves
    (RAGOPS_PROJECT, which `ragops worker` and `ragops deploy` set), whatever `project_path` says.
    A flow called in-process (`ragops run`) works where its caller says. The params file must lie
    inside the project either way."""
    root = Path(project_path).resolve()
    if deployment.id is not None:
        served = os.environ.get(PROJECT_VARIABLE)
        if not served:
            raise ConfigError(f"a deployment's flow run needs {PROJECT_VARIABLE}, the project its worker serves; "
                              f"start workers with `ragops worker` (or set {PROJECT_VARIABLE} in the job's environment)")
        if root != Path(served).resolve():
            raise ConfigError(f"flow parameter project_path={project_path!r} is not the project this worker serves "
                              f"({PROJECT_VARIABLE}={served}); a deployment's runs work only on that project")
    params = (root / params_path).resolve()
    if not params.is_relative_to(root):
        raise ConfigError(f"params_path={params_path!r} is outside the project {root}; pass a params file inside it")
    return root, params


def validated_data(project_path: str, params_path: str) -> tuple[stages.RunContext, Steps, stages.DataVersions]:
    """Every flow's start: the run context, its configured steps, and curated, validated data."""
    ctx = stages.make_context(*run_project(project_path, params_path))
    step = configure_steps(ctx.params.orchestration)
    with global_lock(DATA_LOCK, ctx.settings):
        data = step.curate(ctx)
        step.validate(ctx, data)
    return ctx, step, data


def evaluate_and_promote(ctx: stages.RunContext, step: Steps, manifest: Manifest, router: stages.TrainedModel,
                         generator: stages.TrainedModel, index: IndexVersion) -> tuple[stages.Evaluation, stages.Promotion]:
    """Evaluate the candidate, register it with its evaluation, promote or hold it, and tell Prefect."""
    evaluation = step.evaluate(ctx, manifest, router, generator, index)
    promotion = step.promote(ctx, evaluation, step.register_bundle(ctx, evaluation, router, generator))
    emit_bundle_decision(ctx.params.promotion.bundle_name, promotion)
    return evaluation, promotion


@flow(name="ragops-retrain", flow_run_name="retrain-{trigger}", log_prints=True)
def retrain(project_path: str = ".", params_path: str = "params.yaml", trigger: str = "manual") -> PipelineResult:
    ctx, step, data = validated_data(project_path, params_path)
    with global_lock(TRAINING_LOCK, ctx.settings):
        router = step.train_router(ctx, data)
        generator = step.train_generator(ctx, data)
    with global_lock(INDEX_LOCK, ctx.settings), local_server_held(ctx.settings):  # one server start for every step
        index = step.build_index(ctx, data)
        manifest = stages.make_manifest(ctx, router, generator, index, data)
        earlier = step.find_earlier_evaluation(ctx, manifest)
        if earlier is None:
            evaluation, promotion = evaluate_and_promote(ctx, step, manifest, router, generator, index)
            metrics = evaluation.metrics
        else:
            metrics, promotion = earlier.metrics, earlier.promotion
    rename_current_run(f"retrain ({trigger}): {model_part('router', router)}, {model_part('generator', generator)}, "
                       f"{index_part(index)}, {bundle_part(promotion, earlier is None)}")
    return PipelineResult(data.versions, router, generator, index, metrics, promotion,
                          ctx.curated_path / "golden.jsonl", evaluated=earlier is None, quarantined=ctx.quarantined())


if __name__ == "__main__":
    retrain()
