"""Evaluation stages: the bundle evaluated (or an earlier evaluation of the same inputs reused),
then registered with its review."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
import pandas as pd

from components.assistant import Manifest, load_assistant
from components.config import params_as_dict
from components.evaluation.bundle import evaluate_bundle, evaluated_golden
from components.evaluation.gates import compare_with_champion, decide_promotion
from components.evaluation.memo import ARTIFACT as MEMO_ARTIFACT
from components.evaluation.memo import GenerationMemo
from components.evaluation.metrics import Metric
from components.index.build import IndexVersion
from components.index.store import connect_weaviate
from components.registry.promotion import ACTED_VERDICTS, VERDICT_TAG
from components.registry.reuse import FINGERPRINT_TAG, evaluation_fingerprint, find_version
from components.registry.tracking import get_alias_version, lineage_tags, log_data_versions, register_pyfunc
from components.reporting.bundle import ABLATION_HEADER, BundleReview, ablation_rows, bundle_description, html_report
from components.reporting.charts import ablation_chart, deltas_chart, injection_chart
from components.stages.context import DataVersions, Evaluation, Promotion, RunContext, TrainedModel, defined_metrics

OUTCOMES_ARTIFACT = "evaluation/outcomes.json"  # per-question golden outcomes, paired with later candidates


def make_manifest(ctx: RunContext, router: TrainedModel, generator: TrainedModel, index: IndexVersion,
                  data: DataVersions) -> Manifest:
    p = ctx.params
    return Manifest.from_params(p, index.collection, router_version=f"models:/{router.name}/{router.version}",
                                generator_version=f"models:/{generator.name}/{generator.version}",
                                data_versions=dict(data.versions))


def _champion_artifacts(ctx: RunContext, *paths: str) -> tuple[str | None, list[dict | None]]:
    """The champion's version and the JSON artifacts `paths` of its evaluation run (None for one
    that run did not log: evaluated before ragops logged it)."""
    client = mlflow.MlflowClient()
    champion = get_alias_version(client, ctx.params.promotion.bundle_name, "champion")
    if champion is None:
        return None, [None] * len(paths)
    run_id = champion.tags.get("run_id")
    folders = {path.rsplit("/", 1)[0] for path in paths}
    logged = {f"{folder}/{Path(a.path).name}" for folder in folders
              for a in client.list_artifacts(run_id, folder)} if run_id else set()
    found = []
    for path in paths:
        if path not in logged:
            found.append(None)
            continue
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path,
                                                    dst_path=str(ctx.work_path / "champion"))
        found.append(json.loads(Path(local).read_text()))
    return str(champion.version), found


def evaluate_stage(ctx: RunContext, manifest: Manifest, router: TrainedModel, generator: TrainedModel,
                   index: IndexVersion) -> Evaluation:
    """The candidate as it would serve, then the decision: absolute gates and, when there is a
    champion, non-inferiority on the same golden questions. Answers the champion's evaluation
    generated for the same generator and conversation are reused (components/evaluation/memo.py)."""
    p = ctx.params
    champion, (theirs, generations) = _champion_artifacts(ctx, OUTCOMES_ARTIFACT, MEMO_ARTIFACT)
    reuse = bool(generations) and p.evaluation.reuse_answers
    memo = GenerationMemo.from_dict(generations if reuse else {}, f"bundle v{champion}'s evaluation" if reuse else "")
    golden = ctx.read_curated("golden.jsonl")
    golden = evaluated_golden(golden, p.evaluation.max_questions)  # a smaller set keeps the golden set's mix
    with connect_weaviate(ctx.settings) as client:
        # the fine-tuned generator and the base model (the ablation's and general prompts' baseline)
        assistant = load_assistant(manifest, router.adapter_path, generator.adapter_path, ctx.settings, client,
                                   p.project.device, convert=(True, False))
        assistant.memo = memo
        result = evaluate_bundle(assistant, golden, ctx.read_curated("general_prompts.jsonl"), index, p.evaluation,
                                 p.project.seed, ctx.read_curated("redteam.jsonl"), p.index)
    print(memo.summary())
    deltas = (None if theirs is None else
              compare_with_champion(result.outcomes, theirs, resamples=p.evaluation.bootstrap_resamples,
                                    seed=p.project.seed))
    decision = decide_promotion(result.metrics, p.evaluation.gates, p.evaluation.non_inferiority, deltas, champion,
                                p.evaluation.min_samples)
    return Evaluation(decision, manifest, result, deltas, champion, index, memo)


def _evaluation_fingerprint(ctx: RunContext, manifest: Manifest) -> str:
    """Of the candidate and everything its verdict depends on (gates, evaluation settings, whether
    a passing bundle waits for approval)."""
    settings = {**params_as_dict(ctx.params.evaluation), "require_approval": ctx.params.promotion.require_approval}
    return evaluation_fingerprint(manifest.to_json(), settings, ctx.params.project.seed)


@dataclass(frozen=True)
class EarlierEvaluation:
    """A bundle version already evaluated on exactly this candidate: its metrics and standing."""

    metrics: dict[str, Metric]
    promotion: Promotion


def earlier_evaluation_stage(ctx: RunContext, manifest: Manifest) -> EarlierEvaluation | None:
    """The bundle version evaluated on the same manifest, evaluation settings and code, if its
    verdict still holds: its promotion step acted on it, and it is the champion or was compared
    with the current champion. Evaluating it again would repeat the same answers and decision."""
    p = ctx.params
    client = mlflow.MlflowClient()
    found = find_version(client, p.promotion.bundle_name, _evaluation_fingerprint(ctx, manifest))
    if found is None or not found.tags.get(VERDICT_TAG, "").startswith(ACTED_VERDICTS):
        return None  # never acted on (its run stopped before promoting): evaluate again
    champion = get_alias_version(client, p.promotion.bundle_name, "champion")
    champion_version = str(champion.version) if champion else "none"  # the SQLite registry hands out ints
    is_champion = champion_version == str(found.version)
    if not is_champion and found.tags.get("compared_with_champion") != champion_version:
        return None  # the champion moved since: the comparison must be redone
    logged = client.get_run(found.tags["run_id"]).data.metrics
    metrics = {name.removesuffix("_samples"): Metric(logged.get(name.removesuffix("_samples"), math.nan), int(count))
               for name, count in logged.items() if name.endswith("_samples")}  # NaN metrics log only their count
    verdict = "it is the champion" if is_champion else found.tags[VERDICT_TAG]
    reason = (f"unchanged: bundle v{found.version} was evaluated on the same models, index version, data and "
              f"evaluation settings ({verdict}); nothing evaluated or promoted")
    print(reason)
    failed = [found.tags.get("gate_reasons", "no gate record")] if found.tags.get("gates_passed") != "True" else []
    return EarlierEvaluation(metrics, Promotion(str(found.version), "champion" if is_champion else "challenger",
                                                found.tags["collection"], [reason], failed))


def _run_link(run_id: str) -> str:
    run = mlflow.MlflowClient().get_run(run_id)
    return f"#/experiments/{run.info.experiment_id}/runs/{run_id}"


def _logged_metrics(evaluation: Evaluation) -> dict[str, float]:
    """What a bundle's evaluation run logs: every defined metric with its sample count, the paired
    differences from the champion, and how many answers were reused."""
    metrics = defined_metrics({name: metric.value for name, metric in evaluation.metrics.items()})
    metrics.update({f"{name}_samples": metric.samples for name, metric in evaluation.metrics.items()})
    for name, delta in (evaluation.deltas or {}).items():
        if delta.samples:
            metrics.update({f"vs_champion_{name}": delta.value, f"vs_champion_{name}_low": delta.low,
                            f"vs_champion_{name}_high": delta.high})
    if evaluation.memo is not None:
        metrics.update(answers_reused=sum(evaluation.memo.reused.values()),
                       answers_generated=sum(evaluation.memo.generated.values()),
                       latency_generation_times_reused=evaluation.memo.timings_reused)
    return metrics


def register_bundle_stage(ctx: RunContext, evaluation: Evaluation, router: TrainedModel,
                          generator: TrainedModel) -> str:
    """Register the candidate bundle with its evaluation, whatever the decision: metrics with
    sample counts, per-question outcomes, answers, ablation table, charts, the HTML report and a
    description a reviewer can act on."""
    p, result = ctx.params, evaluation.result
    manifest_path = ctx.work_path / "manifest.json"
    manifest_path.write_text(evaluation.manifest.to_json())
    metrics = _logged_metrics(evaluation)
    with mlflow.start_run(run_name="evaluate-bundle") as run:
        mlflow.log_dict(result.outcomes, OUTCOMES_ARTIFACT)
        if evaluation.memo is not None:
            mlflow.log_dict(evaluation.memo.to_dict(), MEMO_ARTIFACT)
        mlflow.log_dict(result.answers, "evaluation/answers.json")
        mlflow.log_dict(result.general_answers, "evaluation/general_prompts.json")
        mlflow.log_dict(result.freshness, "evaluation/freshness_probes.json")
        mlflow.log_dict(result.injection, "evaluation/prompt_injection.json")
        mlflow.log_dict({"changed": list(evaluation.index.changed_docs), "deleted": list(evaluation.index.deleted_docs)},
                        "evaluation/document_changes.json")
        mlflow.log_table(pd.DataFrame(ablation_rows(result.ablation), columns=ABLATION_HEADER), "evaluation/ablation.json")
        charts = {"ablation": ablation_chart(result.ablation)}
        if result.injection:
            charts["prompt injection"] = injection_chart(result.injection)
        if evaluation.deltas:
            charts["vs champion"] = deltas_chart(evaluation.deltas, p.evaluation.non_inferiority, evaluation.champion)
        for name, fig in charts.items():
            mlflow.log_figure(fig, f"charts/{name.replace(' ', '_')}.png")
        review = BundleReview(
            p.promotion.bundle_name, f"{router.name} v{router.version}", f"{generator.name} v{generator.version}",
            evaluation.manifest.collection, evaluation.decision, evaluation.metrics, evaluation.deltas,
            evaluation.champion, dict(p.evaluation.non_inferiority), result.ablation, evaluation.manifest.data_versions,
            evaluation.index.changed_docs, evaluation.index.deleted_docs, result.freshness_source,
            {label: _run_link(run_id) for label, run_id in (("evaluation", run.info.run_id),
                                                            ("router training", router.run_id),
                                                            ("generator training", generator.run_id)) if run_id},
            result.injection, ctx.quarantined())
        mlflow.log_text(html_report(review, charts, result.freshness, result.general_answers), "report/report.html")
        for fig in charts.values():
            plt.close(fig)
        # The bundle is built from every curated dataset (directly or through its models).
        log_data_versions(evaluation.manifest.data_versions, ctx.curated_path, "evaluation")
        gate_reasons = "; ".join(evaluation.decision.failures or evaluation.decision.reasons)
        mlflow.set_tags({"gates_passed": str(evaluation.decision.passed), "collection": evaluation.manifest.collection,
                         "compared_with_champion": evaluation.champion or "none"})
        version = register_pyfunc(
            p.promotion.bundle_name, "bundle", {"manifest": str(manifest_path), "router_adapter": router.adapter_path,
                                      "generator_adapter": generator.adapter_path}, {},
            bundle_description(review),
            {"gates_passed": evaluation.decision.passed, "gate_reasons": gate_reasons,
             "collection": evaluation.manifest.collection, "router_version": router.version,
             "generator_version": generator.version, "run_id": run.info.run_id,
             "compared_with_champion": evaluation.champion or "none",
             FINGERPRINT_TAG: _evaluation_fingerprint(ctx, evaluation.manifest),
             **lineage_tags(evaluation.manifest.data_versions)},
            metrics)
    return version.version
