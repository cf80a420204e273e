"""The generator at inference: load a base model with its LoRA adapter, answer chat conversations.

Training (components/training/generator.py) and every place that answers (the assistant, the
registered generator's pyfunc, evaluation) load and generate through here, so serving never
imports training code.

    >>> model, tokenizer = load_generator(adapter_path, base_path)  # doctest: +SKIP
    >>> set_lora_merged(model, True)  # doctest: +SKIP
    >>> generate_answers(model, tokenizer, [messages], max_new_tokens=48)  # doctest: +SKIP
"""

from __future__ import annotations

import torch
from peft import PeftModel
from peft.tuners.tuners_utils import BaseTunerLayer
from rich.progress import track
from transformers import AutoModelForCausalLM, AutoTokenizer

from components.prompting import render_chat


def load_tokenizer(path: str):
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_generator(base_path: str, device: str = "cpu"):
    return AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32).to(device)


@torch.inference_mode()
def generate_answers(model, tokenizer, conversations: list[list[dict]], max_new_tokens: int,
                     batch_size: int = 16, progress: str | None = None) -> list[str]:
    """Greedy answers for chat conversations (batched, left-padded), in their order; `progress`
    names a progress bar. Batches of 16: 1.22x the answers per second of batches of 8 for
    SmolLM2-135M on 2 CPU cores (benchmarks/generation_throughput.py). Batches hold prompts of
    similar length, so little padding is computed: 64 RAG prompts of 174-301 tokens took 59.9 s
    instead of 65.0 (2-core AMD EPYC, fp32), the same answers."""
    if not conversations:
        return []
    tokenizer.padding_side = "left"
    prompts = [render_chat(tokenizer, c) for c in conversations]
    lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(prompts)), key=lengths.__getitem__)
    answers: dict[int, str] = {}
    starts = range(0, len(prompts), batch_size)
    for start in track(starts, description=progress, transient=True) if progress else starts:
        batch = order[start : start + batch_size]
        enc = tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True,
                        add_special_tokens=False).to(model.device)
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        for i, row in zip(batch, out, strict=True):
            answers[i] = tokenizer.decode(row[enc["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    return [answers[i] for i in range(len(prompts))]


def set_lora_merged(model, merged: bool) -> None:
    """Fold the LoRA weights into the base model's weights (`merged=True`) or take them out again.
    Answers generated with them folded in come 1.26x as fast (32 RAG prompts, SmolLM2-135M, 2-core
    Intel Xeon: 21.9 s against 27.6 s, the same greedy answers): the unmerged adapter runs two
    extra small matmuls in each of its 210 layers for every generated token. A switch costs
    ~0.2 s, so callers merge once for many answers and unmerge only for the base model or training."""
    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    if not layers or all(layer.merged == merged for layer in layers):
        return
    if merged:
        model.merge_adapter()
    else:
        model.unmerge_adapter()


def load_generator(adapter_path: str, base_path: str, device: str = "cpu"):
    model = PeftModel.from_pretrained(load_base_generator(base_path, device), adapter_path).eval()
    return model, load_tokenizer(adapter_path)
