"""The on-demand evaluation flow: a bundle of registered models (by default the champion's) on
the current index version, evaluated against the gates and promoted if they pass.

    prefect deployment run ragops-evaluate/on-demand -p router_version=7   # router v7 + the champion's generator
    python -m flows.evaluate                                               # the champion's models, directly

For a reviewer's questions ("would router v7 pass with today's generator?") and for re-checking
the champion after a change of gates. A candidate already evaluated on the same inputs keeps
its verdict unless `force` is set.
"""

from __future__ import annotations


from prefect import flow

from components import stages
from components.index.store import local_server_held
from flows.pipeline import INDEX_LOCK, evaluate_and_promote, global_lock, validated_data
from flows.run_names import bundle_part, index_part, rename_current_run


@flow(name="ragops-evaluate", flow_run_name="evaluate-router-{router_version}-generator-{generator_version}",
      log_prints=True)
def evaluate_candidate(project_path: str = ".", params_path: str = "params.yaml", router_version: str = "champion",
                       generator_version: str = "champion", force: bool = False) -> stages.Promotion:
    ctx, step, data = validated_data(project_path, params_path)
    # the champion's models are read under the lock (a retrain may be promoting); the local index
    # server is held once for every step that uses it
    with global_lock(INDEX_LOCK, ctx.settings), local_server_held(ctx.settings):
        router, generator = step.registered_models(ctx, router_version, generator_version)
        index = step.build_index(ctx, data)
        manifest = stages.make_manifest(ctx, router, generator, index, data)
        earlier = None if force else step.find_earlier_evaluation(ctx, manifest)
        if earlier is None:
            _, promotion = evaluate_and_promote(ctx, step, manifest, router, generator, index)
        else:
            promotion = earlier.promotion
    rename_current_run(f"evaluate router v{router.version} + generator v{generator.version}: {index_part(index)}, "
                       f"{bundle_part(promotion, earlier is None)}")
    return promotion


if __name__ == "__main__":
    evaluate_candidate()
