"""The pipeline's steps as Prefect tasks, with the retries and timeouts of params.yaml.

Each step wraps one stage of components/stages/. A step is retried only when its failure is
transient (flows/transient.py: a service did not answer), with doubling delays; bad data,
bad params and bugs fail the run at once with their own message. Results are not cached by
Prefect: reuse of trained models and earlier evaluations is decided by fingerprints in the
registry (components/registry/reuse.py), which outlive Prefect's database.

    >>> steps = configure_steps(OrchestrationConfig())  # doctest: +SKIP
    >>> data = steps.curate(ctx)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import make_dataclass

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.task_engine import TaskRunTimeoutError

from components import stages
from components.config import STEPS, OrchestrationConfig
from components.memory import peak_memory
from flows.transient import is_transient

STAGES = {
    "curate": (stages.curate_stage, "curate-and-version"),
    "validate": (stages.validate_stage, "validate-data"),
    "train_router": (stages.router_stage, "train-router"),
    "train_generator": (stages.generator_stage, "train-generator"),
    "registered_models": (stages.registered_models, "load-registered-models"),
    "build_index": (stages.index_stage, "build-index-version"),
    "find_earlier_evaluation": (stages.earlier_evaluation_stage, "find-earlier-evaluation"),
    "evaluate": (stages.evaluate_stage, "evaluate-bundle"),
    "register_bundle": (stages.register_bundle_stage, "register-bundle"),
    "promote": (stages.promote_stage, "promote"),
}
if tuple(STAGES) != STEPS:  # a step added to one list and not the other
    raise ImportError(f"flows/steps.py STAGES {tuple(STAGES)} must map exactly components.config.STEPS {STEPS}")


def retry_if_transient(task: Task, task_run, state) -> bool:
    """Prefect's retry condition: retry only a failure that says a service was unreachable. A step
    past its timeout is not retried (Prefect's timeout error is a TimeoutError, as a network one is)."""
    failure = state.result(raise_on_failure=False)
    if isinstance(failure, TaskRunTimeoutError):
        return False
    if isinstance(failure, BaseException) and is_transient(failure):
        print(f"{task.name}: transient failure, retrying: {type(failure).__name__}: {failure}")
        return True
    return False


# One Prefect task per step of components.config.STEPS, as attributes (steps.curate, ...).
Steps = make_dataclass("Steps", [(step, Task) for step in STEPS], frozen=True)


def _with_peak_memory(fn: Callable, name: str) -> Callable:
    """`fn`, printing the step's time and peak resident memory when it ends (components/memory.py)."""
    @functools.wraps(fn)
    def step(*args, **kwargs):
        with peak_memory(name):
            return fn(*args, **kwargs)
    return step


def configure_steps(config: OrchestrationConfig, stage_table: Mapping[str, tuple[Callable, str]] = STAGES) -> Steps:
    """The steps as tasks with params.yaml's retries and timeouts. `stage_table` maps each step to
    its function and task name (the pipeline's stages; a test puts failing functions in it)."""
    delays = [config.retry_delay_seconds * 2 ** i for i in range(config.retries)]
    return Steps(**{
        step: task(_with_peak_memory(fn, name), name=name, cache_policy=NO_CACHE, retries=config.retries,
                   retry_delay_seconds=delays or 0, retry_condition_fn=retry_if_transient,
                   timeout_seconds=60 * config.timeout_minutes[step] if step in config.timeout_minutes else None)
        for step, (fn, name) in stage_table.items()})
