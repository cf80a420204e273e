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

import ast
import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from components.hashing import fingerprint

FINGERPRINT_TAG = "fingerprint"

# The modules whose functions produce each kind of result: training (with the inference it runs:
# held-out answers, replay) or the answer path, its evaluation and the gates. code_digest follows
# their imports, so a helper module they come to use is part of the digest without being named here.
PRODUCING_CODE = {
    "router": ("components.training.router",),
    "generator": ("components.training.generator", "components.training.answerability"),
    "bundle": ("components.assistant", "components.evaluation.bundle", "components.evaluation.gates"),
}
# Imported by them, but never what shapes a result: the configuration (its values are in every
# fingerprint, so its code would only add noise), where the services live, the processes of the
# local Weaviate server, and the memory accounting (what a step prints, what it hands back).
NOT_PRODUCING = ("components.config", "components.settings", "components.index.server", "components.index.shared_server",
                 "components.memory")


def _source(name: str) -> str:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin:
        raise ModuleNotFoundError(f"reuse.PRODUCING_CODE names {name}, which does not exist: update it")
    return Path(spec.origin).read_text(encoding="utf-8")


def _ours_imported(name: str, source: str) -> set[str]:
    """The ragops modules `source` imports, function-level imports included (`from package import
    module` names the module)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            if node.module.split(".")[0] == "components" and _is_package(node.module):
                found |= {f"{node.module}.{a.name}" for a in node.names
                          if importlib.util.find_spec(f"{node.module}.{a.name}")}
    return {m for m in found if m.split(".")[0] == "components" and m != name
            and not any(m == other or m.startswith(other + ".") for other in NOT_PRODUCING)}


def _is_package(name: str) -> bool:
    spec = importlib.util.find_spec(name)
    return spec is not None and spec.submodule_search_locations is not None


def producing_modules(kind: str) -> list[str]:
    """PRODUCING_CODE[kind] and every ragops module they import, directly or through others."""
    seen, todo = {}, list(PRODUCING_CODE[kind])
    while todo:
        name = todo.pop()
        if name not in seen:
            seen[name] = _source(name)
            todo += _ours_imported(name, seen[name])
    return sorted(seen)


def code_digest(kind: str) -> str:
    """Of the producing modules' source texts, not of their paths: moving a module changes nothing,
    changing its code does. Read from the import system's finder without importing them."""
    return fingerprint(sorted(_source(name) for name in producing_modules(kind)))


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
