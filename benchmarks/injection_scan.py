"""Curation's prompt-injection scan (components/data/injection_scan.py) on what it must catch and
what it must leave alone.

    .venv/bin/python benchmarks/injection_scan.py

Caught: the evaluation's red-team attack documents (redteam.jsonl) of the demo and of the Python
FAQ example, per attack kind, and which ones got through. False positives: the catalog documents
each params file curates (flagged before any allow-list entry, and held after it). Also the scan's
time per document. Prints one JSON object.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from bench_support import emit
from components.config import load_params
from components.data.curate import curate_documents, read_documents, read_jsonl
from components.data.injection_scan import ALLOWLIST, held, quarantine, scan

ROOT = Path(__file__).resolve().parents[1]
DOMAINS = {"demo": "params.yaml", "python-faq": "examples/python-faq/params.yaml"}


def red_team(raw: Path, link_domains: tuple[str, ...]) -> dict:
    rows = read_jsonl(raw / "redteam.jsonl")
    caught = [bool(scan(row["document"]["text"], link_domains)) for row in rows]
    kinds = Counter(row["attack"] for row in rows)
    by_kind = Counter(row["attack"] for row, hit in zip(rows, caught, strict=True) if hit)
    return {"attacks": len(rows), "caught": sum(caught), "catch_rate": round(sum(caught) / len(rows), 3),
            "by_kind": {kind: f"{by_kind[kind]}/{n}" for kind, n in sorted(kinds.items())},
            "missed": [{"attack": row["attack"], "payload": row["payload"]}
                       for row, hit in zip(rows, caught, strict=True) if not hit]}


def catalog(raw: Path, params) -> dict:
    docs, _ = curate_documents(read_documents(raw / "documents"), params.data, params.index.metadata_fields)
    allowlist = read_jsonl(raw / ALLOWLIST) if (raw / ALLOWLIST).is_file() else []
    tic = time.perf_counter()
    _, flagged, _ = quarantine(docs, params.data.link_domains, allowlist)
    seconds = time.perf_counter() - tic
    return {"documents": len(docs), "flagged": len(flagged), "held_after_allowlist": len(held(flagged)),
            "flagged_ids": [row["id"] for row in flagged], "scan_ms_per_document": round(1000 * seconds / len(docs), 3)}


def main() -> None:
    result: dict = {}
    for name, params_file in DOMAINS.items():
        params = load_params(ROOT / params_file)
        raw = ROOT / params.data.raw_dir
        result[name] = {"red_team": red_team(raw, params.data.link_domains), "catalog": catalog(raw, params)}
    emit("injection_scan", result)


if __name__ == "__main__":
    main()
