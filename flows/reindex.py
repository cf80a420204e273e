"""The reindex flow: curate → validate → build an index version → evaluate with the champion's
models → promote. No retraining. A document change triggers it (flows/deploy.py).

    ragops reindex                  # by hand
    python -m flows.reindex         # the same flow, directly

Nothing changed since the live version: no new version, no evaluation, nothing promoted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency

from components import stages
from components.index.build import IndexVersion
from flows.pipeline import INDEX_LOCK, build_index, curate, evaluate, promote, register_bundle, validate
from flows.run_names import bundle_part, index_part, rename_current_run

champion_models = task(stages.champion_models, name="load-champion-models", cache_policy=NO_CACHE)


@dataclass(frozen=True)
class ReindexResult:
    index: IndexVersion
    promotion: stages.Promotion | None  # None: nothing changed, nothing to promote


@flow(name="ragops-reindex", flow_run_name="reindex-{reason}", log_prints=True)
def reindex(project_path: str = ".", params_path: str = "params.yaml", reason: str = "manual") -> ReindexResult:
    root = Path(project_path)
    ctx = stages.make_context(root, root / params_path)
    data = curate(ctx)
    validate(ctx, data)
    router, generator = champion_models(ctx)
    with concurrency(INDEX_LOCK):
        index = build_index(ctx, data)
        if not index.new:
            print(f"reindex: nothing changed since {index.collection}; nothing to evaluate or promote")
            rename_current_run(f"reindex ({reason}): {index_part(index)}, nothing to evaluate")
            return ReindexResult(index, None)
        manifest = stages.make_manifest(ctx, router, generator, index, data)
        evaluation = evaluate(ctx, manifest, router, generator, index)
        bundle_version = register_bundle(ctx, evaluation, router, generator)
        promotion = promote(ctx, evaluation, bundle_version)
    rename_current_run(f"reindex ({reason}): {index_part(index)}, {bundle_part(promotion, True)}")
    return ReindexResult(index, promotion)


if __name__ == "__main__":
    reindex()
