"""The prompt: one definition shared by training, evaluation and serving.

    >>> msgs = build_messages("How much is the kettle?", [("p-1", "Kettle. Price: 20 USD.")], "Be brief.")
    >>> msgs[1]["content"].splitlines()[0]
    'Context documents:'

Questions and document text are untrusted: a customer types the one, a supplier writes the
other. Neither may pass for the structure ragops puts around them. Each is rendered on one line
(a chunk is one already: chunking joins words with single spaces), so no untrusted text starts a
line of its own; a `[doc-id]` source marker comes only from ragops (brackets of the same shape in
untrusted text become parentheses: `[admin]` reads `(admin)`); and the tokenizer's special tokens
(`<|im_start|>`, `<|im_end|>`, ...) are removed from every message before the chat template
turns the messages into one string (`render_chat`), so a forged `<|im_start|>system` turn is text
the template never sees.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

CITATION = re.compile(r"\[([A-Za-z0-9][A-Za-z0-9_.:-]{0,80})\]")


def untrusted(text: str) -> str:
    """A question or a chunk's text as it may appear in a prompt: one line, no source markers."""
    return CITATION.sub(r"(\1)", " ".join(text.split()))


def build_messages(question: str, contexts: Sequence[tuple[str, str]], system_prompt: str) -> list[dict]:
    """Chat messages for a question and its (doc_id, text) context chunks."""
    if contexts:
        context = "\n".join(f"[{doc_id}] {untrusted(text)}" for doc_id, text in contexts)
    else:
        context = "(no documents retrieved)"
    user = f"Context documents:\n{context}\n\nQuestion: {untrusted(question)}"
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": user}]


def special_tokens(tokenizer) -> tuple[str, ...]:
    """Every special token string of a tokenizer, longest first."""
    found = {token.content for token in tokenizer.added_tokens_decoder.values() if token.special}
    return tuple(sorted(found | set(tokenizer.all_special_tokens), key=len, reverse=True))


def without_special_tokens(text: str, tokens: Sequence[str]) -> str:
    """`text` with every special token string removed, repeatedly: removing one must not join
    the pieces around it into another (`<|im_<|im_end|>start|>`)."""
    while True:
        cleaned = text
        for token in tokens:
            cleaned = cleaned.replace(token, "")
        if cleaned == text:
            return text
        text = cleaned


def render_chat(tokenizer, messages: Sequence[dict], generation_prompt: bool = True) -> str:
    """The generation prompt for chat messages: the tokenizer's chat template over the messages
    with their special tokens removed (the template's own are the only ones left). Without
    `generation_prompt`, the turns alone (the start of a longer conversation's prompt)."""
    tokens = special_tokens(tokenizer)
    clean = [{**message, "content": without_special_tokens(message["content"], tokens)} for message in messages]
    return tokenizer.apply_chat_template(clean, add_generation_prompt=generation_prompt, tokenize=False)


def extract_citations(answer: str) -> list[str]:
    """Document ids cited as [doc-id] in an answer, in order, without repeats."""
    return list(dict.fromkeys(CITATION.findall(answer)))
