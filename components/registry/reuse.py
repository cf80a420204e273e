"""Reuse instead of redo: a model trained from the same inputs, or a bundle already evaluated on
the same inputs, is found in the MLflow registry by fingerprint. A rerun with nothing changed
trains nothing and evaluates nothing; a rerun after a golden-set edit retrains nothing.

A fingerprint hashes everything the result depends on: the params that shape it, the model
references, the seed and device, the DVC md5s of its data, and the source of the code that
produces it (a code change is a change). It is a tag on the registered version, so reuse works
across machines and survives a reset Prefect database, which Prefect's own result cache would not.

    >>> fp = training_fingerprint("router", {"epochs": 4}, {"encoder": "pypi:x"}, {"router.jsonl": "ab"}, 42, "cpu")
    >>> len(fp)
    16
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from components.hashing import fingerprint

FINGERPRINT_TAG = "fingerprint"

# The modules whose source decides what a step produces, per kind of result: training and the
# inference it runs (held-out answers, replay), or the whole answer path and its evaluation.
PRODUCING_CODE = {
    "router": ("components.training.router", "components.models.router"),
    "generator": ("components.training.generator", "components.training.generator_examples",
                  "components.training.checkpoint", "components.data.replay_prompts",
                  "components.training.answerability", "components.models.generator",
                  "components.models.answerability", "components.prompting"),
    "bundle": ("components.assistant", "components.models.router", "components.models.generator",
               "components.models.answerability", "components.prompting", "components.index.search",
               "components.evaluation.bundle", "components.evaluation.metrics", "components.evaluation.gates",
               "components.evaluation.freshness", "components.evaluation.injection"),
}


def code_digest(kind: str) -> str:
    """Of the producing modules' source texts, not of their paths: moving a module changes nothing,
    changing its code does. Read from the import system's finder without importing them."""
    sources = []
    for name in PRODUCING_CODE[kind]:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin:
            raise ModuleNotFoundError(f"reuse.PRODUCING_CODE[{kind!r}] names {name}, which does not exist: update it")
        sources.append(Path(spec.origin).read_text(encoding="utf-8"))
    return fingerprint(sorted(sources))


def training_fingerprint(kind: str, section: Mapping, model_refs: Mapping[str, str], data_md5s: Mapping[str, str],
                         seed: int, device: str) -> str:
    """Of a trained model: its params section, base models, data versions, seed, device and training code."""
    return fingerprint({"kind": kind, "params": dict(section), "models": dict(model_refs), "data": dict(data_md5s),
                        "seed": seed, "device": device, "code": code_digest(kind)})


def evaluation_fingerprint(manifest_json: str, evaluation: Mapping, seed: int) -> str:
    """Of an evaluated bundle: its manifest (model versions, versioned collection, retrieval and
    prompt settings, data md5s), the evaluation settings and gates, and the evaluation code."""
    return fingerprint({"manifest": json.loads(manifest_json), "evaluation": dict(evaluation), "seed": seed,
                        "code": code_digest("bundle")})


def find_version(client: MlflowClient, name: str, fingerprint: str) -> ModelVersion | None:
    """The newest registered version of `name` with this fingerprint, or None."""
    found = client.search_model_versions(f"name = '{name}' and tags.{FINGERPRINT_TAG} = '{fingerprint}'")
    return max(found, key=lambda v: int(v.version), default=None)
