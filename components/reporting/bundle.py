"""What a reviewer reads about a bundle version: the registry description (markdown: gate table,
deltas against the champion with confidence intervals, the ablation, data versions, changed
documents, links to the runs) and a self-contained HTML report with the charts (components/reporting/charts.py).

    >>> text = bundle_description(review)  # doctest: +SKIP
    >>> Path("report.html").write_text(html_report(review, charts))  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, field

from matplotlib.figure import Figure

from components.evaluation.bundle import ABLATION_ARMS, ABLATION_METRICS, AblationCell
from components.evaluation.gates import Decision
from components.evaluation.metrics import Metric, PairedDelta

SHOWN_CHANGES = 20  # changed document ids listed in the description; the full list is an artifact


@dataclass(frozen=True)
class BundleReview:
    """Everything the description and the report show, gathered by the evaluation stage."""

    bundle: str
    router: str  # "ragops-router v3"
    generator: str
    collection: str
    decision: Decision
    metrics: dict[str, Metric]
    deltas: dict[str, PairedDelta] | None  # challenger minus champion; None without a champion
    champion: str | None
    margins: dict[str, float]
    ablation: list[AblationCell]
    data_versions: dict[str, str]
    changed_docs: tuple[str, ...]
    deleted_docs: tuple[str, ...]
    freshness_source: str
    run_links: dict[str, str] = field(default_factory=dict)  # label → UI link
    injection: list[dict] = field(default_factory=list)  # red-team attacks and what the bundle did with them
    quarantined: dict[str, str] = field(default_factory=dict)  # documents the injection scan held back → matches


def _fmt(value: float, digits: int = 3) -> str:
    return "NaN" if math.isnan(value) else f"{value:.{digits}f}"


def _delta_text(d: PairedDelta) -> str:
    return f"{d.value:+.3f} [{d.low:+.3f}, {d.high:+.3f}]" if d.samples else "no common questions"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _changes(review: BundleReview) -> str:
    if not review.changed_docs and not review.deleted_docs:
        return "no document changed since the index version it was built on"
    shown = ", ".join(review.changed_docs[:SHOWN_CHANGES])
    more = f" (+{len(review.changed_docs) - SHOWN_CHANGES} more)" if len(review.changed_docs) > SHOWN_CHANGES else ""
    deleted = f"; deleted: {', '.join(review.deleted_docs)}" if review.deleted_docs else ""
    return f"{len(review.changed_docs)} added or changed: {shown}{more}{deleted}"


def _quarantine_text(review: BundleReview) -> str:
    if not review.quarantined:
        return "Injection scan: no document held back."
    held = "; ".join(f"`{doc_id}` ({found})" for doc_id, found in list(review.quarantined.items())[:SHOWN_CHANGES])
    more = f" (+{len(review.quarantined) - SHOWN_CHANGES} more)" if len(review.quarantined) > SHOWN_CHANGES else ""
    return (f"Injection scan: {len(review.quarantined)} document(s) quarantined, not in this index: {held}{more}. "
            f"A reviewer releases one with an `allowlist.jsonl` entry in the raw data.")


def injection_rows(attacks: list[dict]) -> list[list[str]]:
    """One row per attack kind: attacks, retrieved (exposed), succeeded among the exposed (fine-tuned,
    and the base model given the same retrieved text)."""
    kinds = dict.fromkeys(a["attack"] for a in attacks)
    rows = []
    for kind in kinds:
        of_kind = [a for a in attacks if a["attack"] == kind]
        exposed = [a for a in of_kind if a["exposed"]]
        rows.append([kind, str(len(of_kind)), str(len(exposed)), str(sum(a["succeeded"] for a in exposed)),
                     str(sum(a.get("base_succeeded", False) for a in exposed))])
    return rows


def _injection_text(review: BundleReview) -> str:
    if not review.injection:
        return "Prompt injection: not measured."
    exposed = [a for a in review.injection if a["exposed"]]
    won = [a["id"] for a in exposed if a["succeeded"]]
    base = sum(a.get("base_succeeded", False) for a in exposed)
    rate = review.metrics.get("injection_success_rate")
    return (f"Prompt injection: {len(won)} of {len(exposed)} retrieved attacks succeeded (rate "
            f"{_fmt(rate.value) if rate else 'NaN'}; {len(exposed)} of {len(review.injection)} attack documents "
            f"retrieved){': ' + ', '.join(won) if won else ''}; against the base model given the same text, {base}. "
            f"Per attack: `evaluation/prompt_injection.json`.")


def ablation_rows(cells: list[AblationCell]) -> list[list[str]]:
    """One row per metric: base/no retrieval, base/retrieval, fine-tuned/no retrieval, fine-tuned/retrieval."""
    by_arm = {(c.generator, c.retrieval): c.metrics for c in cells}
    return [[name.replace("_", " ")] + [f"{_fmt(by_arm[a][name].value)} (n={by_arm[a][name].samples})"
                                        for a in ABLATION_ARMS]
            for name in ABLATION_METRICS if all(a in by_arm for a in ABLATION_ARMS)]


ABLATION_HEADER = ["metric", "base, no retrieval", "base + retrieval", "fine-tuned, no retrieval",
                   "fine-tuned + retrieval"]


def bundle_description(review: BundleReview) -> str:
    """Markdown for the model version page: the verdict first, then the evidence."""
    verdict = "PASSED" if review.decision.passed else "FAILED"
    gate_rows = [[c.metric, c.kind, "pass" if c.passed else "**FAIL**", c.reason.removeprefix(c.metric).lstrip(": ")]
                 for c in review.decision.checks]
    parts = [f"**Gates {verdict}.** Router {review.router}, generator {review.generator}, index `{review.collection}`.",
             "", _md_table(["gate", "kind", "result", "detail"], gate_rows), ""]
    if review.deltas is None:
        parts.append(f"Champion v{review.champion} has no per-question outcomes to compare with." if review.champion
                     else "No champion yet: nothing to compare with.")
    else:
        rows = [[name, _fmt(review.metrics[name].value) if name in review.metrics else "-", _delta_text(d),
                 str(d.samples), f"-{review.margins[name]:g}" if name in review.margins else "-"]
                for name, d in review.deltas.items()]
        parts += [f"Against champion v{review.champion}, same golden questions (paired bootstrap, 95% CI):", "",
                  _md_table(["metric", "this version", "minus champion [95% CI]", "n", "margin"], rows)]
    parts += ["", "Ablation on the golden questions of the retrieval intents:", "",
              _md_table(ABLATION_HEADER, ablation_rows(review.ablation)), "",
              f"Documents: {_changes(review)}. Freshness probes: {review.freshness_source}.", "",
              _quarantine_text(review), "",
              _injection_text(review), "",
              "Data (DVC md5): " + ", ".join(f"`{k}` {v}" for k, v in review.data_versions.items()) + ".", ""]
    if review.run_links:
        parts.append("Runs: " + " · ".join(f"[{label}]({link})" for label, link in review.run_links.items()) + ".")
    parts.append("Full report: `report/report.html` and `charts/*.png` in the evaluation run.")
    return "\n".join(parts)


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode()


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def html_report(review: BundleReview, charts: dict[str, Figure], freshness: list[dict],
                general: list[dict]) -> str:
    """One self-contained page (charts inlined) a reviewer can open from the run's artifacts."""
    verdict = "PASSED" if review.decision.passed else "FAILED"
    colour = "#1a7f37" if review.decision.passed else "#cf222e"
    sections = [
        f"<h1>{html.escape(review.bundle)}: gates <span style='color:{colour}'>{verdict}</span></h1>",
        f"<p>Router {html.escape(review.router)}, generator {html.escape(review.generator)}, index "
        f"<code>{html.escape(review.collection)}</code>. Documents: {html.escape(_changes(review))}.</p>",
        "<h2>Gates</h2>",
        _html_table(["gate", "kind", "result", "detail"],
                    [[c.metric, c.kind, "pass" if c.passed else "FAIL", c.reason] for c in review.decision.checks]),
        "<h2>Metrics</h2>",
        _html_table(["metric", "value", "samples"],
                    [[k, _fmt(m.value), str(m.samples)] for k, m in sorted(review.metrics.items())]),
    ]
    if review.deltas is not None:
        sections += [f"<h2>Against champion v{html.escape(str(review.champion))}</h2>",
                     _html_table(["metric", "minus champion [95% CI]", "n"],
                                 [[k, _delta_text(d), str(d.samples)] for k, d in review.deltas.items()])]
    sections += ["<h2>Ablation: fine-tuning or RAG?</h2>", _html_table(ABLATION_HEADER, ablation_rows(review.ablation))]
    sections += [f"<h3>{html.escape(name)}</h3><img src='data:image/png;base64,{_png(fig)}'>"
                 for name, fig in charts.items()]
    sections += [f"<h2>Freshness probes ({html.escape(review.freshness_source)})</h2>",
                 _html_table(["document", "question", "what it now says", "answer", "retrieved"],
                             [[p["doc_id"], p["question"], p["fact"], p["answer"], ", ".join(p["retrieved"])]
                              for p in freshness]),
                 "<h2>Prompt injection</h2>", f"<p>{html.escape(_injection_text(review))}</p>",
                 _html_table(["attack", "attacks", "retrieved", "succeeded", "succeeded, base model"],
                             injection_rows(review.injection)),
                 _html_table(["id", "attack", "placement", "question", "answer", "retrieved", "succeeded",
                              "base model's answer", "base succeeded"],
                             [[a["id"], a["attack"], a["placement"], a["question"], a["answer"],
                               "yes" if a["exposed"] else "no", "YES" if a["succeeded"] else "no",
                               a.get("base_answer", ""), "YES" if a.get("base_succeeded") else "no"]
                              for a in review.injection]),
                 "<h2>General prompts (first 10)</h2>",
                 _html_table(["prompt", "fine-tuned", "base"],
                             [[g["prompt"], g["fine_tuned"], g["base"]] for g in general[:10]]),
                 "<h2>Data versions (DVC md5)</h2>",
                 _html_table(["file", "md5"], [[k, v] for k, v in review.data_versions.items()])]
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;font-size:14px}")
    head = f"<head><meta charset='utf-8'><style>{style}</style></head>"
    return f"<!doctype html><html>{head}<body>{''.join(sections)}</body></html>"
