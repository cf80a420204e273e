"""Generator training throughput: ragops' loop against a plain pad-to-max-length loop.

Same model, LoRA config, data, batch size and optimizer, measured in one process one after the
other. The plain loop is the textbook one: every batch right-padded to generator.max_length and
the model computing logits (and the loss) at every position, in fp32. ragops' loop groups
examples by length, pads to the longest row, runs the LM head only over the answer window and
(generator.precision: auto) computes in bf16 autocast where the CPU has bf16 instructions. It
is measured twice: at its resolved precision (the headline speedup) and in fp32 (what length
grouping and the answer window alone give). Throughput counts real (non-padding) tokens per
second; the first step of each loop is a warm-up and not counted. Prints one JSON object.

    .venv/bin/python benchmarks/generator_training_throughput.py --steps 6
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import time
from pathlib import Path

import torch
from peft import get_peft_model

from bench_support import emit
from components.config import load_params
from components.settings import Settings
from components.models.resolve import resolve_model
from components.models.generator import load_base_generator, load_tokenizer
from components.training.generator import lora_config_for_generator, train_generator
from components.training.generator_examples import encode_example, IGNORE_INDEX, split_for_generator

ROOT = Path(__file__).resolve().parents[1]


def plain_loop(encoded: list[dict], base_path: str, config, steps: int, seed: int) -> list[float]:
    """Tokens/s per step of the baseline: random batches, pad to max_length, full logits."""
    torch.manual_seed(seed)
    tokenizer = load_tokenizer(base_path)
    base = load_base_generator(base_path)
    model = get_peft_model(base, lora_config_for_generator(config, base.config.num_hidden_layers))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    rng = random.Random(seed)
    model.train()
    rates = []
    for _ in range(steps + 1):
        rows = rng.sample(encoded, config.batch_size)
        tic = time.perf_counter()
        width = config.max_length
        ids = torch.tensor([r["input_ids"] + [tokenizer.pad_token_id] * (width - len(r["input_ids"])) for r in rows])
        labels = torch.tensor([r["labels"] + [IGNORE_INDEX] * (width - len(r["labels"])) for r in rows])
        mask = torch.tensor([[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in rows])
        model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        rates.append(int(mask.sum()) / (time.perf_counter() - tic))
    return rates[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="measured steps per loop (after one warm-up step)")
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    args = parser.parse_args()

    params = load_params(args.params)
    base = resolve_model(params.models.generator, Settings().models_dir)
    examples = [json.loads(line) for line in (ROOT / params.data.curated_dir / "generator.jsonl").read_text().splitlines()]
    # no replay: both loops train on the same examples (and the base model's replay answers,
    # generated before training, would only add minutes)
    config = dataclasses.replace(params.generator, max_steps=args.steps + 1, warmup_steps=0, holdout_examples=0,
                                 early_stopping_patience=0, checkpoint_every=0, replay_examples=0)
    tokenizer = load_tokenizer(base)
    trained_on, _ = split_for_generator(examples, 0, params.project.seed, config.refusal_check)  # as train_generator
    encoded = [e for e in (encode_example(tokenizer, ex, config) for ex in trained_on) if e is not None]
    lengths = [len(e["input_ids"]) for e in encoded]

    def ragops_loop(precision: str) -> tuple[float, str]:
        trained = train_generator(examples, base, dataclasses.replace(config, precision=precision),
                                  params.project.seed)
        return statistics.median(h["tokens_per_s"] for h in trained.history[1:]), trained.precision

    baseline = statistics.median(plain_loop(encoded, base, config, args.steps, params.project.seed))
    ours_fp32, _ = ragops_loop("fp32")
    ours, resolved = ragops_loop(config.precision)
    result = {
        "model": params.models.generator, "threads": torch.get_num_threads(), "batch_size": config.batch_size,
        "max_length": config.max_length, "measured_steps": args.steps,
        "example_tokens_mean": round(statistics.mean(lengths), 1), "example_tokens_max": max(lengths),
        "plain_pad_to_max_fp32_tokens_per_s": round(baseline, 1),
        "ragops_fp32_tokens_per_s": round(ours_fp32, 1),
        "ragops_precision": resolved,
        "ragops_tokens_per_s": round(ours, 1),
        "speedup": round(ours / baseline, 2),
        "speedup_fp32_batching_alone": round(ours_fp32 / baseline, 2),
        "goal_speedup": 1.5,
    }
    emit("generator_training_throughput", result)


if __name__ == "__main__":
    main()
