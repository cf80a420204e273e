"""MLflow pyfunc wrappers for the router and the generator as separately registered models.

Both carry only their LoRA adapter; the base model is a reference (`model_config`) resolved
offline from the model cache at load time, so a version never holds a second copy of it.

    >>> router = mlflow.pyfunc.load_model("models:/ragops-router/1")  # doctest: +SKIP
    >>> router.predict(pd.DataFrame({"text": ["hi"]}))  # doctest: +SKIP
"""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd

from components.config import Settings
from components.models import resolve_model
from components.training.generator import generate_answers, load_generator, set_lora_merged
from components.training.router import load_router, predict_intents


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
