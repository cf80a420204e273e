"""MLflow pyfunc wrappers for the router and the generator as separately registered models.

Both carry only their LoRA adapter; the base model is a reference (`model_config`) resolved
offline from the model cache at load time, so a version never holds a second copy of it.

    >>> router = mlflow.pyfunc.load_model("models:/ragops-router/1")  # doctest: +SKIP
    >>> router.predict(pd.DataFrame({"text": ["hi"]}))  # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

from components.assistant import Manifest, Stage, load_assistant
from components.index.search import FilterError, SearchFilters
from components.index.store import connect_weaviate
from components.models.generator import generate_answers, load_generator, set_lora_merged
from components.models.resolve import resolve_model
from components.models.router import load_router, predict_intents
from components.registry.traces import answer_tags, with_trace_ids
from components.settings import Settings


class RouterPyfunc(mlflow.pyfunc.PythonModel):
    """Input: DataFrame with `text`. Output: DataFrame with `intent` and `confidence`."""

    def load_context(self, context) -> None:
        cfg = context.model_config
        self.intents = tuple(cfg["intents"])
        self.max_length = int(cfg["max_length"])
        encoder = resolve_model(cfg["encoder"], Settings().models_dir)
        self.model, self.tokenizer = load_router(context.artifacts["adapter"], encoder, self.intents)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        routed = predict_intents(self.model, self.tokenizer, [str(t) for t in model_input["text"]],
                                 self.intents, self.max_length)
        return pd.DataFrame(routed, columns=["intent", "confidence"])


class GeneratorPyfunc(mlflow.pyfunc.PythonModel):
    """Input: DataFrame with `messages` (a chat, list of {role, content}). Output: answers."""

    def load_context(self, context) -> None:
        cfg = context.model_config
        self.max_new_tokens = int(cfg["max_new_tokens"])
        base = resolve_model(cfg["base_model"], Settings().models_dir)
        self.model, self.tokenizer = load_generator(context.artifacts["adapter"], base)
        set_lora_merged(self.model, True)  # only ever answers with the adapter

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> list[str]:
        return generate_answers(self.model, self.tokenizer, list(model_input["messages"]), self.max_new_tokens)


def row_filters(cell: Any, fields: dict[str, str], where: str) -> SearchFilters | None:
    """Filters of one input row: an object of conditions (SearchFilters.parse) or its JSON text;
    an empty cell (None/NaN when other rows set filters) means none."""
    if isinstance(cell, str) and cell.strip():
        try:
            cell = json.loads(cell)
        except ValueError as exc:
            raise FilterError(f"{where}: not a JSON object ({exc}); send e.g. {{\"category\": \"kettles\"}}") from None
    if isinstance(cell, dict):
        return SearchFilters.parse(cell, fields, where)
    if cell is None or (isinstance(cell, float) and math.isnan(cell)) or cell == "":
        return None
    raise FilterError(f"{where}: must be an object of conditions on {', '.join(fields)}, got {type(cell).__name__}")


class BundleModel(mlflow.pyfunc.PythonModel):
    """The pyfunc: input a DataFrame with a `question` column and optionally `filters` (an object
    of conditions on the index's metadata fields, or its JSON text); output one dict per question,
    with the id of its MLflow trace (components/registry/traces.py)."""

    bundle_version = ""  # for the traces' tags, where the loader knows it (`mlflow models serve` does not)

    def load_context(self, context) -> None:
        self._stack = contextlib.ExitStack()
        # A server (`mlflow models serve`) never calls unload: stop our Weaviate at interpreter exit.
        atexit.register(self._stack.close)
        settings = Settings()
        manifest = Manifest.from_json(Path(context.artifacts["manifest"]).read_text())
        client = self._stack.enter_context(connect_weaviate(settings))
        self.assistant = load_assistant(manifest, context.artifacts["router_adapter"],
                                        context.artifacts["generator_adapter"], settings, client)
        self.assistant.ready()  # the artifacts may be a download removed after loading

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> list[dict]:
        if "question" not in model_input.columns:
            raise ValueError("input needs a 'question' column, e.g. {'question': ['How much is ...?']}")
        filters = None
        if "filters" in model_input.columns:
            filters = [row_filters(cell, self.assistant.manifest.metadata_fields, f"filters (row {i})")
                       for i, cell in enumerate(model_input["filters"])]
        stages: list[Stage] = []
        answers = [asdict(a) for a in self.assistant.answer([str(q) for q in model_input["question"]], filters=filters,
                                                            stages=stages)]
        return with_trace_ids(answers, stages, answer_tags(self.assistant.manifest, self.bundle_version),
                              self.assistant.refusal_sentences)

    def with_manifest(self, manifest: Manifest) -> BundleModel:
        """Another bundle version on the models this one has loaded (same router, generator, check
        and encoder; `serves_same_models`): a new index version, say. It has its own Weaviate
        connection; the models are shared, not copied."""
        other = BundleModel()
        other._stack = contextlib.ExitStack()
        atexit.register(other._stack.close)
        client = other._stack.enter_context(connect_weaviate(Settings()))
        other.assistant = dataclasses.replace(self.assistant, manifest=manifest, client=client)
        return other

    def unload(self) -> None:
        self._stack.close()


def serves_same_models(a: Manifest, b: Manifest) -> bool:
    """Whether bundle manifests `a` and `b` load the same models (everything else a manifest
    pins, the index version and the prompt included, is read at each answer)."""
    return all(getattr(a, f) == getattr(b, f) for f in
               ("router_version", "generator_version", "encoder", "generator_base", "intents")) and bool(a.router_version)
