"""Data stages: curate (DVC) and validate (Great Expectations)."""

from __future__ import annotations

import json

import mlflow

from components.data.validation import DataValidationError, ValidationReport, validate_curated
from components.data.versioning import (keep_failed_batch, read_good_versions, record_good_versions, reproduce_and_push,
                                        stage_file)
from components.registry.tracking import log_data_versions
from components.stages.context import DataVersions, RunContext


def curate_stage(ctx: RunContext) -> DataVersions:
    remote = ctx.settings.dvc_remote_url or str((ctx.settings.home / "dvc-remote").resolve())
    versions, ran = reproduce_and_push(ctx.project_path, remote, stages_file=_stages_file(ctx))
    return DataVersions(versions, ran)


def validate_stage(ctx: RunContext, data: DataVersions) -> ValidationReport:
    report = validate_curated(ctx.curated_path, ctx.params, ctx.work_path / "data-docs")
    with mlflow.start_run(run_name="validate-data"):
        log_data_versions(data.versions, ctx.curated_path, context="validation")
        mlflow.log_metrics({"validation_success": float(report.success),
                            "validation_failures": float(len(report.failures)),
                            "quarantined_documents": float(len(report.quarantined))})
        if (ctx.curated_path / "quarantine.jsonl").is_file():
            mlflow.log_artifact(str(ctx.curated_path / "quarantine.jsonl"), "injection-scan")
        mlflow.log_artifacts(str(report.docs_index.parent), "data-docs")
        if not report.success:
            kept = keep_failed_batch(ctx.curated_path, list(data.versions), ctx.work_path / "failed-batch")
            mlflow.log_artifacts(str(kept), "failed-batch")
    for doc_id, found in report.quarantined.items():
        print(f"validate: quarantined {doc_id} (not indexed): {found}. A reviewer releases it with an allowlist.jsonl "
              f"entry in data.raw_dir (its line is in the curate output and {ctx.curated_path / 'quarantine.jsonl'})")
    good_record = ctx.settings.home / "last-good-data"
    stages_file = _stages_file(ctx)
    if not report.success:
        good = read_good_versions(good_record, stages_file)
        fallback = (f"The last data that passed validation: {json.dumps(good[0])}; restore it with `cp {good[1]} "
                    f"{stages_file.parent / 'dvc.lock'} && dvc checkout {stages_file.relative_to(ctx.project_path)}:curate` "
                    f"in {ctx.project_path} (the DVC cache holds it; `dvc pull` first if it was cleared)."
                    if good else "No earlier data version passed validation yet.")
        raise DataValidationError(
            f"curated data failed validation; nothing was trained or indexed, the champion is unchanged.\n"
            f"{report.describe()}\nData Docs: {report.docs_index}\nFailing batch kept in {kept}. {fallback}\n"
            f"Fix the raw data named above and rerun."
        )
    record_good_versions(good_record, stages_file, data.versions)
    return report


def _stages_file(ctx: RunContext):
    return stage_file(ctx.project_path, ctx.params_path or ctx.project_path / "params.yaml", ctx.params.data.curated_dir)
