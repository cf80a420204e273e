"""The harvest flow: reviewed feedback into versioned data.

    ragops feedback harvest         # the CLI entry point (flows/feedback_cli.py)
    ragops-harvest/harvest          # the deployment: on schedule.harvest_cron and on demand

Accepted review items (components/registry/review_queue.py) not harvested yet become raw rows in
`<raw_dir>/harvested/` (personal data scrubbed, with provenance), then curate → validate → DVC
version, as every flow starts. An item that cannot join the data as accepted (an unknown document,
a question the golden set or training data already holds) is left out and tagged on its trace
with why; if validation still fails, the rows are taken out again, the data stays at the version
before the harvest, and the batch's items go back to the review queue with the failure. Harvested
traces are tagged with the data versions that hold them. Once `feedback.retrain_after_items` items
have been harvested since the last request, the flow emits `ragops.feedback.harvested`, which
triggers the retrain deployment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from prefect import flow

from components import stages
from components.data.harvest import append_harvest, harvest_rows, restore_files, screen
from components.registry.review_queue import accepted_items, mark_harvested, mark_left_out
from components.settings import file_lock
from flows.events import emit_feedback_harvested
from flows.pipeline import run_project
from flows.run_names import rename_current_run
from flows.steps import configure_steps
from flows.transient import is_transient


@dataclass(frozen=True)
class HarvestResult:
    harvested: list[str]  # trace ids now in the data
    rows: dict[str, int]  # dataset -> rows added
    left_out: dict[str, str]  # trace id -> why
    scrubbed: dict[str, int]  # entity type -> occurrences replaced
    data_versions: dict[str, str] = field(default_factory=dict)
    pending: int = 0  # harvested items since the last retrain request
    retrain_requested: bool = False

    def summary(self) -> str:
        lines = [f"harvested {len(self.harvested)} reviewed item(s): "
                 + (", ".join(f"{n} row(s) into {name}" for name, n in self.rows.items() if n) or "no rows")]
        lines += [f"  left out {trace_id}: {why}" for trace_id, why in self.left_out.items()]
        if self.scrubbed:
            lines.append("  personal data replaced: " + ", ".join(f"{n} {kind}" for kind, n in self.scrubbed.items()))
        if self.data_versions:
            lines.append("  data versions: " + ", ".join(f"{n} md5 {md5}" for n, md5 in self.data_versions.items()))
        if self.retrain_requested:
            lines.append("  retrain requested (feedback.retrain_after_items reached)")
        elif self.harvested:
            lines.append(f"  {self.pending} harvested item(s) wait for the next retrain")
        return "\n".join(lines)


@flow(name="ragops-harvest", flow_run_name="harvest-{trigger}", log_prints=True)
def harvest(project_path: str = ".", params_path: str = "params.yaml", trigger: str = "manual") -> HarvestResult:
    ctx = stages.make_context(*run_project(project_path, params_path))
    step = configure_steps(ctx.params.orchestration)
    items = accepted_items()
    left_out = screen(items, ctx.curated_path, ctx.params.router.intents) if items else {}
    mark_left_out(left_out)
    for trace_id, why in left_out.items():
        print(f"left out {trace_id}: {why}")
    rows = harvest_rows([item for item in items if item.trace_id not in left_out], ctx.params)
    if not rows.trace_ids:
        rename_current_run(f"harvest ({trigger}): nothing to harvest")
        return HarvestResult([], {}, left_out, {})
    before = append_harvest(ctx.project_path / ctx.params.data.raw_dir, rows)
    try:
        data = step.curate(ctx)
        step.validate(ctx, data)
    except BaseException as exc:
        restore_files(before)  # the harvest's rows out again: the data is back to its version before it
        step.curate(ctx)
        print("the harvested rows were taken out again; the data is at its version before this harvest")
        if isinstance(exc, Exception) and not is_transient(exc):  # a service that was down: the rerun retries
            _left_out_after(rows.trace_ids, exc)
        raise
    mark_harvested(rows.trace_ids, data.versions)
    pending, requested = _count_towards_retrain(ctx, len(rows.trace_ids), data.versions)
    result = HarvestResult(rows.trace_ids, {name: len(r) for name, r in rows.rows.items()}, left_out,
                           dict(rows.scrubbed), data.versions, pending, requested)
    rename_current_run(f"harvest ({trigger}): {len(rows.trace_ids)} item(s)"
                       + (", retrain requested" if requested else f", {pending} waiting for a retrain"))
    return result


def _left_out_after(trace_ids: list[str], failure: Exception) -> None:
    """The batch's items back to the review queue with why, so the next harvest does not stop on them
    again (the whole batch: validation names records, not which decision made them)."""
    why = (f"the harvest of its batch of {len(trace_ids)} failed: {' '.join(str(failure).splitlines()[:2])[:400]}; "
           f"decide it again")
    mark_left_out(dict.fromkeys(trace_ids, why))


def _count_towards_retrain(ctx: stages.RunContext, harvested: int, versions: dict[str, str]) -> tuple[int, bool]:
    """Items harvested since the last retrain request (kept under RAGOPS_HOME), and whether this
    harvest reached feedback.retrain_after_items and requested one."""
    threshold = ctx.params.feedback.retrain_after_items
    path = ctx.settings.home / "feedback" / "pending.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.with_suffix(".lock")):
        pending = (json.loads(path.read_text())["items"] if path.exists() else 0) + harvested
        requested = threshold > 0 and pending >= threshold
        if requested:
            emit_feedback_harvested(pending, versions)
        path.write_text(json.dumps({"items": 0 if requested else pending}))
    return (0 if requested else pending), requested
