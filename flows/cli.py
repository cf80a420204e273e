"""The `ragops` command line.

    ragops run                          # the whole pipeline on params.yaml (what `make run` does)
    ragops reindex                      # index document changes, evaluate with the champion's models, promote
    ragops deploy                       # serve the Prefect deployments; document edits trigger reindexing
    ragops worker --pool ragops         # a Prefect worker for `ragops deploy --work-pool ragops`
    ragops serve                        # the champion over HTTP, reloaded when the champion alias moves
    ragops ask "How much does the Aurora ANC Headphones Edge cost?"
    ragops feedback give TRACE_ID down --correction "..."   # a rating of an answer, on its MLflow trace
    ragops feedback review / decide / harvest               # the review queue, and accepted items into the data
    ragops models fetch                 # download/convert the models of params.yaml into the cache
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from flows.feedback_cli import feedback_app
from flows.keys_cli import keys_app
from flows.process import freeze_loaded, run_and_exit, set_environment, stop_cleanly_on_signals
from flows.terminal import ParamsFile, console, fail, fail_stopped, load_params_or_exit, print_answer, print_summary

app = typer.Typer(add_completion=False, no_args_is_help=True, help="ragops: MLOps for a RAG + LoRA store assistant")
models_app = typer.Typer(help="Model cache commands.")
app.add_typer(models_app, name="models")
app.add_typer(feedback_app, name="feedback")
app.add_typer(keys_app, name="keys")


@app.callback()
def _before_every_command() -> None:
    """Every command starts from the same environment (set before the libraries load)."""
    set_environment()


def main() -> None:
    """The `ragops` entry point (flows/process.py says what its exit skips)."""
    run_and_exit(_service_failures_said(app))


def _service_failures_said(command: typer.Typer):
    """`command`, where a service that did not answer (MLflow, Weaviate, the DVC remote, a Prefect
    API) exits 2 naming it and what to check, instead of a traceback; any other error keeps its own."""
    def guarded() -> None:
        try:
            command()
        except Exception as exc:  # noqa: BLE001 - only the transient ones are caught, the rest re-raised
            from components.settings import Settings, scrubbed
            from flows.transient import is_transient

            if not is_transient(exc):
                raise
            settings = Settings()
            said = scrubbed(f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}", settings.mlflow_tracking_uri,
                            settings.weaviate_url, settings.dvc_remote_url)
            try:  # outside typer's own handling, where its Exit would not become the exit status
                fail(f"a service did not answer ({said}). Check that it runs and that RAGOPS_MLFLOW_TRACKING_URI, "
                     f"RAGOPS_WEAVIATE_URL, RAGOPS_DVC_REMOTE_URL and PREFECT_API_URL name it (unset: the embedded "
                     f"defaults under RAGOPS_HOME={settings.home}), then run the command again")
            except typer.Exit as stop:
                raise SystemExit(stop.exit_code) from None
    return guarded


def _ask(questions: list[str], params_path: Path, version: str = "") -> list[dict]:
    """The bundle's answers (components/serving/ask.py), or exit 2 saying why there is no bundle to ask."""
    from components.settings import Settings
    from components.serving.ask import NoBundle, ask_bundle

    try:
        return ask_bundle(questions, load_params_or_exit(params_path), Settings(), version)
    except NoBundle as exc:
        fail(str(exc))


def sample_question(golden_path: Path, retrieval_intents: Sequence[str]) -> str:
    for line in golden_path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row.get("answerable") and row.get("intent") in retrieval_intents:
            return row["question"]
    fail(f"{golden_path} has no answerable question of router.retrieval_intents {list(retrieval_intents)}; "
          f"pass --question")


@app.command()
def run(params: ParamsFile = Path("params.yaml"),
        project: Path = typer.Option(Path("."), help="project root (holds dvc.yaml and data/)"),
        question: str = typer.Option("", help="sample question answered at the end "
                                     "(default: the golden set's first answerable question of a retrieval intent)")) -> None:
    """Run the whole pipeline, print a summary and answer a sample question with the champion."""
    loaded = load_params_or_exit(project / params)  # bad params stop here, before the flow's imports
    from flows.pipeline import retrain

    freeze_loaded()

    state = retrain(project_path=str(project), params_path=str(params), return_state=True)
    if not state.is_completed():
        fail_stopped("the pipeline", state)
    result = state.result()
    print_summary(result, loaded.evaluation.gates)
    if not result.evaluated:
        console.print(f"nothing changed since bundle v{result.promotion.bundle_version} was evaluated: nothing was "
                      f"trained, evaluated or promoted (ask the champion with `ragops ask`)")
    elif result.promotion.alias == "champion":
        question = question or sample_question(result.golden_path, loaded.router.retrieval_intents)
        print_answer(_ask([question], project / params)[0])
    elif result.promotion.failed:
        version = result.promotion.bundle_version
        console.print(f"[yellow]no new champion: bundle v{version} is held as challenger; failed gates: "
                      f"{escape('; '.join(result.promotion.failed))}[/]")
        console.print(f"next: try it with `ragops ask --version {version} QUESTION`, compare it with `ragops review`, "
                      f"and fix what failed (data, or the params of the step behind the metric) before `ragops run`")
    else:  # promotion.require_approval
        version = result.promotion.bundle_version
        console.print(f"[yellow]bundle v{version} passed its gates and awaits approval (promotion.require_approval)[/]")
        console.print(f"next: try it with `ragops ask --version {version} QUESTION`, compare it with `ragops review`, "
                      f"and approve it with `ragops promote {version}`")


@app.command()
def reindex(params: ParamsFile = Path("params.yaml"),
            project: Path = typer.Option(Path("."), help="project root (holds dvc.yaml and data/)")) -> None:
    """Reindex changed documents (no retraining): a new index version, evaluated with the champion's
    router and generator, promoted if its gates pass."""
    load_params_or_exit(project / params)  # bad params stop here, before the flow's imports
    from flows.reindex import reindex as reindex_flow

    freeze_loaded()

    state = reindex_flow(project_path=str(project), params_path=str(params), return_state=True)
    if not state.is_completed():
        fail_stopped("the reindex", state)
    result = state.result()
    console.print(f"index: {result.index.collection} ({result.index.plan})")
    if result.promotion is None:
        console.print("nothing changed: the live index and the champion stay as they are")
    else:
        verdict = "[green]champion[/]" if result.promotion.alias == "champion" else "[yellow]challenger[/]"
        console.print(f"bundle version {result.promotion.bundle_version} → {verdict}")
        for reason in result.promotion.reasons:
            console.print(f"  gate: {escape(reason)}")


@app.command()
def deploy(params: ParamsFile = Path("params.yaml"),
           project: Path = typer.Option(Path("."), help="project root (holds dvc.yaml and data/)"),
           work_pool: str = typer.Option("", help="register the deployments on this Prefect work pool (its workers "
                                         "run them) instead of serving them in this process")) -> None:
    """Serve the Prefect deployments (reindex on document changes, retrain on schedule.retrain_cron and
    on demand, evaluate on demand) and watch the documents folder; runs until interrupted."""
    loaded = load_params_or_exit(project / params)  # bad params stop here, before the flows' imports
    if work_pool and not os.environ.get("PREFECT_API_URL"):
        fail("--work-pool needs a Prefect server that workers also reach: set PREFECT_API_URL "
              "(e.g. http://127.0.0.1:4200/api after `prefect server start`)")
    from components.settings import PROJECT_VARIABLE
    from flows.deploy import deploy as serve_deployments

    freeze_loaded()

    os.environ[PROJECT_VARIABLE] = str(project.resolve())  # the only project its flow runs may work on
    stop_cleanly_on_signals()
    try:
        serve_deployments(project, str(params), loaded, work_pool or None)
    except KeyboardInterrupt:
        console.print("ragops deploy: stopped")


@app.command()
def worker(pool: str = typer.Option(..., help="the Prefect work pool to take flow runs from"),
           pool_type: str = typer.Option("process", "--type", help="work pool type, created if missing"),
           project: Path = typer.Option(Path("."), help="the project whose flow runs this worker runs (the only one: "
                                        "a run whose project_path names another fails)"),
           name: str | None = typer.Option(None, help="the worker's name in Prefect (default: Prefect's own)"),
           limit: int | None = typer.Option(None, min=1, help="flow runs at once on this worker (default: no limit); "
                                            "with 1, runs submitted together spread over the pool's workers")) -> None:
    """`prefect worker start` with ragops' offline library settings, which the flow runs it starts inherit."""
    if not os.environ.get("PREFECT_API_URL"):
        fail("a worker needs the Prefect server `ragops deploy --work-pool` registered on: set PREFECT_API_URL")
    from components.settings import PROJECT_VARIABLE

    os.environ[PROJECT_VARIABLE] = str(project.resolve())  # the only project its flow runs may work on
    prefect = Path(sys.executable).parent / "prefect"
    os.execv(prefect, [str(prefect), "worker", "start", "--pool", pool, "--type", pool_type,
                       *(["--name", name] if name else []), *(["--limit", str(limit)] if limit else [])])


@app.command()
def rollback(params: ParamsFile = Path("params.yaml")) -> None:
    """Put back the champion pair (bundle version and its index version) that was live before the
    current one; the move is written to the promotion ledger."""
    from components.settings import Settings
    from components.registry.promotion import PromotionError, rollback as roll_back
    from components.registry.tracking import configure_mlflow

    loaded, settings = load_params_or_exit(params), Settings()
    configure_mlflow(settings)
    try:
        done = roll_back(settings, loaded)
    except PromotionError as exc:
        fail(str(exc))
    console.print(f"{loaded.promotion.bundle_name}: champion v{done.previous_version} → v{done.version}, "
                  f"index {done.previous_collection} → {done.collection}")


@app.command()
def promote(version: str = typer.Argument(..., help="bundle version to make the champion"),
            params: ParamsFile = Path("params.yaml")) -> None:
    """Approve a bundle version whose gates passed (the human step when promotion.require_approval
    is true): it becomes the champion with its index version, recorded in the ledger."""
    from components.settings import Settings
    from components.registry.promotion import PromotionError, approve
    from components.registry.tracking import configure_mlflow

    loaded, settings = load_params_or_exit(params), Settings()
    configure_mlflow(settings)
    try:
        moved = approve(settings, loaded, version)
    except PromotionError as exc:
        fail(str(exc))
    console.print(f"{loaded.promotion.bundle_name}: champion v{moved.previous_version or '-'} → v{version}")


@app.command()
def review(params: ParamsFile = Path("params.yaml")) -> None:
    """List the bundle versions newer than the champion: their gates and their metrics against the champion's."""
    from components.settings import Settings
    from components.registry.promotion import review as candidates_of
    from components.registry.tracking import configure_mlflow

    loaded = load_params_or_exit(params)
    configure_mlflow(Settings())
    champion, candidates = candidates_of(loaded)
    table = Table(title=f"{loaded.promotion.bundle_name}: champion v{champion or '-'}")
    for column in ("version", "index", "gates", "minus the champion it was compared with [95% CI]"):
        table.add_column(column)
    for c in candidates:
        deltas = "; ".join(f"{k} {v:+.3f} [{lo:+.3f}, {hi:+.3f}]" for k, (v, lo, hi) in c.deltas.items())
        against = f"v{c.compared_with}: {deltas}" if deltas else "no paired comparison (no champion then)"
        table.add_row(c.version, c.collection, "passed" if c.gates_passed else f"failed: {c.reasons}", against)
    console.print(table if candidates else f"no bundle version newer than the champion v{champion or '-'}")


@app.command()
def ask(question: str, as_json: bool = typer.Option(False, "--json", help="print the raw prediction"),
        version: str = typer.Option("", help="answer with this bundle version (e.g. a held candidate) instead of "
                                    "the champion"),
        params: ParamsFile = Path("params.yaml")) -> None:
    """Answer a question with the champion bundle, or with bundle --version N (citations shown)."""
    answer = _ask([question], params, version)[0]
    if as_json:
        sys.stdout.write(json.dumps(answer) + "\n")
    else:
        print_answer(answer)


@models_app.command("fetch")
def models_fetch(params: ParamsFile = Path("params.yaml")) -> None:
    """Resolve the models of params.yaml into the cache (download and convert once)."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "0"  # the one-off conversion is slow: show its progress
    from components.settings import Settings
    from components.models.resolve import fetch_models

    for kind, path in fetch_models(load_params_or_exit(params).models, Settings().models_dir).items():
        console.print(f"models: {kind} → {path}", soft_wrap=True)  # a path is copied whole, never wrapped


@app.command()
def serve(host: str = typer.Option("127.0.0.1", help="address to listen on"),
          port: int = typer.Option(8080, help="port to listen on"),
          params: ParamsFile = Path("params.yaml")) -> None:
    """Serve the champion bundle over HTTP until interrupted: POST /v1/answer, /v1/answer/batch,
    /v1/retrieve; GET /healthz, /readyz. A moved champion alias is loaded and swapped in without a restart."""
    import logging

    from rich.logging import RichHandler

    from components.settings import Settings
    from components.index.server import WeaviateServerError
    from components.serving.app import serve_champion
    from components.serving.keys import KeyFileError, KeyRing, listen_host

    loaded, settings = load_params_or_exit(params), Settings()
    freeze_loaded()
    ours = logging.getLogger("ragops")  # reloads and failures; uvicorn logs requests itself
    ours.setLevel(logging.INFO)
    ours.addHandler(RichHandler(console=console, show_path=False))
    try:
        keys = KeyRing(settings.serve_keys) if settings.serve_keys else None
    except KeyFileError as exc:
        fail(f"RAGOPS_SERVE_KEYS: {exc}")
    host, warning = listen_host(host, keys)
    console.print(f"ragops serve: listening on http://{host}:{port}, serving the champion of "
                  f"{loaded.promotion.bundle_name} (checked every {loaded.serve.reload_poll_seconds:g} s); "
                  + (f"API keys from {settings.serve_keys} ({len(keys.keys())})" if keys else warning or
                     "no API keys (RAGOPS_SERVE_KEYS not set): loopback only"), soft_wrap=True)
    try:
        serve_champion(loaded.serve, loaded.promotion.bundle_name, settings, host, port, keys)
    except WeaviateServerError as exc:
        fail(f"{exc}; or set RAGOPS_WEAVIATE_URL to an external server")


if __name__ == "__main__":
    main()
