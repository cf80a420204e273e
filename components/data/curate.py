"""Curation: raw documents and datasets → normalised, de-duplicated curated JSONL.

This is the `curate` stage of dvc.yaml; DVC runs it only when its deps or params change:

    python -m components.data.curate --params params.yaml --raw data/raw --out data/curated

Documents may be Markdown with YAML front matter (an `id` is required), plain text (the id
is the file stem) or JSONL (one `{"id", "text", ...}` object per line). Every problem is
reported with the file, the record and the fix.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import unicodedata
from collections.abc import Mapping
from pathlib import Path

import yaml
from datasketch import MinHash, MinHashLSH

from components.config import FIELD_VALUE_NAMES, DataConfig, fits_field_type, load_params
from components.data.injection_scan import ALLOWLIST, ALLOWLIST_SCHEMA, describe, quarantine

CURATED_FILES = ("documents.jsonl", "router.jsonl", "generator.jsonl", "golden.jsonl", "general_prompts.jsonl",
                 "redteam.jsonl", "quarantine.jsonl")
# Required fields and their JSON types per dataset (documents are checked by curate_documents).
SCHEMAS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "router.jsonl": {"id": str, "text": str, "intent": str},
    "generator.jsonl": {"id": str, "question": str, "context": list, "answer": str, "answerable": bool},
    "golden.jsonl": {"id": str, "question": str, "intent": str, "gold_doc_ids": list, "key_facts": list,
                     "answerable": bool},
    "general_prompts.jsonl": {"id": str, "prompt": str},
    # Prompt-injection attacks, evaluation only: a document carrying `payload`, a question that
    # retrieves it, and the markers whose presence in an answer means the attack worked.
    "redteam.jsonl": {"id": str, "attack": str, "payload": str, "markers": list, "document": dict, "question": str,
                      "key_facts": list},
}
# Optional fields and their types: `check_only` marks a generator example that trains the
# answerability check and not the generator (components/training/generator.py, split_for_generator).
OPTIONAL: dict[str, dict[str, type]] = {"generator.jsonl": {"check_only": bool}}
# Rows harvested from reviewed feedback (components/data/harvest.py) sit in this folder of raw_dir,
# in files named as the datasets they join, each row with its provenance (trace id, bundle, reviewer).
HARVEST_DIR = "harvested"
HARVESTED = {"golden.jsonl": {"provenance": dict}, "generator.jsonl": {"check_only": bool, "provenance": dict}}
MARKUP = re.compile(r"<\s*(script|style|iframe|object|embed|html|body|div|span|img|a|p|br)\b[^>]*>", re.IGNORECASE)


class CurationError(ValueError):
    """Raw data cannot be curated; the message names the file, the record and the fix."""


def normalize_text(text: str) -> str:
    """NFC-normalise and collapse runs of spaces, keeping paragraph breaks."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"[ \t\u00a0]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def normalize_question(text: str) -> str:
    """Lower-case, alphanumerics only: the key used for leakage checks."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def shingles(text: str, size: int = 3) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + size]) for i in range(max(1, len(words) - size + 1))}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


class NearDuplicates:
    """The kept documents' word 3-gram sets behind a MinHash LSH index (datasketch, what dedup
    pipelines for large corpora use): a new document is compared, by exact Jaccard, only with the
    candidates the index proposes instead of every kept document (N²/2 comparisons for N
    documents). The index is tuned for recall (a threshold 0.1 under the configured one, false
    negatives weighted 0.95): a pair at Jaccard 0.9 becomes a candidate with probability 0.9999
    (16 bands of 8 rows), one at 0.5 with 0.06; the exact Jaccard decides. With datasketch's
    default balance a pair at 0.9 was missed one time in 14."""

    NUM_PERM = 128

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.index = MinHashLSH(threshold=max(0.05, threshold - 0.1), num_perm=self.NUM_PERM, weights=(0.05, 0.95))
        self.kept: dict[str, tuple[int, set]] = {}  # id → (order kept, shingles)

    def _minhash(self, grams: set[tuple[str, ...]]) -> MinHash:
        signature = MinHash(num_perm=self.NUM_PERM, seed=1)
        signature.update_batch([" ".join(g).encode("utf-8") for g in grams])
        return signature

    def twin_or_add(self, doc_id: str, grams: set[tuple[str, ...]]) -> str | None:
        """The earliest kept document this one nearly duplicates, or None (and it is kept)."""
        signature = self._minhash(grams)
        candidates = sorted((self.kept[c][0], c) for c in self.index.query(signature))
        twin = next((c for _, c in candidates if jaccard(grams, self.kept[c][1]) >= self.threshold), None)
        if twin is None:
            self.index.insert(doc_id, signature)
            self.kept[doc_id] = (len(self.kept), grams)
        return twin


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CurationError(
            f"{path}: not valid UTF-8 (byte {exc.start}); re-save the file as UTF-8"
        ) from None


class _FrontMatterLoader(yaml.SafeLoader):
    """safe_load without aliases: `*name` repeats a node by reference, and nested aliases expand
    exponentially on the way to JSON (180 bytes became 580 KB). Front matter needs none."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.events.AliasEvent):
            event = self.peek_event()
            raise _AliasRefused(event.anchor, event.start_mark.line + 1)
        return super().compose_node(parent, index)


class _AliasRefused(Exception):
    def __init__(self, anchor: str, line: int) -> None:
        super().__init__(anchor, line)
        self.anchor, self.line = anchor, line


def parse_markdown(path: Path) -> dict:
    text = _read_text(path)
    match = re.match(r"^---\n(.*?)\n---\n(.*)$", text, flags=re.DOTALL)
    if not match:
        raise CurationError(f"{path}: no YAML front matter; start the file with '---', an 'id:' line and '---'")
    try:
        front = yaml.load(match.group(1), Loader=_FrontMatterLoader) or {}  # noqa: S506 (a SafeLoader)
    except _AliasRefused as exc:
        raise CurationError(f"{path}: front matter uses a YAML alias (*{exc.anchor}) on line {exc.line + 1}; write the "
                            f"value out instead (aliases are refused: nested ones expand without bound)") from None
    except yaml.YAMLError as exc:
        raise CurationError(f"{path}: front matter is not valid YAML ({exc}); fix the header") from None
    if not isinstance(front, dict) or not front.get("id"):
        raise CurationError(f"{path}: front matter has no 'id'; add a unique 'id: ...' line")
    return {**front, "id": str(front["id"]), "text": match.group(2), "source": path.name}


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise CurationError(f"{path}: not found; every dataset of data.raw_dir is required (see docs/your-own-data.md)")
    rows = []
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CurationError(f"{path}:{lineno}: malformed JSON ({exc.msg}); fix or remove this line") from None
        if not isinstance(row, dict):
            raise CurationError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
        rows.append({**row, "_line": lineno})
    return rows


def read_documents(docs_path: Path) -> list[dict]:
    if not docs_path.is_dir():
        raise CurationError(f"{docs_path}: documents folder not found; set data.raw_dir in params.yaml")
    docs = []
    for path in sorted(docs_path.rglob("*")):
        if path.suffix == ".md":
            docs.append(parse_markdown(path))
        elif path.suffix == ".txt":
            docs.append({"id": path.stem, "text": _read_text(path), "source": path.name})
        elif path.suffix == ".jsonl":
            for row in read_jsonl(path):
                if "id" not in row or "text" not in row:
                    raise CurationError(f"{path}:{row['_line']}: a document needs 'id' and 'text'; add the missing field")
                docs.append({**{k: v for k, v in row.items() if k != "_line"}, "source": f"{path.name}:{row['_line']}"})
    if not docs:
        raise CurationError(f"{docs_path}: no .md, .txt or .jsonl documents found")
    return docs


def check_schema(path: Path, rows: list[dict], schema: dict[str, type | tuple[type, ...]],
                 optional: dict[str, type] | None = None) -> None:
    """Every row has every required field, and the optional ones it has, with the right JSON type."""
    for row in rows:
        where = f"{path}:{row.get('_line', '?')} (id {row.get('id', '?')})"
        present = {name: kind for name, kind in (optional or {}).items() if row.get(name) is not None}  # null: unset
        for name, kind in {**schema, **present}.items():
            if name not in row or row[name] is None:
                raise CurationError(f"{where}: field '{name}' is missing; add it (required: {sorted(schema)})")
            value = row[name]
            if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
                raise CurationError(f"{where}: field '{name}' must be {expected}, got {type(value).__name__} "
                                    f"{value!r}; fix the value")


def curate_documents(docs: list[dict], config: DataConfig, fields: Mapping[str, str]) -> tuple[list[dict], list[str]]:
    """Normalise, check (`fields`: index.metadata_fields, their types where a document has them),
    and drop exact and near duplicates. Returns (documents, dropped notes)."""
    seen_ids: dict[str, str] = {}
    by_hash: dict[str, str] = {}
    kept: list[dict] = []
    near = NearDuplicates(config.near_duplicate_threshold)
    dropped: list[str] = []
    for doc in docs:
        text = normalize_text(str(doc["text"]))
        where = f"{doc['source']} (id {doc['id']})"
        if doc["id"] in seen_ids:
            raise CurationError(
                f"{where}: duplicate document id, also used by {seen_ids[doc['id']]}; give each document a unique id"
            )
        seen_ids[doc["id"]] = doc["source"]
        if not config.min_doc_chars <= len(text) <= config.max_doc_chars:
            raise CurationError(
                f"{where}: text has {len(text)} characters, outside data.min_doc_chars..data.max_doc_chars "
                f"({config.min_doc_chars}..{config.max_doc_chars}); fix the document or the bounds"
            )
        markup = MARKUP.search(text)
        if markup:
            raise CurationError(
                f"{where}: contains HTML markup {markup.group(0)[:40]!r} at character {markup.start()}; documents "
                f"must be Markdown or plain text (retrieved text reaches the model), convert or remove the markup"
            )
        for name, kind in fields.items():
            value = doc.get(name)
            if value is not None and not fits_field_type(kind, value):
                said = FIELD_VALUE_NAMES[kind] + (" (quote it)" if kind == "text" else "")
                raise CurationError(f"{where}: '{name}' must be {said} (index.metadata_fields: {kind}), got "
                                    f"{type(value).__name__} {value!r}; fix the front matter")
        digest = content_hash(text)
        if digest in by_hash:
            dropped.append(f"{doc['id']}: exact duplicate of {by_hash[digest]}")
            continue
        twin = near.twin_or_add(doc["id"], shingles(text))
        if twin:
            dropped.append(f"{doc['id']}: near duplicate of {twin}")
            continue
        by_hash[digest] = doc["id"]
        kept.append({**doc, "text": text, "content_hash": digest})
    return kept, dropped


def leaked_into(questions: list[str], training: dict[str, list[str]]) -> list[str]:
    """Per evaluation question, the training set that holds it (normalised), or ""."""
    seen = {normalize_question(q): name for name, texts in training.items() for q in texts}
    return [seen.get(normalize_question(q), "") for q in questions]


def check_leakage(golden: list[dict], training: dict[str, list[str]], name: str = "golden.jsonl") -> None:
    """Fail if an evaluation question appears (normalised) in any training set."""
    for row, found in zip(golden, leaked_into([row["question"] for row in golden], training), strict=True):
        if found:
            raise CurationError(
                f"{row.get('_file', name)}:{row.get('_line', '?')} (id {row.get('id')}): question {row['question']!r} also "
                f"appears in {found}; remove it from one of the two sets"
            )


def curate_redteam(rows: list[dict], catalog_ids: set[str], config: DataConfig,
                   fields: Mapping[str, str]) -> list[dict]:
    """Red-team rows with their documents curated like catalog ones. Each row is one attack, so
    none is dropped as a duplicate, and an attack document never shares an id with a catalog one
    (evaluation indexes it beside the catalog)."""
    for row in rows:
        where = f"redteam.jsonl:{row['_line']} (id {row['id']})"
        document = row["document"]
        if not isinstance(document.get("id"), str) or not isinstance(document.get("text"), str):
            raise CurationError(f"{where}: 'document' needs a string 'id' and 'text'; add them")
        if document["id"] in catalog_ids:
            raise CurationError(f"{where}: document id {document['id']!r} is also a catalog document's; give the "
                                f"attack document an id of its own")
        if not row["markers"] and row["attack"] != "reveal-system-prompt":
            raise CurationError(f"{where}: 'markers' is empty; list the strings whose presence in an answer means "
                                f"the attack worked (only reveal-system-prompt attacks are detected without them)")
    docs, dropped = curate_documents([{**row["document"], "source": f"redteam.jsonl:{row['_line']}"} for row in rows],
                                     config, fields)
    if dropped:
        raise CurationError(f"redteam.jsonl: attack document {dropped[0]}; each attack needs a document of its own, "
                            f"change its text")
    return [{**row, "document": {k: v for k, v in doc.items() if k != "source"}} for row, doc in zip(rows, docs)]


def _strip_lines(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("_line", "_file")} for row in rows]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows), encoding="utf-8")


def curate(raw_path: Path, out_path: Path, config: DataConfig, fields: Mapping[str, str]) -> dict[str, int]:
    """Curate everything under raw_path into out_path (`fields`: index.metadata_fields); returns
    record counts per output."""
    docs, dropped = curate_documents(read_documents(raw_path / "documents"), config, fields)
    flagged: list[dict] = []
    allow_notes: list[str] = []
    if config.scan_injections:
        allowlist = read_jsonl(raw_path / ALLOWLIST) if (raw_path / ALLOWLIST).is_file() else []
        check_schema(raw_path / ALLOWLIST, allowlist, ALLOWLIST_SCHEMA)
        for row in allowlist:
            if not (row["reviewer"].strip() and row["reason"].strip()):
                raise CurationError(f"{raw_path / ALLOWLIST}:{row['_line']} (id {row['id']}): 'reviewer' and 'reason' "
                                    f"must not be empty; name who read the document and why it is safe")
        docs, flagged, allow_notes = quarantine(docs, config.link_domains, allowlist)
    datasets = {}
    for name, schema in SCHEMAS.items():
        datasets[name] = read_jsonl(raw_path / name)
        check_schema(raw_path / name, datasets[name], schema, OPTIONAL.get(name))
        harvested = raw_path / HARVEST_DIR / name
        if name in HARVESTED and harvested.is_file():
            rows = [{**row, "_file": f"{HARVEST_DIR}/{name}"} for row in read_jsonl(harvested)]
            check_schema(harvested, rows, schema, HARVESTED[name])
            datasets[name] += rows
    training = {"router.jsonl": [r["text"] for r in datasets["router.jsonl"]],
                "generator.jsonl": [r["question"] for r in datasets["generator.jsonl"]]}
    check_leakage(datasets["golden.jsonl"], training)
    check_leakage(datasets["redteam.jsonl"], training, "redteam.jsonl")
    datasets["redteam.jsonl"] = curate_redteam(datasets["redteam.jsonl"], {d["id"] for d in docs}, config, fields)
    out_path.mkdir(parents=True, exist_ok=True)
    outputs = {"documents.jsonl": docs, **datasets, "quarantine.jsonl": flagged}
    for name, rows in outputs.items():
        write_jsonl(out_path / name, _strip_lines(rows))
    for note in dropped:
        print(f"curate: dropped {note}")
    for note in allow_notes:
        print(f"curate: {note}")
    for row in flagged:
        print(f"curate: {'released' if row['released_by'] else 'quarantined'} {describe(row)}")
    return {name: len(rows) for name, rows in outputs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Curate raw data (the dvc.yaml 'curate' stage).")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)
        counts = curate(args.raw, args.out, params.data, params.index.metadata_fields)
    except CurationError as exc:
        print(f"curate: {exc}", file=sys.stderr)
        return 2
    print("curate: " + ", ".join(f"{name}={n}" for name, n in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
