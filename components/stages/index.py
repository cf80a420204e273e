"""The index stage: a new versioned Weaviate collection for the curated documents."""

from __future__ import annotations

import mlflow

from components.config import params_as_dict
from components.index.build import IndexVersion, build_index_version
from components.index.disk import DISK_READONLY_PERCENT, watched, writable_again
from components.index.embedding import load_embedder
from components.index.store import connect_weaviate
from components.models.resolve import resolve_model
from components.registry.promotion import finish_interrupted_move
from components.registry.tracking import log_data_versions, log_params_section
from components.stages.context import DataVersions, RunContext


def index_stage(ctx: RunContext, data: DataVersions) -> IndexVersion:
    """A new index version with only the changed documents embedded (or the live one, if nothing
    changed). The live version is the base, so a promotion an earlier run left half done is settled first."""
    p = ctx.params
    finish_interrupted_move(ctx.settings, p)
    docs = ctx.read_curated("documents.jsonl")
    embedder = load_embedder(resolve_model(p.models.encoder, ctx.settings.models_dir), p.project.device)
    with mlflow.start_run(run_name="build-index") as run:
        log_params_section("index", params_as_dict(p.index))
        mlflow.log_param("models.encoder", p.models.encoder)
        log_data_versions({"documents.jsonl": data.versions["documents.jsonl"]}, ctx.curated_path, "index")
        # the local server's disk is watched (components/index/disk.py); an external one is its operator's
        watch = None if ctx.settings.weaviate_url else ctx.settings.weaviate_data_path
        with connect_weaviate(ctx.settings) as client:
            def build() -> IndexVersion:  # once the watch found room: shards a full disk left read-only first
                for name in writable_again(client, p.index.alias):
                    print(f"index: {name} was read-only (the Weaviate server marks its collections so when its disk "
                          f"is over {DISK_READONLY_PERCENT}%); there is room again, so it is writable again")
                return build_index_version(client, docs, embedder, p.index, encoder=p.models.encoder)

            built = watched(build, watch, f"building a new index version of {p.index.alias}")
        mlflow.set_tags({"collection": built.collection, "base_collection": str(built.base),
                         "new_version": str(built.new), "plan": built.plan, "run_id": run.info.run_id})
        mlflow.log_metrics({"documents": built.documents, "chunks": built.chunks, "seconds": built.seconds,
                            "embedded_chunks": built.embedded_chunks, "copied_chunks": built.copied_chunks,
                            "changed_documents": len(built.changed_docs), "deleted_documents": len(built.deleted_docs)})
        mlflow.log_dict({"changed": list(built.changed_docs), "deleted": list(built.deleted_docs)},
                        "index/changes.json")
    print(f"index: {built.collection} ({built.plan}; embedded {built.embedded_chunks} chunks, "
          f"copied {built.copied_chunks}, {built.seconds:.1f} s)")
    return built
