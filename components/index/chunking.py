"""Chunking: heading-aware word windows with deterministic ids.

    >>> from components.config import IndexConfig
    >>> chunks = chunk_document({"id": "p-1", "name": "Kettle", "text": "# Kettle\\nBoils water."}, IndexConfig())
    >>> chunks[0].text
    'Kettle: Boils water.'
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from components.config import IndexConfig

CHUNK_NAMESPACE = uuid.UUID("6f1c1d4e-52a3-4c4b-9a0e-3c2f4b1a7d10")


@dataclass(frozen=True)
class Chunk:
    uuid: str
    doc_id: str
    index: int
    text: str


def chunk_uuid(doc_id: str, text: str) -> str:
    """uuid5 of source id and content: re-indexing the same chunk upserts instead of duplicating."""
    return str(uuid.uuid5(CHUNK_NAMESPACE, f"{doc_id}\x00{text}"))


def split_sections(text: str) -> list[tuple[str, str]]:
    """Split Markdown into (heading path, body) sections; text before any heading has no heading."""
    sections: list[tuple[str, str]] = []
    path: list[tuple[int, str]] = []
    body: list[str] = []

    def flush() -> None:
        content = "\n".join(body).strip()
        if content:
            sections.append((" > ".join(h for _, h in path), content))
        body.clear()

    for line in text.splitlines():
        match = re.match(r"^(#{1,6})\s+(.*)$", line)
        if match:
            flush()
            level = len(match.group(1))
            path = [(lvl, h) for lvl, h in path if lvl < level] + [(level, match.group(2).strip())]
        else:
            body.append(line)
    flush()
    return sections


def window_words(words: list[str], size: int, overlap: int) -> list[list[str]]:
    step = size - overlap
    return [words[i : i + size] for i in range(0, max(1, len(words) - overlap), step)] or [words]


def chunk_document(doc: dict, config: IndexConfig) -> list[Chunk]:
    """Chunks of one curated document; each chunk carries its heading path as context."""
    chunks: list[Chunk] = []
    for heading, body in split_sections(doc["text"]) or [("", doc["text"])]:
        prefix = f"{heading}: " if heading else (f"{doc['name']}: " if doc.get("name") else "")
        for words in window_words(body.split(), config.chunk_words, config.chunk_overlap_words):
            text = prefix + " ".join(words)
            chunks.append(Chunk(chunk_uuid(doc["id"], text), doc["id"], len(chunks), text))
    return chunks
