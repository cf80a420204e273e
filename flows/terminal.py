"""What the `ragops` commands print: the run summary with its gates, the 2x2 ablation, an answer
with its route, citations and chunks; and how they fail (exit 2 with the message)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console()
# The params file every command reads (relative to the project for `run`, `reindex` and `deploy`).
ParamsFile = Annotated[Path, typer.Option("--params", help="params file: every setting of the command comes from it")]


def fail(message: str) -> None:
    """Exit 2 with the message (what went wrong and the fix)."""
    console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code=2)


def fail_stopped(what: str, state) -> None:
    """Exit 2 with a flow's failure; one a service caused (after the step's retries) says so."""
    from components.settings import disk_full
    from flows.transient import is_transient

    failure = state.result(raise_on_failure=False)
    full = disk_full(failure) if isinstance(failure, BaseException) else None
    if full is not None:
        fail(f"{what} stopped ({state.name}): {no_space_message(full)}")
    hint = ("; a service did not answer after the step's retries (orchestration.retries): rerun once it answers, the "
            "rerun reuses what is already done" if isinstance(failure, BaseException) and is_transient(failure) else "")
    fail(f"{what} stopped ({state.name}): {type(failure).__name__}: {failure}{hint}")


def no_space_message(exc: BaseException) -> str:
    """What a full disk stopped, where, and what to do."""
    from components.settings import Settings

    home = Settings().home.resolve()
    where = getattr(exc, "path", None) or getattr(exc, "filename", None) or home
    said = getattr(exc, "doing", None) or next((line for line in str(exc).splitlines() if "full" in line or "space" in line),
                                                 str(exc))[:160]
    return (f"the disk of {where} is full ({said}). Nothing "
            f"earlier is lost: the champion, the live index and the checkpoints saved before stay as they were. Free "
            f"space on that disk (RAGOPS_HOME={home}: old run folders under runs/, checkpoints of finished jobs under "
            f"checkpoints/), or set RAGOPS_HOME to a folder on a bigger disk, then rerun: training resumes from its "
            f"last checkpoint and finished steps are reused")


def load_params_or_exit(path: Path):
    """params.yaml loaded and checked, or exit 2 with the message naming the key and the fix."""
    from components.config import ConfigError, load_params

    try:
        return load_params(path)
    except ConfigError as exc:
        fail(str(exc))


def fmt(value: float) -> str:
    return "NaN" if math.isnan(value) else f"{value:.3f}"


def model_label(model) -> str:
    return f"{model.name} v{model.version}{' (reused: same data, params and code)' if model.reused else ''}"


def print_summary(result, gates: dict[str, float]) -> None:
    from components.config import LOWER_IS_BETTER

    table = Table(title="ragops run summary", show_lines=False)
    table.add_column("what")
    table.add_column("value")
    for name, md5 in result.data_versions.items():
        table.add_row(f"data {name}", f"md5 {md5}")
    router = result.router.metrics
    table.add_row("router", f"{model_label(result.router)}  held-out accuracy "
                  f"{fmt(router.get('router_accuracy', math.nan))}, macro-F1 {fmt(router.get('router_macro_f1', math.nan))}")
    generator = result.generator.metrics
    behaviour = "".join(
        f", {name.replace('_', ' ')} {fmt(generator[f'heldout_{name}_tuned'])} (base {fmt(generator[f'heldout_{name}_base'])})"
        for name in ("citation_accuracy", "refusal_rate", "false_refusal_rate")
        if generator.get(f"heldout_{name}_samples", 0) > 0)  # none unanswerable when the check decides refusals
    if "check_refusal_rate" in generator:
        behaviour += (f"; answerability check: refuses {fmt(generator['check_refusal_rate'])} of unanswerable, "
                      f"{fmt(generator['check_false_refusal_rate'])} of answerable")
    table.add_row("generator", f"{model_label(result.generator)}  held-out loss "
                  f"{fmt(generator.get('best_eval_loss', math.nan))}{behaviour}")
    table.add_row("index", f"{result.index.collection}: {result.index.documents} documents, {result.index.chunks} chunks")
    table.add_row("injection scan", escape("; ".join(f"{doc_id} quarantined, not indexed ({found})"
                                              for doc_id, found in result.quarantined.items())) or "no document held back")
    for name, metric in result.metrics.items():
        if name.startswith("ablation_"):
            continue  # shown as its own table below
        gate = f"  (gate {'<=' if name in LOWER_IS_BETTER else '>='} {gates[name]:g})" if name in gates else ""
        table.add_row(f"metric {name}", f"{fmt(metric.value)} on {metric.samples} samples{gate}")
    verdict = "[green]champion[/]" if result.promotion.alias == "champion" else "[yellow]challenger[/]"
    table.add_row("bundle", f"version {result.promotion.bundle_version} → {verdict}")
    console.print(table)
    print_ablation(result.metrics)
    for reason in result.promotion.reasons:
        console.print(f"  gate: {escape(reason)}")


def print_ablation(metrics: dict) -> None:
    """The 2x2 ablation as the README shows it: generator x retrieval, per answer metric."""
    from components.evaluation.bundle import ablation_cells
    from components.reporting.bundle import ABLATION_HEADER, ablation_rows

    rows = ablation_rows(ablation_cells(metrics))
    if rows:
        table = Table(*ABLATION_HEADER, title="ablation: fine-tuning or RAG? (golden questions of the retrieval intents)")
        for row in rows:
            table.add_row(*row)
        console.print(table)


def print_answer(answer: dict) -> None:
    console.print(f"[bold]Q:[/] {escape(answer['question'])}")
    console.print(f"[bold]A:[/] {escape(answer['answer'])}")
    console.print(f"[dim]route: {answer['route']} ({answer['route_confidence']:.2f}); trace {answer.get('trace_id')}[/]")
    console.print("[bold]citations:[/] " + escape(", ".join(answer["citations"]) or "none"))
    for chunk in answer["chunks"]:
        console.print(escape(f"  [{chunk['doc_id']}] {chunk['text'][:100]}"))
