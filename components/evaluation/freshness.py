"""Freshness probes: questions whose answer is what a document change introduced, in any domain.

A reindex is worth something only if what changed comes back. For an added or changed document
the probe compares its chunks in the candidate's index version with its chunks in the base
version the build started from (word by word, difflib), takes the first span of words the edit
introduced (a new price, a new return period, a new sentence) and asks for it as a fill-in-the-blank
question: the sentence around the span with the span blanked, under the document's title. No
field, price or domain is assumed; a price edit and a policy rewrite are probed the same way.
Retrieval is fresh when a chunk of that document holding the new words comes back; the answer is
fresh when it says them. An added document (no base chunks) is probed on a fact of its text, a
number when it states one; with nothing added or changed (a first build keeps every document
"added"; a re-evaluation has none), a sample of all documents is probed that way: the index must
be current anyway. A change that leaves every chunk's text as it was (front matter only) has
nothing to ask about and is named in the source line. Fewer changed documents than the freshness
gate's minimum of samples (evaluation.min_samples): the rest are probes of unchanged documents.

    >>> probes, source = freshness_probes(client, index_version, n=16, seed=42)  # doctest: +SKIP
    >>> probes[0]["question"], probes[0]["fact"]  # doctest: +SKIP
    ('Aurora ANC Headphones Edge: what goes in the blank in "Price: ___ USD."?', '249.99')
"""

from __future__ import annotations

import random
import re
from difflib import SequenceMatcher

import weaviate

from components.evaluation.metrics import Outcomes, contains_fact
from components.index.build import IndexVersion
from components.index.search import Retrieved
from components.index.store import read_chunks

MAX_FACT_WORDS = 4  # a longer new span (a whole new sentence) is probed on one word of it
CONTEXT_WORDS = 12  # at most this many words of the sentence on each side of the blank
BLANK = "___"


def _bare(word: str) -> str:
    return word.strip(".,;:!?()[]\"'")


def _focus(words: list[str], start: int, end: int, title: set[str]) -> tuple[int, int] | None:
    """The part of words[start:end] a probe asks for: all of it when short, else its first
    number, else its longest word that is not in the title (None when nothing is left)."""
    span = [i for i in range(start, end) if _bare(words[i]) and _bare(words[i]).lower() not in title]
    if not span:
        return None
    if end - start <= MAX_FACT_WORDS and any(_bare(words[i]) for i in range(start, end)):
        return start, end
    numbers = [i for i in span if re.search(r"\d", words[i])]
    pick = numbers[0] if numbers else max(span, key=lambda i: len(_bare(words[i])))
    return pick, pick + 1


def changed_span(old_chunks: list[str], new_chunk: str) -> tuple[int, int] | None:
    """Word range of `new_chunk` that the edit introduced, against the most similar old chunk:
    the first inserted or replaced run (later differences of a changed chunk are mostly its
    window shifting); None when the chunk only lost words."""
    new = new_chunk.split()
    matchers = [SequenceMatcher(None, old.split(), new, autojunk=False) for old in old_chunks]
    best = max(matchers, key=SequenceMatcher.ratio)
    return next(((j1, j2) for tag, _, _, j1, j2 in best.get_opcodes() if tag in ("replace", "insert")), None)


def _ends_sentence(word: str) -> bool:
    return word.endswith((".", "!", "?")) and not re.fullmatch(r"[\d.,]+", word)


def cloze(words: list[str], start: int, end: int, title: str) -> tuple[str, str]:
    """(question, fact): the sentence around words[start:end], that span blanked."""
    left = start
    while left > 0 and start - left < CONTEXT_WORDS and not _ends_sentence(words[left - 1]):
        left -= 1
    right = end
    while right < len(words) and right - end < CONTEXT_WORDS and not _ends_sentence(words[right - 1]):
        right += 1
    fact = " ".join(words[start:end])
    bare = _bare(fact)
    shown = " ".join(words[left:start] + [fact.replace(bare, BLANK, 1)] + words[end:right])
    shown = shown.removeprefix(f"{title}: ")  # a chunk's heading prefix repeats the title
    return f'{title}: what goes in the blank in "{shown}"?', bare


def probe_document(doc_id: str, title: str, new_chunks: list[str], old_chunks: list[str]) -> dict | None:
    """The probe of one document: on the first change when it has base chunks, else on a fact
    of its first chunk; None when nothing new can be asked (only deletions, or metadata)."""
    title_words = {_bare(w).lower() for w in title.split()}
    for text in new_chunks:
        words = text.split()
        if old_chunks:
            if text in old_chunks:
                continue
            span = changed_span(old_chunks, text)
            if span is None:
                continue
        else:
            span = (0, len(words))
        focus = _focus(words, *span, title_words)
        if focus is not None:
            question, fact = cloze(words, *focus, title)
            return {"id": f"fresh-{doc_id}", "doc_id": doc_id, "question": question, "fact": fact,
                    "kind": "changed" if old_chunks else "added"}
    return None


def freshness_probes(client: weaviate.WeaviateClient, index: IndexVersion, n: int, seed: int,
                     minimum: int = 0) -> tuple[list[dict], str]:
    """Up to `n` probes, one per document: a seeded sample of the added or changed documents of
    `index`, else of all its documents. Fewer than `minimum` from the changed ones (one price
    edit makes one probe): topped up with probes of unchanged documents, which must be current
    too, so a freshness gate never decides on one probe. Returns the probes and a line saying
    where they came from."""
    pool = sorted(index.changed_docs)
    new = _texts_by_doc(client, index.collection, set(pool) or None)
    old = _texts_by_doc(client, index.base, set(pool)) if index.base and pool else {}
    source = f"{len(pool)} added or changed documents"
    if not pool:
        pool, source = sorted(new), f"no added or changed documents: a sample of all {len(new)} documents"
    probes, silent = _probe_sample(pool, new, old, n, seed)
    if silent:
        source += f"; {len(silent)} with no new words to ask about ({', '.join(sorted(silent)[:5])})"
    if len(probes) < min(minimum, n) and index.changed_docs:
        everything = _texts_by_doc(client, index.collection, None)
        others = sorted(set(everything) - set(pool))
        extra, _ = _probe_sample(others, everything, {}, min(minimum, n) - len(probes), seed)
        probes += [{**probe, "kind": "unchanged"} for probe in extra]
        source += f"; topped up with {len(extra)} unchanged documents to the {minimum} probes evaluation.min_samples asks"
    return sorted(probes, key=lambda p: p["doc_id"]), source


def _probe_sample(pool: list[str], new: dict, old: dict, n: int, seed: int) -> tuple[list[dict], list[str]]:
    """Probes of up to `n` documents of `pool` in a seeded order, and the documents that had
    nothing new to ask about."""
    pool = list(pool)
    random.Random(seed).shuffle(pool)
    probes: list[dict] = []
    silent: list[str] = []
    for doc_id in pool:
        title, texts = new.get(doc_id, (doc_id, []))
        probe = probe_document(doc_id, title, texts, old.get(doc_id, ("", []))[1])
        if probe is None:
            silent.append(doc_id)
        elif len(probes) < n:
            probes.append(probe)
        else:
            break
    return probes, silent


def _texts_by_doc(client: weaviate.WeaviateClient, collection: str, doc_ids: set[str] | None) -> dict[str, tuple]:
    """doc id -> (title, chunk texts in chunk order) of `doc_ids` (None: every document)."""
    rows = sorted(read_chunks(client, collection, doc_ids), key=lambda p: (p["doc_id"], p["chunk_index"]))
    found: dict[str, tuple[str, list[str]]] = {}
    for row in rows:
        found.setdefault(row["doc_id"], (row.get("title") or row["doc_id"], []))[1].append(row["text"])
    return found


def freshness_outcomes(probes: list[dict], retrieved: list[list[Retrieved]], answers: list[str]) -> Outcomes:
    """Retrieval is fresh when a chunk of the probed document holding the new fact comes back;
    the answer is fresh when it states the fact."""
    return {
        "freshness_retrieval": {p["id"]: float(any(c.doc_id == p["doc_id"] and contains_fact(c.text, p["fact"])
                                                   for c in hits)) for p, hits in zip(probes, retrieved, strict=True)},
        "freshness_answer": {p["id"]: float(contains_fact(a, p["fact"])) for p, a in zip(probes, answers, strict=True)},
    }
