"""The router at inference: load its saved adapter (or fully tuned model), predict intents.

    >>> model, tokenizer = load_router(saved_path, encoder_path, ("catalog", "policy"))  # doctest: +SKIP
    >>> predict_intents(model, tokenizer, ["hi"], ("catalog", "policy"), max_length=64)  # doctest: +SKIP
    [('catalog', 0.51)]
"""

from __future__ import annotations

from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer


@torch.inference_mode()
def predict_intents(model, tokenizer, texts: list[str], intents: tuple[str, ...], max_length: int,
                    batch_size: int = 64) -> list[tuple[str, float]]:
    """(intent, confidence) per text."""
    model.eval()
    out: list[tuple[str, float]] = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(texts[start : start + batch_size], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt").to(model.device)
        probs = torch.softmax(model(**enc).logits, dim=-1)
        conf, idx = probs.max(dim=-1)
        out += [(intents[i], float(c)) for i, c in zip(idx.tolist(), conf.tolist())]
    return out


def _classifier(path: str, intents: tuple[str, ...]):
    return AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(intents), id2label=dict(enumerate(intents)),
        label2id={name: i for i, name in enumerate(intents)})


def load_router(saved_path: str, encoder_path: str, intents: tuple[str, ...], device: str = "cpu"):
    """Load what save_router wrote: an adapter on top of the encoder, or a fully tuned model."""
    if (Path(saved_path) / "adapter_config.json").is_file():
        model = PeftModel.from_pretrained(_classifier(encoder_path, intents), saved_path)
    else:
        model = _classifier(saved_path, intents)
    return model.to(device).eval(), AutoTokenizer.from_pretrained(saved_path)
