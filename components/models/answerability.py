"""The answerability check at inference: score (question, chunk) pairs, load a saved check.

Trained by components/training/answerability.py and saved in the generator adapter's
`answerability/` folder; the assistant refuses without generating when no retrieved chunk scores
over the threshold.

    >>> check = load_check(generator_adapter_path)  # doctest: +SKIP
    >>> check.answerable(["How much is the Aurora Earbuds Max?"], [["Aurora Earbuds Pro: Price: 59.99 USD."]])  # doctest: +SKIP
    [(False, 0.03)]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

FOLDER = "answerability"


MAX_LENGTH = 192  # question + one chunk (index.chunk_words 120 words is about 160 tokens)


@dataclass
class AnswerabilityCheck:
    model: object
    tokenizer: object
    threshold: float
    refusal_reply: str

    @torch.inference_mode()
    def scores(self, questions: list[str], chunk_lists: list[list[str]], batch_size: int = 32) -> list[float]:
        """Per question, the highest probability over its chunks that the chunk answers it (0.0 without chunks)."""
        pairs = [(i, q, text) for i, (q, texts) in enumerate(zip(questions, chunk_lists, strict=True)) for text in texts]
        best = [0.0] * len(questions)
        for start in range(0, len(pairs), batch_size):
            batch = pairs[start : start + batch_size]
            enc = self.tokenizer([q for _, q, _ in batch], [t for _, _, t in batch], truncation=True,
                                 max_length=MAX_LENGTH, padding=True, return_tensors="pt").to(self.model.device)
            probs = torch.softmax(self.model(**enc).logits.float(), dim=-1)[:, 1].tolist()
            for (i, _, _), p in zip(batch, probs):
                best[i] = max(best[i], p)
        return best

    def answerable(self, questions: list[str], chunk_lists: list[list[str]]) -> list[tuple[bool, float]]:
        return [(s >= self.threshold, s) for s in self.scores(questions, chunk_lists)]


def load_check(adapter_path: str | Path, device: str = "cpu") -> AnswerabilityCheck | None:
    """The check saved beside a generator adapter, or None (a generator trained without one: the
    generator alone decides to refuse)."""
    folder = Path(adapter_path) / FOLDER
    if not (folder / "check.json").is_file():
        return None
    settings = json.loads((folder / "check.json").read_text())
    model = AutoModelForSequenceClassification.from_pretrained(folder).to(device).eval()
    return AnswerabilityCheck(model, AutoTokenizer.from_pretrained(folder), float(settings["threshold"]),
                              settings["refusal_reply"])
