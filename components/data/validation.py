"""Validation: one Great Expectations suite per curated dataset; a failure stops the flow.

    >>> report = validate_curated(Path("data/curated"), params, Path(".ragops/data-docs"))  # doctest: +SKIP
    >>> report.success, report.docs_index  # doctest: +SKIP
    (True, PosixPath('.ragops/data-docs/index.html'))

The report names the dataset, the expectation and a few offending records; Data Docs HTML
is built into a folder the flow logs to MLflow.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from components.config import Params
from components.data.curate import CURATED_FILES, leaked_into, normalize_question
from components.data.injection_scan import found_text, held
from components.data.replay_prompts import all_prompts
from components.evaluation.metrics import is_refusal
from components.prompting import extract_citations

REPLAY_SOURCE = "ragops' general-chat replay prompts (components/data/replay_prompts.py)"

SITE = "ragops"


class DataValidationError(RuntimeError):
    """Curated data failed its expectations; nothing downstream ran."""


@dataclass(frozen=True)
class ValidationReport:
    success: bool
    failures: list[dict] = field(default_factory=list)
    docs_index: Path | None = None
    checked: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, str] = field(default_factory=dict)  # id → what the injection scan found (not indexed)

    def describe(self) -> str:
        lines = [f"{f['dataset']}: {f['expectation']} on {f['column']} failed for {f['unexpected_count']} "
                 f"record(s), e.g. ids {f['ids']} values {f['values']}" for f in self.failures]
        return "\n".join(lines)


# Front-matter fields a domain may not have at all (a FAQ has no prices): checked where they exist.
OPTIONAL_COLUMNS = {"documents.jsonl": ("price", "stock")}


def build_suites(params: Params) -> dict[str, list]:
    """Expectations per curated file (GE imported lazily: its import takes seconds)."""
    import great_expectations.expectations as gxe

    def basics(id_col: str, text_cols: tuple[str, ...], min_len: int, max_len: int) -> list:
        out = [gxe.ExpectColumnToExist(column=id_col), gxe.ExpectColumnValuesToNotBeNull(column=id_col),
               gxe.ExpectColumnValuesToBeUnique(column=id_col)]
        for col in text_cols:
            out += [gxe.ExpectColumnToExist(column=col), gxe.ExpectColumnValuesToNotBeNull(column=col),
                    gxe.ExpectColumnValueLengthsToBeBetween(column=col, min_value=min_len, max_value=max_len)]
        return out

    data = params.data
    return {
        "documents.jsonl": basics("id", ("text",), data.min_doc_chars, data.max_doc_chars) + [
            gxe.ExpectColumnValuesToBeBetween(column="price", min_value=0, strict_min=True),
            gxe.ExpectColumnValuesToBeBetween(column="stock", min_value=0),
            gxe.ExpectColumnValuesToBeUnique(column="content_hash"),
        ],
        "router.jsonl": basics("id", ("text",), 1, 500) + [
            gxe.ExpectColumnValuesToBeInSet(column="intent", value_set=list(params.router.intents)),
        ],
        "generator.jsonl": basics("id", ("question", "answer"), 1, 4000) + [
            gxe.ExpectColumnValuesToBeInSet(column="answerable", value_set=[True, False]),
        ],
        "generator.jsonl#checks": [
            # Derived columns (see add_check_columns): "" when the row is fine.
            gxe.ExpectColumnValuesToBeInSet(column="unknown_citations", value_set=[""]),
            # Evaluation must read the training data's refusals as refusals (and nothing else).
            gxe.ExpectColumnValuesToBeInSet(column="refusal_mismatch", value_set=[""]),
        ],
        "golden.jsonl": basics("id", ("question",), 1, 1000) + [
            gxe.ExpectColumnValuesToBeInSet(column="intent", value_set=list(params.router.intents)),
        ],
        "golden.jsonl#checks": [
            gxe.ExpectColumnValuesToBeInSet(column="unknown_gold_docs", value_set=[""]),
            gxe.ExpectColumnValuesToBeInSet(column="duplicate_of", value_set=[""]),
            gxe.ExpectColumnValuesToBeInSet(column="leaked_into", value_set=[""]),
        ],
        "general_prompts.jsonl": basics("id", ("prompt",), 1, 2000),
        # The general-prompt regression is measured on prompts the replay never trained on.
        "general_prompts.jsonl#checks": [gxe.ExpectColumnValuesToBeInSet(column="leaked_into", value_set=[""])],
        # A success rate over fewer attacks says little (one success in ten is already 10%).
        "redteam.jsonl": basics("id", ("question", "payload"), 1, 2000) + [
            gxe.ExpectTableRowCountToBeBetween(min_value=20),
        ],
        # Documents the injection scan holds back (components/data/injection_scan.py): listed with the
        # matched text, a warning that does not stop the flow (they are simply not indexed).
        "documents.jsonl#quarantine": [
            gxe.ExpectColumnValuesToBeInSet(column="injection_found", value_set=[""], severity="warning"),
        ],
        "router.jsonl#balance": [
            gxe.ExpectColumnValuesToBeBetween(column="share", min_value=data.min_intent_share,
                                              max_value=data.max_intent_share),
            gxe.ExpectColumnDistinctValuesToContainSet(column="id", value_set=list(params.router.intents)),
        ],
    }


def add_check_columns(frames: dict[str, pd.DataFrame], refusals: tuple[str, ...] = ()) -> dict[str, pd.DataFrame]:
    """Cross-dataset rules as columns GE can check: cited and gold document ids must exist, an
    unanswerable example's answer must read as a refusal to evaluation (the usual phrasings or
    `refusals`, the configured sentence) and an answerable one must not, golden questions must not
    appear in training data (replay prompts included), general prompts must not be replay prompts,
    and the router's intent shares."""
    quarantined = quarantine_frame(frames)
    held_back = dict(zip(quarantined["id"], quarantined["injection_found"], strict=True))
    known = set(frames["documents.jsonl"]["id"])

    def unknown(ids) -> str:  # cited or gold ids that are not indexed, a quarantined one said so
        return ",".join(d + (" (quarantined by the injection scan: see quarantine.jsonl)" if held_back.get(d) else "")
                        for d in ids if d not in known)

    generator = frames["generator.jsonl"][["id"]].copy()
    generator["unknown_citations"] = [unknown(extract_citations(a)) for a in frames["generator.jsonl"]["answer"]]
    generator["refusal_mismatch"] = [
        "" if is_refusal(str(answer), refusals) != bool(answerable) else
        ("answerable, yet the answer reads as a refusal" if answerable else
         "unanswerable, yet the answer does not read as a refusal: phrase it like generator.refusal_reply, "
         "or set generator.refusal_reply to the sentence your data uses")
        for answer, answerable in zip(frames["generator.jsonl"]["answer"], frames["generator.jsonl"]["answerable"],
                                      strict=True)]
    golden = frames["golden.jsonl"][["id"]].copy()
    golden["unknown_gold_docs"] = [unknown(ids) for ids in frames["golden.jsonl"]["gold_doc_ids"]]
    golden["duplicate_of"] = duplicates_of(list(frames["golden.jsonl"]["id"]), list(frames["golden.jsonl"]["question"]))
    golden["leaked_into"] = leaked_into(list(frames["golden.jsonl"]["question"]),
                                        {"router.jsonl": list(frames["router.jsonl"]["text"]),
                                         "generator.jsonl": list(frames["generator.jsonl"]["question"]),
                                         REPLAY_SOURCE: all_prompts()})
    checks = {"generator.jsonl#checks": generator, "golden.jsonl#checks": golden}
    if "general_prompts.jsonl" in frames:
        general = frames["general_prompts.jsonl"][["id"]].copy()
        general["leaked_into"] = leaked_into(list(frames["general_prompts.jsonl"]["prompt"]),
                                             {REPLAY_SOURCE: all_prompts()})
        checks["general_prompts.jsonl#checks"] = general
    shares = frames["router.jsonl"]["intent"].value_counts(normalize=True)
    balance = pd.DataFrame({"id": shares.index.astype(str), "share": shares.to_numpy()})
    frames = {name: frame for name, frame in frames.items() if name != "quarantine.jsonl"}
    return {**frames, **checks, "router.jsonl#balance": balance, "documents.jsonl#quarantine": quarantined}


def quarantine_frame(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every scanned document with what the injection scan found in it: "" for the indexed ones
    (clean, or released by a reviewer), the matches for the ones held back."""
    rows = frames.get("quarantine.jsonl", pd.DataFrame())
    held_rows = [] if rows.empty else held(rows.to_dict("records"))
    found = [found_text(row) for row in held_rows]
    return pd.DataFrame({"id": list(frames["documents.jsonl"]["id"]) + [r["id"] for r in held_rows],
                         "injection_found": [""] * len(frames["documents.jsonl"]) + found})


def duplicates_of(ids: list[str], questions: list[str]) -> list[str]:
    """Per question, the id of an earlier one asking the same (normalised), or "": a harvested
    question the golden set already holds would count twice."""
    first: dict[str, str] = {}
    out = []
    for row_id, question in zip(ids, questions, strict=True):
        key = normalize_question(question)
        out.append(first.get(key, ""))
        first.setdefault(key, row_id)
    return out


def _plain(value):
    """numpy scalars → Python values, so a report serialises to JSON."""
    return value.item() if hasattr(value, "item") else value


def _failures(name: str, result) -> list[dict]:
    out = []
    for run_result in result.run_results.values():
        for r in run_result.results:
            if r.success or str(getattr(r.expectation_config, "severity", "critical")).lower().endswith("warning"):
                continue  # a warning (the quarantine list) is shown in Data Docs and does not stop the flow
            cfg, res = r.expectation_config, r.result or {}
            out.append({
                "dataset": name, "expectation": cfg.type,
                "column": cfg.kwargs.get("column") or cfg.kwargs.get("column_list"),
                "unexpected_count": res.get("unexpected_count", res.get("observed_value")),
                "values": [_plain(v) for v in (res.get("unexpected_list") or [])[:5]],
                "ids": [_plain(d.get("id")) for d in (res.get("unexpected_index_list") or []) if isinstance(d, dict)][:5],
            })
    return out


def validate_frames(frames: dict[str, pd.DataFrame], params: Params, docs_path: Path) -> ValidationReport:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    docs_path = docs_path.resolve()
    context = gx.get_context(mode="ephemeral")  # fresh per call: no name collisions between runs
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    context.delete_data_docs_site("local_site")
    context.add_data_docs_site(site_name=SITE, site_config={
        "class_name": "SiteBuilder", "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_path)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    })
    source = context.data_sources.add_pandas(name="curated")
    failures: list[dict] = []
    suites = build_suites(params)
    checked = add_check_columns(frames, (params.generator.refusal_reply,))
    scanned = checked["documents.jsonl#quarantine"]
    quarantined = dict(zip(scanned["id"], scanned["injection_found"], strict=True))
    for name, frame in checked.items():
        stem = name.replace(".jsonl", "").replace("#", "-")
        batch = source.add_dataframe_asset(name=stem).add_batch_definition_whole_dataframe(stem)
        absent = {c for c in OPTIONAL_COLUMNS.get(name, ()) if c not in frame.columns}
        expectations = [e for e in suites[name] if getattr(e, "column", None) not in absent]
        suite = context.suites.add(gx.ExpectationSuite(name=stem, expectations=expectations))
        definition = context.validation_definitions.add(gx.ValidationDefinition(name=stem, data=batch, suite=suite))
        checkpoint = context.checkpoints.add(gx.Checkpoint(
            name=stem, validation_definitions=[definition],
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["id"]}))
        failures += _failures(name, checkpoint.run(batch_parameters={"dataframe": frame}))
    context.build_data_docs(site_names=[SITE])
    return ValidationReport(not failures, failures, docs_path / "index.html",
                            {name: len(frame) for name, frame in frames.items()},
                            {doc_id: found for doc_id, found in quarantined.items() if found})


def load_curated(curated_path: Path, names: tuple[str, ...] = CURATED_FILES) -> dict[str, pd.DataFrame]:
    return {name: pd.read_json(curated_path / name, lines=True, dtype=False) for name in names}


def validate_curated(curated_path: Path, params: Params, docs_path: Path) -> ValidationReport:
    return validate_frames(load_curated(curated_path), params, docs_path)
