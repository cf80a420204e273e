"""Pipeline stages: each composes components into one step and logs it to MLflow.

Flows (flows/pipeline.py) only call these in order. A stage takes the run context and the
results of earlier stages and returns a small frozen result. One module per step family.

    >>> ctx = make_context(Path("."), Path("params.yaml"))  # doctest: +SKIP
    >>> data = curate_stage(ctx)  # doctest: +SKIP
"""

from components.stages.context import DataVersions, Evaluation, Promotion, RunContext, TrainedModel, make_context
from components.stages.data import curate_stage, validate_stage
from components.stages.evaluation import (EarlierEvaluation, earlier_evaluation_stage, evaluate_stage, make_manifest,
                                          register_bundle_stage)
from components.stages.index import index_stage
from components.stages.promotion import promote_stage
from components.stages.training import generator_stage, registered_models, router_stage

__all__ = ["DataVersions", "EarlierEvaluation", "Evaluation", "Promotion", "RunContext", "TrainedModel", "curate_stage",
           "earlier_evaluation_stage", "evaluate_stage", "generator_stage", "index_stage", "make_context",
           "make_manifest", "promote_stage", "register_bundle_stage", "registered_models", "router_stage",
           "validate_stage"]
