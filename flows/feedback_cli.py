"""`ragops feedback`: ratings of served answers, the review queue, decisions and the harvest.

    ragops feedback give TRACE_ID down --correction "It costs 10 USD."
    ragops feedback review                  # what needs a human, with question, answer and chunks
    ragops feedback decide TRACE_ID --reviewer ana --golden --doc-id p-001 \\
        --answer "It costs 10 USD [p-001]." --key-fact "10 USD"
    ragops feedback harvest                 # accepted items → raw data → curate, validate, version
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from flows.terminal import ParamsFile, console, fail, fail_stopped, load_params_or_exit

feedback_app = typer.Typer(help="Feedback on served answers, by their trace_id: rate, review, decide, harvest.")


def _tracking() -> None:
    from components.registry.tracking import configure_mlflow
    from components.settings import Settings

    configure_mlflow(Settings())


@feedback_app.command("give")
def feedback_give(trace_id: str = typer.Argument(..., help="the trace_id the answer came with (`ragops ask --json`)"),
                  rating: str = typer.Argument(..., help="up or down"),
                  correction: str = typer.Option("", help="the answer that was expected"),
                  comment: str = typer.Option("", help="why")) -> None:
    """Rate an answer (up or down, with an optional correction and comment) on its MLflow trace."""
    from components.registry.traces import UnknownTrace, record_feedback

    _tracking()
    try:  # ValueError: a rating other than up or down
        recorded = record_feedback(trace_id, rating, correction or None, comment or None, source="ragops-cli")
    except (UnknownTrace, ValueError) as exc:
        fail(str(exc))
    console.print(f"feedback on {trace_id}: {', '.join(recorded)}")


@feedback_app.command("review")
def feedback_review(params: ParamsFile = Path("params.yaml"),
                    days: float = typer.Option(7.0, help="how far back to look"),
                    limit: int = typer.Option(200, help="at most this many of the newest answers are looked at")) -> None:
    """List the served answers that need a human (down-voted, corrected, declined, router unsure,
    weak retrieval), with the question, the answer and what was retrieved; decide each with
    `ragops feedback decide`."""
    from components.registry.review_queue import review_queue

    loaded = load_params_or_exit(params)
    _tracking()
    items = review_queue(loaded, days, limit)
    for item in items:
        console.print(f"[bold]{item.trace_id}[/] {item.when} bundle v{item.bundle_version or '?'}: "
                      f"{', '.join(item.reasons)}")
        console.print(escape(f"  Q: {item.question}\n  A: {item.answer}"))
        console.print(escape(f"  route {item.route} ({item.route_confidence:.2f}); retrieved "
                             + (", ".join(f"{c['doc_id']} ({c['score']:.2f})" for c in item.chunks) or "nothing")))
        for chunk in item.chunks:
            text = " ".join(chunk.get("text", "").split())
            console.print(escape(f"    [{chunk['doc_id']}] {text[:160]}{'...' if len(text) > 160 else ''}"), soft_wrap=True)
        for label, text in (("correction", item.correction), ("comment", item.comment)):
            if text:
                console.print(escape(f"  {label}: {text}"))
    console.print(f"{len(items)} answer(s) to review" if items else "nothing to review")


@feedback_app.command("decide")
def feedback_decide(trace_id: str, reviewer: str = typer.Option(..., help="who decides (recorded on the trace)"),
                    golden: bool = typer.Option(False, "--golden", help="accept as a new golden question"),
                    training: bool = typer.Option(False, "--training", help="accept as a training example"),
                    reject: bool = typer.Option(False, "--reject", help="reject: nothing reaches the data"),
                    doc_id: list[str] = typer.Option([], help="a document that answers it (repeatable)"),
                    answer: str = typer.Option("", help="the right answer, citing its documents as [doc-id]"),
                    key_fact: list[str] = typer.Option([], help="a fact the right answer states (repeatable; golden)"),
                    unanswerable: bool = typer.Option(False, "--unanswerable",
                                                      help="the documents do not answer it: the assistant should decline"),
                    intent: str = typer.Option("", help="the intent it belongs to (default: the route it took)"),
                    note: str = typer.Option("", help="why")) -> None:
    """Record a reviewer's decision on an answer's trace: reject it, or accept it as a golden
    question or a training example; `ragops feedback harvest` takes accepted ones into the data."""
    from components.registry.review_queue import Acceptance, ReviewError, decide
    from components.registry.traces import UnknownTrace

    _tracking()
    try:
        if reject and (golden or training):
            raise ReviewError("either --reject, or accept as --golden or --training")
        accepted = None if reject else Acceptance(golden, training, tuple(doc_id), answer, tuple(key_fact),
                                                  not unanswerable, intent)
        tags = decide(trace_id, reviewer, accepted, note)
    except (ReviewError, UnknownTrace) as exc:
        fail(str(exc))
    console.print(f"{trace_id}: {tags['review.decision']}" + (f" as {tags['review.as']}" if "review.as" in tags else ""))


@feedback_app.command("harvest")
def feedback_harvest(params: ParamsFile = Path("params.yaml"),
                     project: Path = typer.Option(Path("."), help="project root (holds dvc.yaml and data/)")) -> None:
    """Accepted review items into the raw data (personal data scrubbed, with provenance), then
    curated, validated and versioned with DVC: the `ragops-harvest` deployment's flow, run here."""
    load_params_or_exit(project / params)  # bad params stop here, before the flow's imports
    from flows.harvest import harvest
    from flows.process import freeze_loaded

    freeze_loaded()
    state = harvest(project_path=str(project), params_path=str(params), trigger="manual", return_state=True)
    if not state.is_completed():
        fail_stopped("the harvest", state)
    console.print(state.result().summary())
