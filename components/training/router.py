"""Router: the encoder with a classification head, fine-tuned on labelled queries, with LoRA
(the default: a small adapter) or fully (`router.method: full`).

    >>> result = train_router(rows, encoder_path, params.router, seed=42)  # doctest: +SKIP
    >>> result.metrics["router_macro_f1"]  # doctest: +SKIP
    0.93
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from peft import LoraConfig, PeftModel, TaskType, get_peft_model
from rich.progress import Progress
from transformers import AutoTokenizer, PreTrainedModel

from components.config import RouterConfig
from components.models.router import _classifier, predict_intents


@dataclass
class RouterResult:
    model: PeftModel | PreTrainedModel
    tokenizer: object
    intents: tuple[str, ...]
    metrics: dict[str, float]
    history: list[dict] = field(default_factory=list)
    test_size: int = 0
    confusion: list[list[int]] = field(default_factory=list)  # rows: true intent, columns: predicted


def split_stratified(rows: list[dict], test_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Per-intent split so every intent is in both halves (when it has >= 2 rows)."""
    rng = random.Random(seed)
    train, test = [], []
    for intent in sorted({r["intent"] for r in rows}):
        group = [r for r in rows if r["intent"] == intent]
        rng.shuffle(group)
        n_test = max(1, round(len(group) * test_fraction)) if len(group) >= 2 else 0
        test += group[:n_test]
        train += group[n_test:]
    return train, test


def confusion_matrix(y_true: list[int], y_pred: list[int], n_classes: int) -> list[list[int]]:
    matrix = [[0] * n_classes for _ in range(n_classes)]
    for t, p in zip(y_true, y_pred, strict=True):
        matrix[t][p] += 1
    return matrix


def _class_counts(matrix: list[list[int]]) -> list[tuple[int, int, int]]:
    """(true positives, times predicted, times present) per class."""
    return [(matrix[c][c], sum(row[c] for row in matrix), sum(matrix[c])) for c in range(len(matrix))]


def _macro_f1(matrix: list[list[int]]) -> float:
    # F1 = 2tp / (2tp + fp + fn) = 2tp / (predicted + present); a class absent from both is not counted
    scores = [2 * tp / (predicted + present) for tp, predicted, present in _class_counts(matrix) if predicted + present]
    return float(np.mean(scores)) if scores else float("nan")


def macro_f1(y_true: list[int], y_pred: list[int], n_classes: int) -> float:
    return _macro_f1(confusion_matrix(y_true, y_pred, n_classes))


def classification_metrics(matrix: list[list[int]], intents: tuple[str, ...]) -> dict[str, float]:
    """Accuracy, macro-F1 and per-intent precision/recall from a confusion matrix (NaN when an
    intent was never predicted, resp. never present: undefined, not zero)."""
    total = sum(map(sum, matrix))
    metrics = {"router_accuracy": sum(matrix[c][c] for c in range(len(matrix))) / total if total else float("nan"),
               "router_macro_f1": _macro_f1(matrix)}
    for intent, (tp, predicted, present) in zip(intents, _class_counts(matrix), strict=True):
        metrics[f"router_precision_{intent}"] = tp / predicted if predicted else float("nan")
        metrics[f"router_recall_{intent}"] = tp / present if present else float("nan")
    return metrics


def lora_config_for_router(config: RouterConfig) -> LoraConfig:
    return LoraConfig(task_type=TaskType.SEQ_CLS, r=config.lora_r, lora_alpha=config.lora_alpha,
                      lora_dropout=config.lora_dropout, target_modules=["query", "value"])


def train_router(rows: list[dict], encoder_path: str, config: RouterConfig, seed: int,
                 device: str = "cpu") -> RouterResult:
    torch.manual_seed(seed)
    intents = config.intents
    label = {name: i for i, name in enumerate(intents)}
    train, test = split_stratified(rows, config.test_fraction, seed)
    tokenizer = AutoTokenizer.from_pretrained(encoder_path)
    base = _classifier(encoder_path, intents)
    model = (get_peft_model(base, lora_config_for_router(config)) if config.method == "lora" else base).to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    rng = random.Random(seed)
    history: list[dict] = []
    steps_per_epoch = (len(train) + config.batch_size - 1) // config.batch_size
    with Progress() as progress:
        task = progress.add_task("router: training", total=config.epochs * steps_per_epoch)
        step = 0
        for _ in range(config.epochs):
            order = train[:]
            rng.shuffle(order)
            model.train()
            for start in range(0, len(order), config.batch_size):
                batch = order[start : start + config.batch_size]
                tic = time.perf_counter()
                enc = tokenizer([r["text"] for r in batch], padding=True, truncation=True,
                                max_length=config.max_length, return_tensors="pt").to(device)
                labels = torch.tensor([label[r["intent"]] for r in batch], device=device)
                loss = model(**enc, labels=labels).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                step += 1
                history.append({"step": step, "loss": loss.item(), "seconds": time.perf_counter() - tic})
                progress.advance(task)
    predictions = predict_intents(model, tokenizer, [r["text"] for r in test], intents, config.max_length)
    y_true = [label[r["intent"]] for r in test]
    y_pred = [label[p] for p, _ in predictions]
    confusion = confusion_matrix(y_true, y_pred, len(intents))
    metrics = classification_metrics(confusion, intents)
    # Share of held-out queries the confidence threshold would send to the fallback route.
    metrics["router_fallback_share"] = float(np.mean([c < config.confidence_threshold for _, c in predictions]))
    return RouterResult(model, tokenizer, intents, metrics, history, test_size=len(test),
                        confusion=confusion)


def save_router(result: RouterResult, out_path: Path) -> Path:
    """LoRA: the adapter (with the new classification head); full: the whole model. Plus the tokenizer."""
    result.model.save_pretrained(out_path)
    result.tokenizer.save_pretrained(out_path)
    return out_path
