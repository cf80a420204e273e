"""The `ragops` command line.

    ragops run                          # the whole pipeline on params.yaml (what `make run` does)
    ragops reindex                      # index document changes, evaluate with the champion's models, promote
    ragops deploy                       # serve the Prefect deployments; document edits trigger reindexing
    ragops worker --pool ragops         # a Prefect worker for `ragops deploy --work-pool ragops`
    ragops serve                        # the champion over HTTP, reloaded when the champion alias moves
    ragops ask "How much does the Aurora ANC Headphones Edge cost?"
    ragops models fetch                 # download/convert the models of params.yaml into the cache
"""

from __future__ import annotations

import atexit
import gc
import json
import math
import os
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, help="ragops: MLOps for a RAG + LoRA store assistant")
models_app = typer.Typer(help="Model cache commands.")
app.add_typer(models_app, name="models")
console = Console()
# The params file every command reads (relative to the project for `run`, `reindex` and `deploy`).
ParamsFile = Annotated[Path, typer.Option("--params", help="params file: every setting of the command comes from it")]


def _environment() -> None:
    """Quiet, offline-friendly defaults for the libraries, set before they are imported."""
    from components.settings import private_dir, Settings

    home = private_dir(Settings().home).resolve()
    defaults = {
        "PREFECT_HOME": str(home / "prefect"),
        # The temporary server needs more than the default 20 s on a busy 2-core machine.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LOGGERS_PREFECT_LEVEL": "WARNING",
        "PREFECT_LOGGING_LOGGERS_PREFECT_FLOW_RUNS_LEVEL": "INFO",
        "PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL": "INFO",
        "DO_NOT_TRACK": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "GX_ANALYTICS_ENABLED": "false",
        "DVC_NO_ANALYTICS": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "TRANSFORMERS_VERBOSITY": "error",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # per-load weight bars; our own progress is rich
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "GIT_PYTHON_REFRESH": "quiet",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    # weaviate's import calls warnings.simplefilter("default"), which would put every filter below
    # back behind it: import it first, then install ours.
    import weaviate  # noqa: F401

    # Known-harmless library warnings that would bury the pipeline's own output.
    for message in ("The specified dataset source can be interpreted", ".*is_gradient_checkpointing.*",
                    ".*An input example was not provided", "module .sre_(constants|parse). is deprecated",
                    "The ``noload`` loader strategy is deprecated"):
        warnings.filterwarnings("ignore", message=message)


@app.callback()
def _before_every_command() -> None:
    """Every command starts from the same environment (set before the libraries load)."""
    _environment()


def main() -> None:
    """The `ragops` entry point: the command, then an exit that does not tear the interpreter down.

    What a normal exit does for the program still happens, in its order: threads that are not
    daemons are joined, atexit handlers run (Prefect's temporary server stops, logging flushes),
    the streams are flushed. What is skipped is the interpreter's last garbage collection of
    everything torch, transformers, MLflow and Prefect loaded, for a process that ends anyway:
    3.6 s of a 37-s tiny `ragops reindex` on a 2-core AMD EPYC. An uncaught exception leaves the
    normal way, with its traceback."""
    try:
        app()
        code = 0
    except SystemExit as stop:
        code = stop.code
    if code is None or isinstance(code, int):
        code = code or 0
    else:  # sys.exit("message"): printed, status 1, as Python does
        print(code, file=sys.stderr)
        code = 1
    # CPython's own exit steps, as multiprocessing's child processes take them before os._exit:
    # thread-pool shutdowns and joins of the threads that are not daemons, then the atexit handlers
    threading._shutdown()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _freeze_loaded() -> None:
    """Leave what is loaded by now (modules, classes, constants: millions of objects from torch,
    transformers, MLflow and Prefect, alive as long as the process) out of the garbage collector's
    full passes; objects still go when nothing refers to them. On a tiny reindex, 11 full passes
    took 2.2 s of 37 (2-core AMD EPYC)."""
    gc.freeze()


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code=2)


def _fail_stopped(what: str, state) -> None:
    """Exit 2 with a flow's failure; one a service caused (after the step's retries) says so."""
    from flows.transient import is_transient

    failure = state.result(raise_on_failure=False)
    hint = ("; a service did not answer after the step's retries (orchestration.retries): rerun once it answers, the "
            "rerun reuses what is already done" if isinstance(failure, BaseException) and is_transient(failure) else "")
    _fail(f"{what} stopped ({state.name}): {type(failure).__name__}: {failure}{hint}")


def _load_params(path: Path):
    """params.yaml loaded and checked, or exit 2 with the message naming the key and the fix."""
    from components.config import ConfigError, load_params

    try:
        return load_params(path)
    except ConfigError as exc:
        _fail(str(exc))


def _fmt(value: float) -> str:
    return "NaN" if math.isnan(value) else f"{value:.3f}"


def _model_label(model) -> str:
    return f"{model.name} v{model.version}{' (reused: same data, params and code)' if model.reused else ''}"


def print_summary(result, gates: dict[str, float]) -> None:
    from components.config import LOWER_IS_BETTER

    table = Table(title="ragops run summary", show_lines=False)
    table.add_column("what")
    table.add_column("value")
    for name, md5 in result.data_versions.items():
        table.add_row(f"data {name}", f"md5 {md5}")
    router = result.router.metrics
    table.add_row("router", f"{_model_label(result.router)}  held-out accuracy "
                  f"{_fmt(router.get('router_accuracy', math.nan))}, macro-F1 {_fmt(router.get('router_macro_f1', math.nan))}")
    generator = result.generator.metrics
    behaviour = "".join(
        f", {name.replace('_', ' ')} {_fmt(generator[f'heldout_{name}_tuned'])} (base {_fmt(generator[f'heldout_{name}_base'])})"
        for name in ("citation_accuracy", "refusal_rate", "false_refusal_rate")
        if generator.get(f"heldout_{name}_samples", 0) > 0)  # none unanswerable when the check decides refusals
    if "check_refusal_rate" in generator:
        behaviour += (f"; answerability check: refuses {_fmt(generator['check_refusal_rate'])} of unanswerable, "
                      f"{_fmt(generator['check_false_refusal_rate'])} of answerable")
    table.add_row("generator", f"{_model_label(result.generator)}  held-out loss "
                  f"{_fmt(generator.get('best_eval_loss', math.nan))}{behaviour}")
    table.add_row("index", f"{result.index.collection}: {result.index.documents} documents, {result.index.chunks} chunks")
    for name, metric in result.metrics.items():
        if name.startswith("ablation_"):
            continue  # shown as its own table below
        gate = f"  (gate {'<=' if name in LOWER_IS_BETTER else '>='} {gates[name]:g})" if name in gates else ""
        table.add_row(f"metric {name}", f"{_fmt(metric.value)} on {metric.samples} samples{gate}")
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
    console.print(f"[dim]route: {answer['route']} ({answer['route_confidence']:.2f})[/]")
    console.print("[bold]citations:[/] " + escape(", ".join(answer["citations"]) or "none"))
    for chunk in answer["chunks"]:
        console.print(escape(f"  [{chunk['doc_id']}] {chunk['text'][:100]}"))


def _ask(questions: list[str], params_path: Path, version: str = "") -> list[dict]:
    """The bundle's answers (components/serving/ask.py), or exit 2 saying why there is no bundle to ask."""
    from components.settings import Settings
    from components.serving.ask import NoBundle, ask_bundle

    try:
        return ask_bundle(questions, _load_params(params_path), Settings(), version)
    except NoBundle as exc:
        _fail(str(exc))


def sample_question(golden_path: Path, retrieval_intents: Sequence[str]) -> str:
    for line in golden_path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row.get("answerable") and row.get("intent") in retrieval_intents:
            return row["question"]
    _fail(f"{golden_path} has no answerable question of router.retrieval_intents {list(retrieval_intents)}; "
          f"pass --question")


@app.command()
def run(params: ParamsFile = Path("params.yaml"),
        project: Path = typer.Option(Path("."), help="project root (holds dvc.yaml and data/)"),
        question: str = typer.Option("", help="sample question answered at the end "
                                     "(default: the golden set's first answerable question of a retrieval intent)")) -> None:
    """Run the whole pipeline, print a summary and answer a sample question with the champion."""
    loaded = _load_params(project / params)  # bad params stop here, before the flow's imports
    from flows.pipeline import retrain

    _freeze_loaded()

    state = retrain(project_path=str(project), params_path=str(params), return_state=True)
    if not state.is_completed():
        _fail_stopped("the pipeline", state)
    result = state.result()
    print_summary(result, loaded.evaluation.gates)
    if not result.evaluated:
        console.print(f"nothing changed since bundle v{result.promotion.bundle_version} was evaluated: nothing was "
                      f"trained, evaluated or promoted (ask the champion with `ragops ask`)")
    elif result.promotion.alias == "champion":
        question = question or sample_question(result.golden_path, loaded.router.retrieval_intents)
        print_answer(_ask([question], project / params)[0])
    else:
        from components.serving.ask import failed_gates

        version = result.promotion.bundle_version
        console.print(f"[yellow]no new champion: bundle v{version} is held as challenger; failed gates: "
                      f"{escape(failed_gates('; '.join(result.promotion.reasons)))}[/]")
        console.print(f"next: try it with `ragops ask --version {version} QUESTION`, compare it with `ragops review`, "
                      f"and fix what failed (data, or the params of the step behind the metric) before `ragops run`")


@app.command()
def reindex(params: ParamsFile = Path("params.yaml"),
            project: Path = typer.Option(Path("."), help="project root (holds dvc.yaml and data/)")) -> None:
    """Reindex changed documents (no retraining): a new index version, evaluated with the champion's
    router and generator, promoted if its gates pass."""
    _load_params(project / params)  # bad params stop here, before the flow's imports
    from flows.reindex import reindex as reindex_flow

    _freeze_loaded()

    state = reindex_flow(project_path=str(project), params_path=str(params), return_state=True)
    if not state.is_completed():
        _fail_stopped("the reindex", state)
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
    loaded = _load_params(project / params)  # bad params stop here, before the flows' imports
    if work_pool and not os.environ.get("PREFECT_API_URL"):
        _fail("--work-pool needs a Prefect server that workers also reach: set PREFECT_API_URL "
              "(e.g. http://127.0.0.1:4200/api after `prefect server start`)")
    from components.settings import PROJECT_VARIABLE
    from flows.deploy import deploy as serve_deployments

    _freeze_loaded()

    os.environ[PROJECT_VARIABLE] = str(project.resolve())  # the only project its flow runs may work on
    _stop_cleanly_on_signals()
    try:
        serve_deployments(project, str(params), loaded, work_pool or None)
    except KeyboardInterrupt:
        console.print("ragops deploy: stopped")


def _stop_cleanly_on_signals() -> None:
    """SIGINT and SIGTERM end a long-running command through KeyboardInterrupt, so its clean-up
    runs (the watcher stops, a shared Weaviate server is released). A shell starting the command
    in the background makes it ignore SIGINT, and Python's default SIGTERM skips clean-up."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


@app.command()
def worker(pool: str = typer.Option(..., help="the Prefect work pool to take flow runs from"),
           pool_type: str = typer.Option("process", "--type", help="work pool type, created if missing"),
           project: Path = typer.Option(Path("."), help="the project whose flow runs this worker runs (the only one: "
                                        "a run whose project_path names another fails)")) -> None:
    """`prefect worker start` with ragops' offline library settings, which the flow runs it starts inherit."""
    if not os.environ.get("PREFECT_API_URL"):
        _fail("a worker needs the Prefect server `ragops deploy --work-pool` registered on: set PREFECT_API_URL")
    from components.settings import PROJECT_VARIABLE

    os.environ[PROJECT_VARIABLE] = str(project.resolve())  # the only project its flow runs may work on
    prefect = Path(sys.executable).parent / "prefect"
    os.execv(prefect, [str(prefect), "worker", "start", "--pool", pool, "--type", pool_type])


@app.command()
def rollback(params: ParamsFile = Path("params.yaml")) -> None:
    """Put back the champion pair (bundle version and its index version) that was live before the
    current one; the move is written to the promotion ledger."""
    from components.settings import Settings
    from components.registry.promotion import PromotionError, rollback as roll_back
    from components.registry.tracking import configure_mlflow

    loaded, settings = _load_params(params), Settings()
    configure_mlflow(settings)
    try:
        done = roll_back(settings, loaded)
    except PromotionError as exc:
        _fail(str(exc))
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

    loaded, settings = _load_params(params), Settings()
    configure_mlflow(settings)
    try:
        moved = approve(settings, loaded, version)
    except PromotionError as exc:
        _fail(str(exc))
    console.print(f"{loaded.promotion.bundle_name}: champion v{moved.previous_version or '-'} → v{version}")


@app.command()
def review(params: ParamsFile = Path("params.yaml")) -> None:
    """List the bundle versions newer than the champion: their gates and their metrics against the champion's."""
    from components.settings import Settings
    from components.registry.promotion import review as candidates_of
    from components.registry.tracking import configure_mlflow

    loaded = _load_params(params)
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

    for kind, path in fetch_models(_load_params(params).models, Settings().models_dir).items():
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

    loaded = _load_params(params)
    _freeze_loaded()
    ours = logging.getLogger("ragops")  # reloads and failures; uvicorn logs requests itself
    ours.setLevel(logging.INFO)
    ours.addHandler(RichHandler(console=console, show_path=False))
    console.print(f"ragops serve: listening on http://{host}:{port}, serving the champion of "
                  f"{loaded.promotion.bundle_name} (checked every {loaded.serve.reload_poll_seconds:g} s)")
    try:
        serve_champion(loaded.serve, loaded.promotion.bundle_name, Settings(), host, port)
    except WeaviateServerError as exc:
        _fail(f"{exc}; or set RAGOPS_WEAVIATE_URL to an external server")


if __name__ == "__main__":
    main()
