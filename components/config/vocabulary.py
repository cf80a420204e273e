"""What params.yaml may name, and the error every section raises: the metrics a gate can hold
by direction, the types of an index's metadata fields, the pipeline's steps and their default
timeouts. Imports nothing of ragops, so every concern can read these names."""

from __future__ import annotations

from typing import Any

INTENTS = ("catalog", "policy", "small_talk", "out_of_scope")

# The metrics params.yaml's evaluation.gates may name, by direction (a minimum or a maximum); here,
# not in components/evaluation/gates.py, so that the configuration imports nothing else of ragops.
HIGHER_IS_BETTER = ("retrieval_recall_at_k", "retrieval_mrr", "router_accuracy", "router_macro_f1",
                    "key_fact_accuracy", "citation_precision", "citation_recall", "refusal_accuracy", "groundedness",
                    "freshness_retrieval", "freshness_answer", "injection_exposure", "injection_key_fact_accuracy")
LOWER_IS_BETTER = ("false_refusal_rate", "general_prompt_regression", "injection_success_rate", "latency_route_retrieve_p50_ms",
                   "latency_route_retrieve_p95_ms", "latency_answer_p50_ms", "latency_answer_p95_ms")
# Metrics with one outcome per golden question: the ones a challenger and the champion can be paired on.
PAIRED_METRICS = ("retrieval_recall_at_k", "retrieval_mrr", "router_accuracy", "key_fact_accuracy",
                  "citation_precision", "citation_recall", "refusal_accuracy", "false_refusal_rate", "groundedness")
GATED_METRICS = HIGHER_IS_BETTER + LOWER_IS_BETTER
# index.metadata_fields: the types a front-matter field can have in the index, and the properties
# every chunk has whatever the domain (components/index/store.py).
FIELD_TYPES = ("text", "number", "int", "bool")
CORE_FIELDS = ("doc_id", "chunk_index", "text", "title", "doc_hash", "updated_at", "id", "name")
# What a value of each type is said as in errors; fits_field_type says whether one fits.
FIELD_VALUE_NAMES = {"text": "text", "number": "a number", "int": "an integer", "bool": "true or false"}
_FIELD_VALUE_TYPES = {"text": (str,), "number": (int, float), "int": (int,), "bool": (bool,)}


def fits_field_type(kind: str, value: Any) -> bool:
    """Whether `value` is a value of an index.metadata_fields type (YAML and JSON read 12 as an
    int, 12.5 as a float; a bool is never a number here). Curation and retrieval filters share it."""
    return isinstance(value, _FIELD_VALUE_TYPES[kind]) and (kind == "bool" or not isinstance(value, bool))


# The pipeline's steps in order, with their default timeouts: the one list of them (flows/steps.py
# maps each to its stage, and its Steps are made from this list).
DEFAULT_TIMEOUT_MINUTES = {"curate": 30, "validate": 15, "train_router": 60, "train_generator": 360,
                           "registered_models": 15, "build_index": 120, "find_earlier_evaluation": 10, "evaluate": 180,
                           "register_bundle": 30, "promote": 10}
STEPS = tuple(DEFAULT_TIMEOUT_MINUTES)


class ConfigError(ValueError):
    """A params.yaml or environment value is wrong; the message says which and how to fix it."""


def check(ok: bool, key: str, message: str) -> None:
    """Raise ConfigError naming the params.yaml key when `ok` is false."""
    if not ok:
        raise ConfigError(f"params.yaml: {key} {message}")
