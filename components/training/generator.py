"""Generator: the instruct LM fine-tuned with LoRA on RAG-style examples (loss on answers only).

    >>> result = train_generator(examples, base_path, params.generator, seed=42)  # doctest: +SKIP
    >>> answers = generate_answers(result.model, result.tokenizer, [messages], 48)  # doctest: +SKIP
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, TaskType, get_peft_model
from rich.progress import Progress
from transformers import AutoModelForCausalLM, AutoTokenizer

from components.config import GeneratorConfig
from components.prompting import build_messages

IGNORE_INDEX = -100


@dataclass
class GeneratorResult:
    model: PeftModel
    tokenizer: object
    history: list[dict] = field(default_factory=list)
    train_examples: int = 0


def load_tokenizer(path: str):
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def encode_example(tokenizer, example: dict, config: GeneratorConfig) -> dict[str, list[int]]:
    """Prompt tokens are masked out of the labels: the loss is on the answer tokens only."""
    contexts = [(c["doc_id"], c["text"]) for c in example["context"]]
    messages = build_messages(example["question"], contexts, config.system_prompt)
    prompt_ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if isinstance(prompt_ids, dict) or hasattr(prompt_ids, "input_ids"):
        prompt_ids = prompt_ids["input_ids"]
    answer_ids = tokenizer(example["answer"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    prompt_ids = prompt_ids[-(config.max_length - len(answer_ids)) :]
    return {"input_ids": prompt_ids + answer_ids, "labels": [IGNORE_INDEX] * len(prompt_ids) + answer_ids}


def pad_batch(rows: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Dynamic padding: to the longest row in the batch, not to max_length."""
    width = max(len(r["input_ids"]) for r in rows)
    ids = [r["input_ids"] + [pad_id] * (width - len(r["input_ids"])) for r in rows]
    labels = [r["labels"] + [IGNORE_INDEX] * (width - len(r["labels"])) for r in rows]
    mask = [[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in rows]
    return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "attention_mask": torch.tensor(mask)}


def lora_config_for_generator(config: GeneratorConfig) -> LoraConfig:
    return LoraConfig(task_type=TaskType.CAUSAL_LM, r=config.lora_r, lora_alpha=config.lora_alpha,
                      lora_dropout=config.lora_dropout, target_modules=list(config.target_modules))


def load_base_generator(base_path: str, device: str = "cpu"):
    return AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32).to(device)


def train_generator(examples: list[dict], base_path: str, config: GeneratorConfig, seed: int,
                    device: str = "cpu") -> GeneratorResult:
    torch.manual_seed(seed)
    tokenizer = load_tokenizer(base_path)
    model = get_peft_model(load_base_generator(base_path, device), lora_config_for_generator(config))
    encoded = [encode_example(tokenizer, ex, config) for ex in examples]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    rng = random.Random(seed)
    history: list[dict] = []
    model.train()
    with Progress() as progress:
        task = progress.add_task("generator: training", total=config.max_steps)
        for step in range(1, config.max_steps + 1):
            tic = time.perf_counter()
            total_loss, tokens = 0.0, 0
            for _ in range(config.grad_accum):
                batch = pad_batch(rng.sample(encoded, min(config.batch_size, len(encoded))), tokenizer.pad_token_id)
                batch = {k: v.to(device) for k, v in batch.items()}
                loss = model(**batch).loss / config.grad_accum
                loss.backward()
                total_loss += loss.item()
                tokens += int(batch["attention_mask"].sum())
            optimizer.step()
            optimizer.zero_grad()
            seconds = time.perf_counter() - tic
            history.append({"step": step, "loss": total_loss, "tokens_per_s": tokens / seconds,
                            "learning_rate": config.learning_rate})
            progress.advance(task)
    model.eval()
    return GeneratorResult(model, tokenizer, history, train_examples=len(encoded))


@torch.inference_mode()
def generate_answers(model, tokenizer, conversations: list[list[dict]], max_new_tokens: int,
                     batch_size: int = 8) -> list[str]:
    """Greedy answers for chat conversations (batched, left-padded)."""
    tokenizer.padding_side = "left"
    answers: list[str] = []
    for start in range(0, len(conversations), batch_size):
        prompts = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False)
                   for c in conversations[start : start + batch_size]]
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        answers += [tokenizer.decode(row[enc["input_ids"].shape[1] :], skip_special_tokens=True).strip() for row in out]
    return answers


def save_generator(result: GeneratorResult, out_path: Path) -> Path:
    """Only the LoRA adapter and the tokenizer; the base model is referenced, not copied."""
    result.model.save_pretrained(out_path)
    result.tokenizer.save_pretrained(out_path)
    return out_path


def load_generator(adapter_path: str, base_path: str, device: str = "cpu"):
    model = PeftModel.from_pretrained(load_base_generator(base_path, device), adapter_path).eval()
    return model, load_tokenizer(adapter_path)
