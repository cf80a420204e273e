"""Generator: the instruct LM fine-tuned with LoRA on RAG-style examples (loss on answers only).

The training loop is built for CPUs: batches group examples of similar length and pad only to
the longest row; rows are left-padded so every answer ends its row and the LM head (a 49k-word
vocabulary, a fifth of the model's compute) runs only over the answer window. It keeps a
held-out split for evaluation loss and early stopping, and checkpoints so a killed run resumes.

    >>> result = train_generator(examples, base_path, params.generator, seed=42,
    ...                          checkpoint_root=Path(".ragops/checkpoints/generator"))  # doctest: +SKIP
    >>> tuned, base = answers_with_and_without_adapter(result, result.holdout, params.generator)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, TaskType, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from components.config import GeneratorConfig
from components.data.replay_prompts import all_prompts, replay_messages, replay_prompts
from components.models.generator import generate_answers, load_base_generator, load_tokenizer, set_lora_merged
from components.prompting import build_messages, render_chat, special_tokens, without_special_tokens
from components.hashing import fingerprint
from components.training.checkpoint import load_latest_checkpoint, save_checkpoint

IGNORE_INDEX = -100
# Over this share of training examples longer than generator.max_length, training stops with an
# error instead of learning from what is left (the first Python FAQ run skipped all of its answers).
MAX_SKIPPED_SHARE = 0.25
# Bump when the loop changes in a way that makes old checkpoints unsafe to resume.
LOOP_VERSION = 3


@dataclass
class GeneratorResult:
    model: PeftModel
    tokenizer: object
    history: list[dict] = field(default_factory=list)  # one row per optimizer step
    evals: list[dict] = field(default_factory=list)  # {"step", "eval_loss"} per evaluation
    train_examples: int = 0  # encoded and trainable, replay examples included
    replay_examples: int = 0
    skipped_too_long: int = 0
    holdout: list[dict] = field(default_factory=list)
    resumed_from_step: int = 0
    best_step: int = 0
    stopped_early: bool = False
    precision: str = "fp32"  # what the training step ran in (generator.precision resolved on this machine)

    @property
    def best_eval_loss(self) -> float:
        return min((e["eval_loss"] for e in self.evals), default=float("nan"))


def example_messages(example: dict, config: GeneratorConfig) -> list[dict]:
    if "messages" in example:  # a replay example: plain chat, no store prompt or context
        return example["messages"]
    return build_messages(example["question"], [(c["doc_id"], c["text"]) for c in example["context"]],
                          config.system_prompt)


def encode_example(tokenizer, example: dict, config: GeneratorConfig) -> dict[str, list[int]] | None:
    """Token ids with labels on the answer only (prompt positions are IGNORE_INDEX).
    None when the example does not fit max_length: cutting it would drop the system prompt or
    the document holding the answer, and training on that teaches the wrong thing."""
    prompt_ids = tokenizer(render_chat(tokenizer, example_messages(example, config)), add_special_tokens=False)["input_ids"]
    answer = without_special_tokens(example["answer"], special_tokens(tokenizer))
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    if example.get("finished", True):  # a replay answer cut at its token limit does not end there
        answer_ids.append(tokenizer.eos_token_id)
    if len(prompt_ids) + len(answer_ids) > config.max_length:
        return None
    return {"input_ids": list(prompt_ids) + answer_ids, "labels": [IGNORE_INDEX] * len(prompt_ids) + answer_ids}


def pad_batch(rows: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-pad to the longest row in the batch (not to max_length), so each row's answer ends
    at the last position; position ids restart at 0 after the padding."""
    width = max(len(r["input_ids"]) for r in rows)
    ids = [[pad_id] * (width - len(r["input_ids"])) + r["input_ids"] for r in rows]
    labels = [[IGNORE_INDEX] * (width - len(r["labels"])) + r["labels"] for r in rows]
    mask = torch.tensor([[0] * (width - len(r["input_ids"])) + [1] * len(r["input_ids"]) for r in rows])
    answer_window = max(len(r["labels"]) - _first_label(r["labels"]) for r in rows)
    return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "attention_mask": mask,
            "position_ids": (mask.cumsum(-1) - 1).clamp(min=0), "answer_window": torch.tensor(answer_window)}


def _first_label(labels: list[int]) -> int:
    return next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)


def plan_batches(lengths: list[int], batch_size: int, n_batches: int, seed: int, group_by_length: bool,
                 group_factor: int = 16) -> list[list[int]]:
    """`n_batches` batches of example indices, epoch after epoch, fixed by the seed.

    With grouping, each epoch's shuffled order is cut into groups of `group_factor` batches and
    sorted by length inside each group: batches hold rows of similar length (little padding)
    while the order across the epoch stays random."""
    rng = random.Random(seed)
    plan: list[list[int]] = []
    while len(plan) < n_batches:
        order = list(range(len(lengths)))
        rng.shuffle(order)
        groups = [order[i : i + batch_size * group_factor] for i in range(0, len(order), batch_size * group_factor)]
        epoch: list[list[int]] = []
        for group in groups:
            if group_by_length:
                group = sorted(group, key=lambda i: lengths[i])
            epoch += [group[i : i + batch_size] for i in range(0, len(group), batch_size)]
        if group_by_length:
            rng.shuffle(epoch)
        plan += epoch
    return plan[:n_batches]


def answer_loss(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over the answer tokens, and their count."""
    window = int(batch["answer_window"])
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                position_ids=batch["position_ids"], logits_to_keep=window + 1, use_cache=False)
    logits = out.logits[:, :-1, :]  # position t predicts token t + 1
    targets = batch["labels"][:, -window:]
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum")
    return loss, int((targets != IGNORE_INDEX).sum())


def split_holdout(examples: list[dict], n_holdout: int, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, holdout). Half of the holdout (as far as there are enough) is unanswerable, so the
    refusal rate is measured on as many examples as the citation accuracy. A question asked in a
    held-out example is never trained on, not even with another context (its RAFT twin is dropped)."""
    if n_holdout == 0:
        return list(examples), []
    rng = random.Random(seed)
    answerable = [e for e in examples if e.get("answerable", True)]
    unanswerable = [e for e in examples if not e.get("answerable", True)]
    rng.shuffle(answerable)
    rng.shuffle(unanswerable)
    n_unanswerable = min(n_holdout // 2, len(unanswerable) // 2)
    holdout = answerable[: n_holdout - n_unanswerable] + unanswerable[:n_unanswerable]
    held = {id(e) for e in holdout}
    held_questions = {_question_key(e) for e in holdout}
    return [e for e in examples if id(e) not in held and _question_key(e) not in held_questions], holdout


def split_for_generator(examples: list[dict], n_holdout: int, seed: int,
                        check_refuses: bool) -> tuple[list[dict], list[dict]]:
    """`split_holdout`'s split (the one the answerability check trains on) with what the generator
    does not learn left out: the examples marked `check_only` (near misses a small generator cannot
    tell apart by name), and every unanswerable example when the answerability check makes the
    refusal decision (`check_refuses`, generator.refusal_check). The generator then learns to answer
    from its context, and its evaluation loss and held-out behaviour measure that.
    Why: the 135M generator learns refusal from wordings, not from what its context holds. Trained
    on the demo's unanswerable examples (seed 1, fp32, 96 steps), it refused "How many of the
    <product> are left in the shop?" with the product's chunk in its context on 14 of the 28 golden
    stock questions, and 26 of the 53 unanswerable ones. Served after the check, its refusals raised
    the false-refusal rate from 0.03 (check alone) to 0.20 and the refusal accuracy by 0.006."""
    train, holdout = split_holdout(examples, n_holdout, seed)

    def learnt(example: dict) -> bool:
        return not example.get("check_only") and (example.get("answerable", True) or not check_refuses)

    return [e for e in train if learnt(e)], [e for e in holdout if learnt(e)]


def _question_key(example: dict) -> str:
    return " ".join(example["question"].lower().split())


def lora_config_for_generator(config: GeneratorConfig, num_layers: int) -> LoraConfig:
    """LoRA on `target_modules` of every layer, or of the top `lora_top_layers` only: the backward
    pass then stops at the lowest adapted layer, which makes each step much cheaper."""
    layers = None
    if config.lora_top_layers:
        if config.lora_top_layers > num_layers:
            raise ValueError(f"params.yaml: generator.lora_top_layers is {config.lora_top_layers} but the base model "
                             f"has {num_layers} layers; set it to at most {num_layers} (0 = all layers)")
        layers = list(range(num_layers - config.lora_top_layers, num_layers))
    return LoraConfig(task_type=TaskType.CAUSAL_LM, r=config.lora_r, lora_alpha=config.lora_alpha,
                      lora_dropout=config.lora_dropout, target_modules=list(config.target_modules),
                      layers_to_transform=layers)


def training_dtype(precision: str, device: str) -> torch.dtype | None:
    """The autocast dtype of the training step, or None for plain fp32. `auto` picks bf16 where the
    hardware multiplies bf16 natively (CPUs with AVX512-BF16 or AMX, recent GPUs): about 1.6x
    faster steps on such a CPU. Adapter weights and optimizer state stay fp32 either way."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device == "cpu":
        return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None
    return None


def autocast(device: str, dtype: torch.dtype | None):
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype, enabled=dtype is not None)


def learning_rate_at(step: int, config: GeneratorConfig) -> float:
    """Linear warm-up over `warmup_steps`, then linear decay to a tenth of the peak."""
    if step <= config.warmup_steps:
        return config.learning_rate * step / max(1, config.warmup_steps)
    progress = (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps)
    return config.learning_rate * (1.0 - 0.9 * min(1.0, progress))


@torch.no_grad()
def evaluation_loss(model, encoded: list[dict], pad_id: int, batch_size: int, device: str,
                    dtype: torch.dtype | None = None) -> float:
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]["input_ids"]))
    for start in range(0, len(order), batch_size):
        batch = _to(pad_batch([encoded[i] for i in order[start : start + batch_size]], pad_id), device)
        with autocast(device, dtype):
            loss, n = answer_loss(model, batch)
        total, tokens = total + loss.item(), tokens + n
    model.train(was_training)
    return total / max(1, tokens)


def _to(batch: dict[str, torch.Tensor], device: str) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


def replay_examples(model, tokenizer, config: GeneratorConfig, seed: int) -> list[dict]:
    """`generator.replay_examples` plain-chat prompts answered by the base model itself (the adapter
    switched off), greedy: the same base model and seed give the same examples
    (components/data/replay_prompts.py says why)."""
    if not config.replay_examples:
        return []
    prompts = replay_prompts(config.replay_examples, seed)
    with model.disable_adapter():
        answers = generate_answers(model, tokenizer, [replay_messages(p) for p in prompts],
                                   config.replay_max_new_tokens, progress="generator: replay answers (base model)")
    # An answer as long as the limit was cut there (the decoded text re-encodes to about as many tokens).
    return [{"id": f"replay-{i + 1:03d}", "messages": replay_messages(prompt), "answer": answer,
             "finished": len(tokenizer(answer, add_special_tokens=False)["input_ids"]) < config.replay_max_new_tokens - 1}
            for i, (prompt, answer) in enumerate(zip(prompts, answers))]


def checkpoint_key(examples: list[dict], base_path: str, config: GeneratorConfig, seed: int,
                   dtype: torch.dtype | None) -> str:
    """Everything that shapes the trained adapter (including the precision `auto` resolved to on
    this machine); a checkpoint is resumed only on an exact match."""
    replay = all_prompts() if config.replay_examples else []
    data = hashlib.sha256(json.dumps([examples, replay], sort_keys=True).encode()).hexdigest()
    return fingerprint(LOOP_VERSION, asdict(config), seed, Path(base_path).name, data, str(dtype))


def check_lengths(tokenizer, train: list[dict], encoded: list[dict | None], config: GeneratorConfig) -> None:
    """Stop before training when more than MAX_SKIPPED_SHARE of the training examples are longer
    than generator.max_length: the rest (and the replayed plain chat) would be all the adapter
    learns, and it would pass for trained. Names the first such example and what to change."""
    skipped = [ex for ex, e in zip(train, encoded, strict=True) if e is None]
    if len(skipped) <= MAX_SKIPPED_SHARE * len(train):
        return
    first = skipped[0]
    tokens = len(tokenizer(render_chat(tokenizer, example_messages(first, config)) + first["answer"],
                           add_special_tokens=False)["input_ids"])
    raise ValueError(
        f"generator.jsonl: {len(skipped)} of {len(train)} training examples are longer than "
        f"generator.max_length={config.max_length} tokens and would be skipped (first: {first.get('id', '?')}, "
        f"{tokens} tokens with the system prompt and its {len(first.get('context', []))} context chunks). "
        f"Raise generator.max_length, or make the contexts shorter (index.chunk_words, index.top_k, and the "
        f"examples' context chunks to match)")


def train_generator(examples: list[dict], base_path: str, config: GeneratorConfig, seed: int,
                    device: str = "cpu", checkpoint_root: Path | None = None) -> GeneratorResult:
    """Train (or resume) a LoRA adapter. With `checkpoint_root`, state is saved every
    `checkpoint_every` steps under checkpoint_root/<fingerprint> and a rerun of the same job
    continues from the newest checkpoint (a finished job resumes as finished)."""
    torch.manual_seed(seed)
    tokenizer = load_tokenizer(base_path)
    train, holdout = split_for_generator(examples, config.holdout_examples, seed, config.refusal_check)
    encoded_train = [encode_example(tokenizer, ex, config) for ex in train]
    check_lengths(tokenizer, train, encoded_train, config)
    base = load_base_generator(base_path, device)
    model = get_peft_model(base, lora_config_for_generator(config, base.config.num_hidden_layers))
    dtype = training_dtype(config.precision, device)
    replay = replay_examples(model, tokenizer, config, seed)  # train only: evaluation loss is on RAG examples
    encoded_all = encoded_train + [encode_example(tokenizer, ex, config) for ex in replay]
    encoded = [e for e in encoded_all if e is not None]
    holdout_encoded = [e for e in (encode_example(tokenizer, ex, config) for ex in holdout) if e is not None]
    if not encoded:
        raise ValueError(f"no generator example fits generator.max_length={config.max_length} tokens; raise it")
    plan = plan_batches([len(e["input_ids"]) for e in encoded], config.batch_size,
                        config.max_steps * config.grad_accum, seed, config.length_grouping)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)

    job_path = (checkpoint_root / checkpoint_key(examples, base_path, config, seed, dtype)
                if checkpoint_root else None)
    state = {"history": [], "evals": [], "best_loss": math.inf, "best_step": 0, "bad_evals": 0, "done": False}
    best_adapter = None
    start = 0
    found = load_latest_checkpoint(job_path) if job_path else None
    if found:
        start, tensors, meta = found
        set_peft_model_state_dict(model, tensors["adapter"])
        optimizer.load_state_dict(tensors["optimizer"])
        torch.set_rng_state(tensors["torch_rng"])
        best_adapter = tensors.get("best_adapter")
        state = {k: meta[k] for k in state}
        print(f"generator: resuming from the checkpoint at step {start} of {config.max_steps} ({job_path})")

    def checkpoint(step: int) -> None:
        if job_path is None:
            return
        tensors = {"adapter": get_peft_model_state_dict(model), "optimizer": optimizer.state_dict(),
                   "torch_rng": torch.get_rng_state()}
        if best_adapter is not None:
            tensors["best_adapter"] = best_adapter
        save_checkpoint(job_path, step, tensors, state)

    model.train()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns) as progress:
        task = progress.add_task("generator: training", total=config.max_steps, completed=start)
        for step in range(start + 1, config.max_steps + 1):
            if state["done"]:
                break
            tic = time.perf_counter()
            learning_rate = learning_rate_at(step, config)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate
            micro = [_to(pad_batch([encoded[i] for i in plan[(step - 1) * config.grad_accum + k]],
                                   tokenizer.pad_token_id), device) for k in range(config.grad_accum)]
            n_answer = sum(int((b["labels"] != IGNORE_INDEX).sum()) for b in micro)
            total = 0.0
            for batch in micro:
                with autocast(device, dtype):
                    loss, _ = answer_loss(model, batch)
                (loss / n_answer).backward()  # mean over every answer token of the step
                total += loss.item()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            tokens = sum(int(b["attention_mask"].sum()) for b in micro)
            padded = sum(b["attention_mask"].numel() for b in micro)
            seconds = time.perf_counter() - tic
            state["history"].append({"step": step, "loss": total / n_answer, "learning_rate": learning_rate,
                                     "tokens_per_s": tokens / seconds, "padding_share": 1 - tokens / padded})
            if holdout_encoded and (step % config.eval_every == 0 or step == config.max_steps):
                eval_loss = evaluation_loss(model, holdout_encoded, tokenizer.pad_token_id, config.batch_size * 2, device,
                                            dtype)
                state["evals"].append({"step": step, "eval_loss": eval_loss})
                if eval_loss < state["best_loss"]:
                    state.update(best_loss=eval_loss, best_step=step, bad_evals=0)
                    best_adapter = {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}
                else:
                    state["bad_evals"] += 1
                    if config.early_stopping_patience and state["bad_evals"] >= config.early_stopping_patience:
                        state["done"] = True
            if step == config.max_steps:
                state["done"] = True
            if state["done"] or (config.checkpoint_every and step % config.checkpoint_every == 0):
                checkpoint(step)
            progress.update(task, advance=1, description=f"generator: training (loss {total / n_answer:.3f})")
    last = state["history"][-1]["step"] if state["history"] else 0
    if best_adapter is not None and state["best_step"] != last:
        set_peft_model_state_dict(model, best_adapter)  # early stopping keeps the best evaluated weights
    model.eval()
    return GeneratorResult(model, tokenizer, state["history"], state["evals"], train_examples=len(encoded),
                           replay_examples=len(replay),
                           skipped_too_long=len(encoded_all) - len(encoded), holdout=holdout, resumed_from_step=start,
                           best_step=state["best_step"] or last, stopped_early=last < config.max_steps,
                           precision="bf16" if dtype == torch.bfloat16 else "fp32")


def answers_with_and_without_adapter(result: GeneratorResult, examples: list[dict],
                                     config: GeneratorConfig) -> tuple[list[str], list[str]]:
    """(fine-tuned answers, base-model answers) on the same prompts and retrieved context."""
    conversations = [example_messages(ex, config) for ex in examples]
    set_lora_merged(result.model, True)
    try:
        tuned = generate_answers(result.model, result.tokenizer, conversations, config.max_new_tokens,
                                 progress="generator: held-out answers (fine-tuned)")
    finally:
        set_lora_merged(result.model, False)
    with result.model.disable_adapter():
        base = generate_answers(result.model, result.tokenizer, conversations, config.max_new_tokens,
                                progress="generator: held-out answers (base model)")
    return tuned, base


def save_generator(result: GeneratorResult, out_path: Path) -> Path:
    """Only the LoRA adapter and the tokenizer; the base model is referenced, not copied."""
    result.model.save_pretrained(out_path)
    result.tokenizer.save_pretrained(out_path)
    return out_path
