"""The router (MiniLM + LoRA) learns the intents: it beats the majority-class baseline."""

from collections import Counter

import pytest
import torch

from components.config import RouterConfig
from components.training.router import macro_f1, split_stratified, train_router
from tests.conftest import read_jsonl

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
    trainable = [n for n, p in result.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "classifier" in n for n in trainable)
    assert torch.isfinite(torch.tensor([h["loss"] for h in result.history])).all()
