"""The prompt: one definition shared by training, evaluation and serving.

    >>> msgs = build_messages("How much is the kettle?", [("p-1", "Kettle. Price: 20 USD.")], "Be brief.")
    >>> msgs[1]["content"].splitlines()[0]
    'Context documents:'
"""

from __future__ import annotations

import re
from collections.abc import Sequence

CITATION = re.compile(r"\[([A-Za-z0-9][A-Za-z0-9_.:-]{0,80})\]")


def build_messages(question: str, contexts: Sequence[tuple[str, str]], system_prompt: str) -> list[dict]:
    """Chat messages for a question and its (doc_id, text) context chunks."""
    if contexts:
        context = "\n".join(f"[{doc_id}] {text}" for doc_id, text in contexts)
    else:
        context = "(no documents retrieved)"
    user = f"Context documents:\n{context}\n\nQuestion: {question}"
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": user}]


def extract_citations(answer: str) -> list[str]:
    """Document ids cited as [doc-id] in an answer, in order, without repeats."""
    return list(dict.fromkeys(CITATION.findall(answer)))
