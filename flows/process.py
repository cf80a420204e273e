"""The process a `ragops` command runs in: the libraries' environment, set before they load; a
long-running command's clean stop on SIGINT and SIGTERM; and an exit that skips the interpreter's
teardown of what torch, transformers, MLflow and Prefect loaded."""

from __future__ import annotations

import atexit
import gc
import os
import signal
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path


def set_environment() -> None:
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
        # weaviate-client retries a batch whose server does not answer 10 times, waiting 1, 2, ...
        # 1024 s: a server that died mid-build held the build for 34 min. 4 gives up after ~31 s;
        # the step's own retries (orchestration) and the run's report take it from there.
        "WEAVIATE_BATCH_MAX_RETRIES": "4",
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


def run_and_exit(command: Callable[[], object]) -> None:
    """Run the command, then exit without tearing the interpreter down.

    What a normal exit does for the program still happens, in its order: threads that are not
    daemons are joined, atexit handlers run (Prefect's temporary server stops, logging flushes),
    the streams are flushed. What is skipped is the interpreter's last garbage collection of
    everything torch, transformers, MLflow and Prefect loaded, for a process that ends anyway:
    3.6 s of a 37-s tiny `ragops reindex` on a 2-core AMD EPYC. An uncaught exception leaves the
    normal way, with its traceback."""
    try:
        command()
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


def freeze_loaded() -> None:
    """Leave what is loaded by now (modules, classes, constants: millions of objects from torch,
    transformers, MLflow and Prefect, alive as long as the process) out of the garbage collector's
    full passes; objects still go when nothing refers to them. On a tiny reindex, 11 full passes
    took 2.2 s of 37 (2-core AMD EPYC)."""
    gc.freeze()


def stop_process_group(process: subprocess.Popen, first: signal.Signals = signal.SIGINT, timeout_s: float = 60) -> None:
    """Stop a command started in its own session (a `ragops serve`, a Prefect server): `first` to its
    whole process group (SIGINT is the Ctrl-C a long-running ragops command stops cleanly on, see
    below), SIGKILL to the group after `timeout_s`; returns once the command has exited."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, first)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def stop_cleanly_on_signals() -> None:
    """SIGINT and SIGTERM end a long-running command through KeyboardInterrupt, so its clean-up
    runs (the watcher stops, a shared Weaviate server is released). A shell starting the command
    in the background makes it ignore SIGINT, and Python's default SIGTERM skips clean-up."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
