"""Generator: the instruct LM fine-tuned with LoRA on RAG-style examples (loss on answers only).

The training loop is built for CPUs: batches group examples of similar length and pad only to
the longest row; rows are left-padded so every answer ends its row and the LM head (a 49k-word
vocabulary, a fifth of the model's compute) runs only over the answer window (the examples and
their batches: components/training/generator_examples.py). It keeps a held-out split for
evaluation loss and early stopping, and checkpoints so a killed run resumes.

    >>> result = train_generator(examples, base_path, params.generator, seed=42,
    ...                          checkpoint_root=Path(".ragops/checkpoints/generator"))  # doctest: +SKIP
    >>> tuned, base = answers_with_and_without_adapter(result, result.holdout, params.generator)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, TaskType, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from components.config import GeneratorConfig
from components.data.replay_prompts import all_prompts
from components.hashing import fingerprint
from components.models.generator import generate_answers, load_base_generator, load_tokenizer, set_lora_merged
from components.training.checkpoint import load_latest_checkpoint, save_checkpoint
from components.training.generator_examples import (IGNORE_INDEX, check_lengths, encode_example, example_messages,
                                                     pad_batch, plan_batches, replay_examples, split_for_generator)

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


def micro_batches(batch: list[int], size: int) -> list[list[int]]:
    """A planned batch in parts of at most `size` examples (0: whole), each padded and passed forward
    and backward on its own. The step's examples and its gradient (the loss summed over every answer
    token of the step, divided by their count) are the batch's; the activations held at once are a
    part's. Demo data, bf16, 2-core AMD EPYC, 2026-12-05: the 4 longest batches of 4 peaked at 4.3 GB
    resident, in parts of 2 at 3.2 GB, in the same time; the 48 steps of the default recipe at 5.67 GB
    against 4.79 GB (243.7 s against 259.2 s, separate runs). Gradient checkpointing (its own key)
    held 3.2 GB but took 41% longer, with the same losses. Off by default: the default recipe's robustness figures (README) were
    measured on whole batches, and parts change the float summation order.

    >>> micro_batches([7, 3, 9, 1, 4], 2)
    [[7, 3], [9, 1], [4]]
    """
    size = size or len(batch)
    return [batch[i : i + size] for i in range(0, len(batch), size)]


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


def checkpoint_key(examples: list[dict], base_path: str, config: GeneratorConfig, seed: int,
                   dtype: torch.dtype | None) -> str:
    """Everything that shapes the trained adapter (including the precision `auto` resolved to on
    this machine); a checkpoint is resumed only on an exact match."""
    replay = all_prompts() if config.replay_examples else []
    data = hashlib.sha256(json.dumps([examples, replay], sort_keys=True).encode()).hexdigest()
    return fingerprint(LOOP_VERSION, asdict(config), seed, Path(base_path).name, data, str(dtype))


def train_generator(examples: list[dict], base_path: str, config: GeneratorConfig, seed: int,
                    device: str = "cpu", checkpoint_root: Path | None = None) -> GeneratorResult:
    """Train (or resume) a LoRA adapter. With `checkpoint_root`, state is saved every
    `checkpoint_every` steps under checkpoint_root/<fingerprint> and a rerun of the same job
    continues from the newest checkpoint (a finished job resumes as finished)."""
    torch.manual_seed(seed)  # before the adapter's initial weights are drawn
    tokenizer = load_tokenizer(base_path)
    train, holdout = split_for_generator(examples, config.holdout_examples, seed, config.refusal_check)
    encoded_train = [encode_example(tokenizer, ex, config) for ex in train]
    check_lengths(tokenizer, train, encoded_train, config)
    base = load_base_generator(base_path, device)
    if config.gradient_checkpointing:  # the layers' activations recomputed in the backward pass, not kept
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = get_peft_model(base, lora_config_for_generator(config, base.config.num_hidden_layers))
    dtype = training_dtype(config.precision, device)
    replay = replay_examples(model, tokenizer, config, seed)  # train only: evaluation loss is on RAG examples
    encoded_all = encoded_train + [encode_example(tokenizer, ex, config) for ex in replay]
    encoded = [e for e in encoded_all if e is not None]
    if not encoded:
        raise ValueError(f"no generator example fits generator.max_length={config.max_length} tokens; raise it")
    loop = _TrainingLoop(
        model, tokenizer, config, device, dtype, encoded,
        holdout=[e for e in (encode_example(tokenizer, ex, config) for ex in holdout) if e is not None],
        plan=plan_batches([len(e["input_ids"]) for e in encoded], config.batch_size,
                          config.max_steps * config.grad_accum, seed, config.length_grouping),
        job_path=checkpoint_root / checkpoint_key(examples, base_path, config, seed, dtype) if checkpoint_root else None)
    start = loop.resume()
    loop.run(start)
    last = loop.keep_best()
    state = loop.state
    return GeneratorResult(model, tokenizer, state["history"], state["evals"], train_examples=len(encoded),
                           replay_examples=len(replay),
                           skipped_too_long=len(encoded_all) - len(encoded), holdout=holdout, resumed_from_step=start,
                           best_step=state["best_step"] or last, stopped_early=last < config.max_steps,
                           precision="bf16" if dtype == torch.bfloat16 else "fp32")


@dataclass
class _TrainingLoop:
    """One training job: the adapted model, its optimizer and batch plan, and the state a checkpoint
    saves whole (history, evaluations, early-stopping counters, the best adapter weights so far)."""

    model: PeftModel
    tokenizer: object
    config: GeneratorConfig
    device: str
    dtype: torch.dtype | None
    encoded: list[dict]  # the trainable examples, replay included
    holdout: list[dict]  # encoded held-out examples: the evaluation loss
    plan: list[list[int]]  # example indices of each micro-batch, in order
    job_path: Path | None  # this job's checkpoint directory (None: no checkpoints)
    state: dict = field(default_factory=lambda: {"history": [], "evals": [], "best_loss": math.inf, "best_step": 0,
                                                 "bad_evals": 0, "done": False})
    best_adapter: dict | None = None

    def __post_init__(self) -> None:
        self.optimizer = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad],
                                           lr=self.config.learning_rate)

    def resume(self) -> int:
        """The step the newest checkpoint of this job reached (its weights, optimizer, random state and
        loop state restored), or 0."""
        found = load_latest_checkpoint(self.job_path) if self.job_path else None
        if not found:
            return 0
        start, tensors, meta = found
        set_peft_model_state_dict(self.model, tensors["adapter"])
        self.optimizer.load_state_dict(tensors["optimizer"])
        torch.set_rng_state(tensors["torch_rng"])
        self.best_adapter = tensors.get("best_adapter")
        self.state = {k: meta[k] for k in self.state}
        print(f"generator: resuming from the checkpoint at step {start} of {self.config.max_steps} ({self.job_path})")
        return start

    def run(self, start: int) -> None:
        config = self.config
        self.model.train()
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns) as progress:
            task = progress.add_task("generator: training", total=config.max_steps, completed=start)
            for step in range(start + 1, config.max_steps + 1):
                if self.state["done"]:
                    break
                loss = self.step(step)
                if self.holdout and (step % config.eval_every == 0 or step == config.max_steps):
                    self.evaluate(step)
                if step == config.max_steps:
                    self.state["done"] = True
                if self.state["done"] or (config.checkpoint_every and step % config.checkpoint_every == 0):
                    self.checkpoint(step)
                progress.update(task, advance=1, description=f"generator: training (loss {loss:.3f})")

    def step(self, step: int) -> float:
        """One optimizer step over `grad_accum` micro-batches; its loss per answer token."""
        config, tic = self.config, time.perf_counter()
        learning_rate = learning_rate_at(step, config)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        micro = [_to(pad_batch([self.encoded[i] for i in part], self.tokenizer.pad_token_id), self.device)
                 for k in range(config.grad_accum)
                 for part in micro_batches(self.plan[(step - 1) * config.grad_accum + k], config.micro_batch_size)]
        n_answer = sum(int((b["labels"] != IGNORE_INDEX).sum()) for b in micro)
        total = 0.0
        for batch in micro:
            with autocast(self.device, self.dtype):
                loss, _ = answer_loss(self.model, batch)
            (loss / n_answer).backward()  # mean over every answer token of the step
            total += loss.item()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        tokens = sum(int(b["attention_mask"].sum()) for b in micro)
        padded = sum(b["attention_mask"].numel() for b in micro)
        seconds = time.perf_counter() - tic
        self.state["history"].append({"step": step, "loss": total / n_answer, "learning_rate": learning_rate,
                                      "tokens_per_s": tokens / seconds, "padding_share": 1 - tokens / padded})
        return total / n_answer

    def evaluate(self, step: int) -> None:
        """The held-out loss; the best weights so far are kept, and `early_stopping_patience`
        evaluations without a better one end the job."""
        state, config = self.state, self.config
        eval_loss = evaluation_loss(self.model, self.holdout, self.tokenizer.pad_token_id, config.batch_size * 2,
                                    self.device, self.dtype)
        state["evals"].append({"step": step, "eval_loss": eval_loss})
        if eval_loss < state["best_loss"]:
            state.update(best_loss=eval_loss, best_step=step, bad_evals=0)
            self.best_adapter = {k: v.detach().clone() for k, v in get_peft_model_state_dict(self.model).items()}
        else:
            state["bad_evals"] += 1
            if config.early_stopping_patience and state["bad_evals"] >= config.early_stopping_patience:
                state["done"] = True

    def checkpoint(self, step: int) -> None:
        if self.job_path is None:
            return
        tensors = {"adapter": get_peft_model_state_dict(self.model), "optimizer": self.optimizer.state_dict(),
                   "torch_rng": torch.get_rng_state()}
        if self.best_adapter is not None:
            tensors["best_adapter"] = self.best_adapter
        save_checkpoint(self.job_path, step, tensors, self.state)

    def keep_best(self) -> int:
        """Early stopping keeps the best evaluated weights; returns the last step trained."""
        last = self.state["history"][-1]["step"] if self.state["history"] else 0
        if self.best_adapter is not None and self.state["best_step"] != last:
            set_peft_model_state_dict(self.model, self.best_adapter)
        self.model.eval()
        return last


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
