"""The router (MiniLM + LoRA) learns the intents: it beats the majority-class baseline."""

import math
from collections import Counter

import pytest
import torch
from peft import PeftModel

from components.config import RouterConfig
from components.settings import Settings
from components.models.resolve import resolve_model
from components.models.router import load_router, predict_intents
from components.training.router import (
    classification_metrics, confusion_matrix, macro_f1, save_router, split_stratified, train_router,
)
from tests.support.project import read_jsonl

pytestmark = pytest.mark.model


def test_split_keeps_every_intent_in_both_halves():
    rows = [{"text": str(i), "intent": "a" if i % 3 else "b"} for i in range(30)]
    train, test = split_stratified(rows, 0.2, seed=0)
    assert {r["intent"] for r in train} == {r["intent"] for r in test} == {"a", "b"}
    assert len(train) + len(test) == 30 and not {r["text"] for r in train} & {r["text"] for r in test}


def test_macro_f1():
    assert macro_f1([0, 0, 1, 1], [0, 0, 1, 1], 2) == 1.0
    assert macro_f1([0, 0, 1, 1], [0, 0, 0, 0], 2) == pytest.approx((2 / 3 + 0) / 2)


def test_trained_router_beats_majority_baseline(project_root, encoder_path):
    rows = read_jsonl(project_root / "data" / "raw" / "router.jsonl")
    config = RouterConfig(epochs=3, learning_rate=2e-3)
    result = train_router(rows, encoder_path, config, seed=0)
    _, test = split_stratified(rows, config.test_fraction, seed=0)
    majority = Counter(r["intent"] for r in test).most_common(1)[0][1] / len(test)
    assert result.test_size == len(test)
    assert result.metrics["router_accuracy"] > majority + 0.1, (result.metrics, majority)
    assert result.metrics["router_macro_f1"] > 0.5
    assert all(result.metrics[f"router_recall_{i}"] > 0 for i in config.intents)
    trainable = [n for n, p in result.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "classifier" in n for n in trainable)
    assert torch.isfinite(torch.tensor([h["loss"] for h in result.history])).all()


def test_per_intent_metrics_and_confusion_matrix():
    intents = ("a", "b", "c")
    y_true, y_pred = [0, 0, 1, 1, 2], [0, 1, 1, 1, 1]
    metrics = classification_metrics(confusion_matrix(y_true, y_pred, 3), intents)
    assert metrics["router_precision_b"] == 0.5 and metrics["router_recall_b"] == 1.0
    assert metrics["router_recall_a"] == 0.5 and metrics["router_recall_c"] == 0.0
    assert math.isnan(metrics["router_precision_c"])  # never predicted: undefined, not 0
    assert confusion_matrix(y_true, y_pred, 3) == [[1, 1, 0], [0, 2, 0], [0, 1, 0]]


def test_full_fine_tuning_switch_trains_every_weight_and_round_trips(project_root, tmp_path):
    tiny_bert = resolve_model("tiny:bert", Settings().models_dir)
    rows = read_jsonl(project_root / "data" / "raw" / "router.jsonl")[:120]
    result = train_router(rows, tiny_bert, RouterConfig(method="full", epochs=1, learning_rate=5e-5), seed=0)
    assert not isinstance(result.model, PeftModel)
    assert all(p.requires_grad for p in result.model.parameters())
    assert sum(map(sum, result.confusion)) == result.test_size

    saved = save_router(result, tmp_path / "router")
    assert (saved / "model.safetensors").is_file() and not (saved / "adapter_config.json").exists()
    model, tokenizer = load_router(str(saved), tiny_bert, result.intents)
    texts = [r["text"] for r in rows[:16]]
    assert predict_intents(model, tokenizer, texts, result.intents, 32) == predict_intents(
        result.model, result.tokenizer, texts, result.intents, 32)
