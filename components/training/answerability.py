"""Answerability check: does one of the retrieved chunks hold the answer to the question?

A cross-encoder (the encoder of params.yaml `models.encoder` with a two-class head, fine-tuned
on (question, chunk) pairs) scores every retrieved chunk; below `generator.refusal_threshold`
for all of them, the assistant refuses without generating. The fine-tuned 135M generator alone
refused 0.28 of the demo's 53 unanswerable golden questions (it answered "What would I pay for
the Espressa Espresso Machine Max?" with the price of the Espressa Espresso Machine Pro); the check
decides before generation, on the question and the chunks only.

Training pairs come from generator.jsonl alone (so a document change never retrains it):
- each example's context chunks: the chunk of a document the reference answer cites is a
  positive, the others (and every chunk of an unanswerable example) negatives;
- hard negatives: for each question, the chunks from all the examples' contexts that the encoder
  finds closest to it, other than those of the cited documents. These are the near misses (the
  same brand and model line, another series) that make a name, not a topic, decide. Without them
  the check refused 0.55 of the unanswerable golden questions, with three per question 0.85,
  false refusals 0.00 and 0.02 (demo data, one seed);
- the unanswerable examples' own pairs, repeated (`generator.refusal_unanswerable_repeats`): they
  are the only pairs where a chunk about the right subject does not answer (an attribute no
  document states), about 260 of 3,300. Seen once, the check took "Who designed the Vitalis
  Kids Watch Plus?" as answered by the watch's own chunk.

Only the encoder's top layers train (`generator.refusal_train_layers`, 3 of 6): with every
layer trained the check swung with the seed (false refusals 0.03 to 0.15 of the answerable
golden questions over three seeds: one seed refused "How many of the ... are left in the shop?",
a wording training never uses); with the lower layers kept as pretrained, 0.01 to 0.03 over four
seeds, at 0.83-0.89 of the unanswerable refused, in 1.6x less time. params.yaml has the figures.

It is trained in the generator step and saved inside the generator's adapter folder
(`answerability/`), so a registered generator version carries its refusal decision with it.

    >>> check = train_answerability(train, holdout, encoder_path, params.generator, seed=42).check  # doctest: +SKIP
    >>> check.scores(["How much is the Aurora Earbuds Max?"], [["Aurora Earbuds Pro: Price: 59.99 USD."]])  # doctest: +SKIP
    [0.03]
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import Progress
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from components.config import GeneratorConfig
from components.evaluation.metrics import generator_behaviour_outcomes
from components.index.embedding import embed_texts, load_embedder
from components.models.answerability import FOLDER, MAX_LENGTH, AnswerabilityCheck
from components.prompting import CITATION
from components.training.generator_examples import plan_batches


@dataclass
class AnswerabilityResult:
    check: AnswerabilityCheck
    metrics: dict[str, float] = field(default_factory=dict)  # on the generator's held-out examples
    pairs: int = 0
    history: list[dict] = field(default_factory=list)


def _cited(example: dict) -> set[str]:
    return set(CITATION.findall(example["answer"])) if example.get("answerable", True) else set()


def training_pairs(examples: list[dict], embedder, hard_negatives: int,
                   unanswerable_repeats: int = 1) -> list[tuple[str, str, int]]:
    """(question, chunk text, 1 if the chunk answers it) for the examples' own contexts, plus
    `hard_negatives` mined per question from the chunks of all the examples' contexts, plus the
    unanswerable examples' own pairs `unanswerable_repeats - 1` more times."""
    pairs = [(ex["question"], c["text"], int(c["doc_id"] in _cited(ex))) for ex in examples for c in ex["context"]]
    unanswerable = [(ex["question"], c["text"], 0) for ex in examples if not ex.get("answerable", True)
                    for c in ex["context"]]
    return pairs + _mined(examples, embedder, hard_negatives) + unanswerable * (unanswerable_repeats - 1)


def _mined(examples: list[dict], embedder, hard_negatives: int) -> list[tuple[str, str, int]]:
    pairs: list[tuple[str, str, int]] = []
    if not hard_negatives:
        return pairs
    pool = list({c["text"]: c["doc_id"] for ex in examples for c in ex["context"]}.items())
    pool_vectors = embed_texts(embedder, [text for text, _ in pool], batch_size=64)
    question_vectors = embed_texts(embedder, [ex["question"] for ex in examples], batch_size=64)
    for ex, vector in zip(examples, question_vectors, strict=True):
        cited, shown = _cited(ex), {c["text"] for c in ex["context"]}
        nearest = np.argsort(-(pool_vectors @ vector))[: hard_negatives + len(shown) + 8]
        mined = [pool[i][0] for i in nearest if pool[i][1] not in cited and pool[i][0] not in shown]
        pairs += [(ex["question"], text, 0) for text in mined[:hard_negatives]]
    return pairs


def freeze_below(model, top_layers: int) -> None:
    """Train only the top `top_layers` encoder layers and the head (0: every weight). The lower
    layers keep the pretrained encoder's sense of what a question asks, and the backward pass
    stops where the trained layers start."""
    if not top_layers:
        return
    layers = getattr(getattr(model.base_model, "encoder", None), "layer", None)
    if layers is None or top_layers > len(layers):
        raise ValueError(f"params.yaml: generator.refusal_train_layers is {top_layers}, but the encoder has "
                         f"{len(layers) if layers is not None else 'no BERT-style'} layers; set it to at most "
                         "that (0 = every layer)")
    for module in [model.base_model.embeddings, *layers[: len(layers) - top_layers]]:
        module.requires_grad_(False)


def train_answerability(train: list[dict], holdout: list[dict], encoder_path: str, config: GeneratorConfig,
                        seed: int, device: str = "cpu") -> AnswerabilityResult:
    """Fine-tune the cross-encoder on `train` (generator examples); measure the refusal decision on
    `holdout` (the generator's held-out examples, never trained on by either)."""
    torch.manual_seed(seed)
    pairs = training_pairs(train, load_embedder(encoder_path, device), config.refusal_hard_negatives,
                           config.refusal_unanswerable_repeats)
    tokenizer = AutoTokenizer.from_pretrained(encoder_path)
    model = AutoModelForSequenceClassification.from_pretrained(encoder_path, num_labels=2).to(device)
    freeze_below(model, config.refusal_train_layers)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.refusal_learning_rate)
    # Balanced classes: about one pair in six answers its question, and unweighted the head sat at
    # that prior (every score near 0.15) for the first few hundred steps.
    positives = sum(label for *_, label in pairs)
    weight = torch.tensor([len(pairs) / (2 * max(1, len(pairs) - positives)), len(pairs) / (2 * max(1, positives))],
                          device=device)
    batch_size, history = 16, []
    # Batches of pairs of similar length (a chunk is 20 to 190 tokens): padded to the longest of
    # similar rows, an epoch costs about half of what random batches padded to their longest did.
    lengths = [len(ids) for ids in tokenizer([q for q, _, _ in pairs], [t for _, t, _ in pairs], truncation=True,
                                             max_length=MAX_LENGTH)["input_ids"]]
    plan = plan_batches(lengths, batch_size, config.refusal_epochs * ((len(pairs) + batch_size - 1) // batch_size),
                        seed, group_by_length=True)
    model.train()
    with Progress() as progress:
        task = progress.add_task("answerability check: training", total=len(plan))
        for indices in plan:
            batch = [pairs[i] for i in indices]
            tic = time.perf_counter()
            enc = tokenizer([q for q, _, _ in batch], [t for _, t, _ in batch], truncation=True,
                            max_length=MAX_LENGTH, padding=True, return_tensors="pt").to(device)
            labels = torch.tensor([label for *_, label in batch], device=device)
            loss = F.cross_entropy(model(**enc).logits.float(), labels, weight=weight)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            history.append({"step": len(history) + 1, "loss": loss.item(), "seconds": time.perf_counter() - tic})
            progress.advance(task)
    model.eval()
    check = AnswerabilityCheck(model, tokenizer, config.refusal_threshold, config.refusal_reply)
    return AnswerabilityResult(check, heldout_metrics(check, holdout), len(pairs), history)


def heldout_metrics(check: AnswerabilityCheck, examples: list[dict]) -> dict[str, float]:
    """Refusal rate on unanswerable and false-refusal rate on answerable held-out examples, scored
    as the generator's held-out answers are (a refusal where the check refuses)."""
    if not examples:
        return {}
    decided = check.answerable([ex["question"] for ex in examples], [[c["text"] for c in ex["context"]] for ex in examples])
    outcomes = generator_behaviour_outcomes(examples, ["" if ok else check.refusal_reply for ok, _ in decided],
                                            (check.refusal_reply,))
    return {f"check_{name}": float(np.mean(outcomes[name])) if outcomes[name] else float("nan")
            for name in ("refusal_rate", "false_refusal_rate")}


def save_check(check: AnswerabilityCheck, adapter_path: Path) -> None:
    folder = adapter_path / FOLDER
    check.model.save_pretrained(folder)
    check.tokenizer.save_pretrained(folder)
    (folder / "check.json").write_text(json.dumps({"threshold": check.threshold, "refusal_reply": check.refusal_reply}))
