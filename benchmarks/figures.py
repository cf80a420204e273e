"""The figures the docs quote, rendered from benchmarks/results/*.json into docs/benchmarks.md
(between its `<!-- figures: ... -->` markers), each table headed by the commit, CPU and day its
figures were measured. `bench_support.emit` re-renders the page after every benchmark run, and
tests/unit/test_figures.py fails when the page and the results disagree, so the page is never
edited by hand and a figure never comes from memory.

    .venv/bin/python benchmarks/figures.py     # re-render docs/benchmarks.md from the results

Only the standard library: the unit test imports it without the benchmarks' dependencies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAGE = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- figures: rendered by benchmarks/figures.py from benchmarks/results/; do not edit by hand -->"
END = "<!-- figures: end -->"

# Per results file: (what the figure is, where it is in the JSON, its format: a format string, or a
# function of the value). A key path is a tuple, since some keys hold dots.
Figure = tuple[str, tuple[str, ...], "str | Callable[[Any], str]"]


def _statuses(endpoints: dict) -> str:
    """Every HTTP status the endpoints answered, with its count."""
    counts: dict[str, int] = {}
    for endpoint in endpoints.values():
        for status, count in endpoint.get("statuses", {}).items():
            counts[status] = counts.get(status, 0) + count
    return ", ".join(f"{status}: {counts[status]:,}" for status in sorted(counts))


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{seconds % 60:02.0f}s"


def _steps(steps: dict) -> str:
    """Each step's time and peak resident memory, in the order the run took them."""
    return "; ".join(f"{name} {step['seconds']:.0f} s, {step['peak_gb']:.2f} GB" for name, step in steps.items())


def _gates(gates: dict) -> str:
    return "; ".join(f"{name} {gate['value']:.3f} (n={gate['n']}) {gate['gate']}" for name, gate in gates.items())


FIGURES: dict[str, list[Figure]] = {
    "make_run": [
        ("`make run` on a fresh clone with warm caches: wall time, ending", ("first_run",),
         lambda run: f"{_minutes(run['seconds'])}, {run['ending']}"),
        ("each step: time, peak resident memory", ("first_run", "steps"), _steps),
        ("the gates it printed", ("first_run", "gates"), _gates),
        ("`git status` clean afterwards", ("git_status_clean",), lambda clean: "yes" if clean else "no"),
        ("`make run` again with nothing changed: wall time, ending", ("second_run",),
         lambda run: f"{run['seconds']:.0f} s, {run['ending']}"),
    ],
    "answer_engines": [
        ("one answer at a time, p50: OpenVINO (the default engine)", ("openvino", "answer_p50_ms"), "{:.0f} ms"),
        ("the same through CTranslate2", ("ctranslate2", "answer_p50_ms"), "{:.0f} ms"),
        ("the same through transformers", ("transformers", "answer_p50_ms"), "{:.0f} ms"),
        ("golden answers differing from transformers': OpenVINO", ("openvino", "answers_differing_from_transformers"),
         "{}"),
        ("golden answers differing from transformers': CTranslate2",
         ("ctranslate2", "answers_differing_from_transformers"), "{}"),
        ("key facts / refusal / false refusals through OpenVINO", ("openvino",), "{key_fact_accuracy:.3f} / "
         "{refusal_accuracy:.3f} / {false_refusal_rate:.3f}"),
    ],
    "serving_latency": [
        ("`ragops serve`, one request at a time: answer p50 / p95", ("answer",), "{p50_ms:.0f} / {p95_ms:.0f} ms"),
        ("route + retrieve p50 / p95", ("route_retrieve",), "{p50_ms:.0f} / {p95_ms:.0f} ms"),
        ("start to ready", ("server_start_to_ready_s",), "{:.1f} s"),
        ("server's peak resident memory", ("server_peak_rss_gb",), "{:.2f} GB"),
    ],
    "serve_batching": [
        ("8 concurrent clients: answers a second, batched / one at a time", (),
         "{batched[answers_per_second]:.2f} / {one_at_a_time[answers_per_second]:.2f}"),
        ("throughput, batched over one at a time", ("throughput_ratio",), "{:.2f}x"),
        ("answer p95, batched / one at a time", (), "{batched[p95_ms]:.0f} / {one_at_a_time[p95_ms]:.0f} ms"),
    ],
    "serve_load": [
        ("32 clients with keys, a rollback halfway: requests", ("requests",), "{:,}"),
        ("seconds", ("seconds",), "{:.0f} s"),
        ("answers p50 / p95 / p99", ("endpoints", "answer"), "{p50_ms:.0f} / {p95_ms:.0f} / {p99_ms:.0f} ms"),
        ("retrievals p50", ("endpoints", "retrieve", "p50_ms"), "{:.0f} ms"),
        ("feedback p50", ("endpoints", "feedback", "p50_ms"), "{:.0f} ms"),
        ("every status answered, with its count (no other, no connection dropped)", ("endpoints",), _statuses),
    ],
    "freshness": [
        ("a price edit to the first served answer stating it: p50 / p95 / max", ("summary",),
         "{p50_s:.1f} / {p95_s:.1f} / {max_s:.1f} s"),
        ("edits served fresh", ("summary",), "{fresh} of {n}"),
        ("the reindex run's median (debounce excluded)", ("summary", "median_parts_s", "run"), "{:.1f} s"),
    ],
    "index_reindex": [
        ("documents / chunks", (), "{documents:,} / {chunks:,}"),
        ("full build: chunks a second (share of raw embedding throughput)", ("full_build",),
         "{chunks_per_s:.1f} ({share_of_raw_embedding_throughput:.1%})"),
        ("one changed document: seconds (share of a full build)", ("incremental", "1"),
         "{seconds:.2f} s ({share_of_full_build:.1%})"),
        ("hybrid query p50 / p95 (embedding excluded)", ("hybrid_query_ms",), "{p50:.1f} / {p95:.1f} ms"),
    ],
    "injection_scan": [
        ("demo red-team documents caught", ("demo", "red_team"), "{caught} of {attacks}"),
        ("demo catalog documents flagged", ("demo", "catalog"), "{flagged} of {documents}"),
        ("Python FAQ red-team documents caught", ("python-faq", "red_team"), "{caught} of {attacks}"),
        ("Python FAQ documents flagged (held after the allowlist)", ("python-faq", "catalog"),
         "{flagged} of {documents} ({held_after_allowlist})"),
    ],
}
# The two generator_recipe files hold a summary table (min / mean / max over seeds and precisions).
SUMMARIES = ("generator_recipe", "generator_recipe_check_only")


def _at(result: dict, path: tuple[str, ...]) -> Any:
    for key in path:
        result = result[key]
    return result


def _value(result: dict, path: tuple[str, ...], form: str) -> str:
    value = _at(result, path)
    if callable(form):
        return form(value)
    positional = "{}" in form or "{:" in form  # else the fields are the value's keys
    return form.format(value) if positional else form.format(**value)


def heading(name: str, result: dict) -> str:
    features = ", ".join(result.get("cpu_features", [])) or "no AVX-512"
    changed = " (with uncommitted changes)" if result.get("uncommitted_changes") else ""
    return (f"### `{name}` — commit {result['commit']}{changed}, {result['cpu']} ({features}), "
            f"{result['cores']} cores, {result['measured_at'][:10]}")


def summary_table(result: dict) -> list[str]:
    runs = result["runs"]
    lines = [", ".join(f"seed {r['seed']} {r.get('precision', 'fp32')}" for r in runs), "",
             "| metric | gate | min / mean / max | margin at the worst run |", "|---|---|---|---|"]
    for metric, row in result["summary"].items():
        latency = metric.startswith("latency")
        spread = " / ".join(f"{row[k]:.0f}" if latency else f"{row[k]:.3f}" for k in ("min", "mean", "max"))
        if "margin" not in row:
            margin = "(not gated)"
        else:
            margin = f"{row['margin']:.0f}" if latency else f"{row['margin']:+.3f}"
        lines.append(f"| {metric} | {row['gate']} | {spread} | {margin} |")
    return lines


def section(results: dict[str, dict]) -> str:
    """The rendered figures: one table per results file, in FIGURES' order, summaries last."""
    lines = []
    for name in [*FIGURES, *SUMMARIES]:
        if name not in results:
            continue
        lines += ["", heading(name, results[name]), ""]
        if name in SUMMARIES:
            lines += summary_table(results[name])
            continue
        lines += ["| figure | value |", "|---|---|"]
        lines += [f"| {label} | {_value(results[name], path, form)} |" for label, path, form in FIGURES[name]]
    return "\n".join([BEGIN, *lines, "", END])


def load_results(folder: Path = RESULTS) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}


def rendered(page_text: str, results: dict[str, dict]) -> str:
    """`page_text` with its figures section replaced by the one `results` give."""
    head, found, rest = page_text.partition(BEGIN)
    _, ended, tail = rest.partition(END)
    if not (found and ended):
        raise ValueError(f"{PAGE} lacks the markers {BEGIN!r} and {END!r}: put them back around its figures")
    return head + section(results) + tail


def write(page: Path = PAGE, folder: Path = RESULTS) -> None:
    page.write_text(rendered(page.read_text(), load_results(folder)))


if __name__ == "__main__":
    write()
    print(f"rendered {PAGE.relative_to(ROOT)} from {RESULTS.relative_to(ROOT)}/")
