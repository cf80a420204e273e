"""The retraining flow: curate → validate → train → register → index → evaluate → promote.

    ragops run                      # the CLI entry point (flows/cli.py)
    python -m flows.pipeline        # the same flow, directly

Each step is a Prefect task wrapping one stage of components/stages.py; the flow only wires.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency

from components import stages
from components.evaluation import Metric
from components.index.build import IndexVersion
from flows.run_names import bundle_part, index_part, model_part, rename_current_run


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


# Global concurrency limit held from index build to promotion, so two flows never build or move
# the alias at once; `ragops deploy` creates it (limit 1). Without it (a lone `ragops run`) it is a no-op.
INDEX_LOCK = "ragops-index"

curate = task(stages.curate_stage, name="curate-and-version", cache_policy=NO_CACHE)
validate = task(stages.validate_stage, name="validate-data", cache_policy=NO_CACHE)
train_router = task(stages.router_stage, name="train-router", cache_policy=NO_CACHE)
train_generator = task(stages.generator_stage, name="train-generator", cache_policy=NO_CACHE)
build_index = task(stages.index_stage, name="build-index-version", cache_policy=NO_CACHE)
evaluate = task(stages.evaluate_stage, name="evaluate-bundle", cache_policy=NO_CACHE)
register_bundle = task(stages.register_bundle_stage, name="register-bundle", cache_policy=NO_CACHE)
promote = task(stages.promote_stage, name="promote", cache_policy=NO_CACHE)
find_earlier_evaluation = task(stages.earlier_evaluation_stage, name="find-earlier-evaluation", cache_policy=NO_CACHE)


@flow(name="ragops-retrain", flow_run_name="retrain-{trigger}", log_prints=True)
def retrain(project_path: str = ".", params_path: str = "params.yaml", trigger: str = "manual") -> PipelineResult:
    """The whole pipeline. Models trained from unchanged inputs are reused and a bundle already
    evaluated is not evaluated again, so a rerun with nothing changed trains and promotes nothing."""
    root = Path(project_path)
    ctx = stages.make_context(root, root / params_path)
    data = curate(ctx)
    validate(ctx, data)
    router = train_router(ctx, data)
    generator = train_generator(ctx, data)
    with concurrency(INDEX_LOCK):
        index = build_index(ctx, data)
        manifest = stages.make_manifest(ctx, router, generator, index, data)
        earlier = find_earlier_evaluation(ctx, manifest)
        if earlier is None:
            evaluation = evaluate(ctx, manifest, router, generator, index)
            bundle_version = register_bundle(ctx, evaluation, router, generator)
            metrics, promotion = evaluation.metrics, promote(ctx, evaluation, bundle_version)
        else:
            metrics, promotion = earlier.metrics, earlier.promotion
    rename_current_run(f"retrain ({trigger}): {model_part('router', router)}, {model_part('generator', generator)}, "
                       f"{index_part(index)}, {bundle_part(promotion, earlier is None)}")
    return PipelineResult(data.versions, router, generator, index, metrics, promotion,
                          ctx.curated_path / "golden.jsonl", evaluated=earlier is None)


if __name__ == "__main__":
    retrain()
