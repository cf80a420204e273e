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


@dataclass(frozen=True)
class PipelineResult:
    data_versions: dict[str, str]
    router: stages.TrainedModel
    generator: stages.TrainedModel
    index: IndexVersion
    metrics: dict[str, Metric]
    promotion: stages.Promotion
    golden_path: Path


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


@flow(name="ragops-retrain", flow_run_name="retrain-{params_path}", log_prints=True)
def retrain(project_path: str = ".", params_path: str = "params.yaml") -> PipelineResult:
    root = Path(project_path)
    ctx = stages.make_context(root, root / params_path)
    data = curate(ctx)
    validate(ctx, data)
    router = train_router(ctx, data)
    generator = train_generator(ctx, data)
    with concurrency(INDEX_LOCK):
        index = build_index(ctx, data)
        manifest = stages.make_manifest(ctx, router, generator, index, data)
        evaluation = evaluate(ctx, manifest, router, generator, index)
        bundle_version = register_bundle(ctx, evaluation, router, generator)
        promotion = promote(ctx, evaluation, bundle_version)
    return PipelineResult(data.versions, router, generator, index, evaluation.metrics, promotion,
                          ctx.curated_path / "golden.jsonl")


if __name__ == "__main__":
    retrain()
