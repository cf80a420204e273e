"""The reindex flow: curate → validate → build an index version → evaluate with the champion's
models → promote. No retraining. A document change triggers it (flows/deploy.py).

    ragops reindex                  # by hand
    python -m flows.reindex         # the same flow, directly

Nothing changed since the live version: no new version, no evaluation, nothing promoted.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow

from components import stages
from components.index.build import IndexVersion
from components.index.store import local_server_held
from flows.pipeline import INDEX_LOCK, evaluate_and_promote, global_lock, validated_data
from flows.run_names import bundle_part, index_part, rename_current_run


@dataclass(frozen=True)
class ReindexResult:
    index: IndexVersion
    promotion: stages.Promotion | None  # None: nothing changed, nothing to promote


@flow(name="ragops-reindex", flow_run_name="reindex-{reason}", log_prints=True)
def reindex(project_path: str = ".", params_path: str = "params.yaml", reason: str = "manual") -> ReindexResult:
    ctx, step, data = validated_data(project_path, params_path)
    # the champion's models are read under the lock (a retrain may be promoting); the local index
    # server is held once for every step that uses it
    with global_lock(INDEX_LOCK, ctx.settings), local_server_held(ctx.settings):
        router, generator = step.registered_models(ctx)
        index = step.build_index(ctx, data)
        if not index.new:
            print(f"reindex: nothing changed since {index.collection}; nothing to evaluate or promote")
            rename_current_run(f"reindex ({reason}): {index_part(index)}, nothing to evaluate")
            return ReindexResult(index, None)
        manifest = stages.make_manifest(ctx, router, generator, index, data)
        _, promotion = evaluate_and_promote(ctx, step, manifest, router, generator, index)
    rename_current_run(f"reindex ({reason}): {index_part(index)}, {bundle_part(promotion, True)}")
    return ReindexResult(index, promotion)


if __name__ == "__main__":
    reindex()
