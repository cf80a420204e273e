"""The promotion stage: champion or challenger, by the gates' decision."""

from __future__ import annotations

import mlflow

from components.registry.promotion import (VERDICT_TAG, append_promotion_ledger, close_unacted_versions,
                                          promote, promotion_ledger_path)
from components.registry.tracking import set_alias
from components.stages.context import Evaluation, Promotion, RunContext


def _close_unacted(ctx: RunContext, client: mlflow.MlflowClient, bundle_version: str) -> None:
    tagged = close_unacted_versions(client, ctx.settings, ctx.params.promotion.bundle_name, bundle_version)
    if tagged:
        print(f"bundle versions {', '.join('v' + v for v in tagged)} were registered by runs that stopped before "
              f"promoting; tagged {VERDICT_TAG}='not acted on ... superseded by v{bundle_version}'")


def promote_stage(ctx: RunContext, evaluation: Evaluation, bundle_version: str) -> Promotion:
    """Gates passed: move MLflow `champion` and the Weaviate alias together (undo the first if the
    second fails). Otherwise: alias `challenger`, reasons already in the version's tags."""
    p = ctx.params
    collection = evaluation.manifest.collection
    ledger = promotion_ledger_path(ctx.settings)
    client = mlflow.MlflowClient()
    if not evaluation.decision.passed or p.promotion.require_approval:
        set_alias(client, p.promotion.bundle_name, "challenger", bundle_version)
        why = evaluation.decision.reasons if not evaluation.decision.passed else ["awaiting approval"]
        append_promotion_ledger(ledger, {"action": "hold", "bundle": p.promotion.bundle_name, "version": str(bundle_version),
                               "collection": collection, "reasons": why})
        held = evaluation.decision.failures if not evaluation.decision.passed else why
        client.set_model_version_tag(p.promotion.bundle_name, str(bundle_version), VERDICT_TAG,
                                     "held: " + "; ".join(held))
        _close_unacted(ctx, client, str(bundle_version))
        return Promotion(bundle_version, "challenger", collection, why, evaluation.decision.failures)
    promote(ctx.settings, p, bundle_version, collection, evaluation.decision.reasons)
    client.set_model_version_tag(p.promotion.bundle_name, str(bundle_version), VERDICT_TAG, "promoted")
    _close_unacted(ctx, client, str(bundle_version))
    return Promotion(bundle_version, "champion", collection, evaluation.decision.reasons)
