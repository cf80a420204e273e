"""Embeddings: mean-pooled, L2-normalised sentence vectors from the encoder in params.

    >>> embedder = load_embedder("/path/to/all-MiniLM-L6-v2")  # doctest: +SKIP
    >>> embed_texts(embedder, ["kettle"], batch_size=32).shape  # doctest: +SKIP
    (1, 384)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from rich.progress import track
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class Embedder:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    max_length: int = 256


def load_embedder(model_path: str, device: str = "cpu") -> Embedder:
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModel.from_pretrained(model_path).to(device).eval()
    return Embedder(model, tokenizer)


@torch.inference_mode()
def embed_texts(embedder: Embedder, texts: list[str], batch_size: int, show_progress: bool = False) -> np.ndarray:
    """Embed texts in batches; rows are unit vectors, so dot product = cosine similarity."""
    batches = range(0, len(texts), batch_size)
    if show_progress:
        batches = track(batches, description=f"embedding {len(texts)} chunks")
    out = []
    device = embedder.model.device
    for start in batches:
        enc = embedder.tokenizer(texts[start : start + batch_size], padding=True, truncation=True,
                                 max_length=embedder.max_length, return_tensors="pt").to(device)
        hidden = embedder.model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        out.append(torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy())
    dim = embedder.model.config.hidden_size
    return np.concatenate(out) if out else np.zeros((0, dim), dtype=np.float32)
