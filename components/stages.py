"""Pipeline stages: each composes components into one step and logs it to MLflow.

Flows (flows/pipeline.py) only call these in order. A stage takes the run context and the
results of earlier stages and returns a small frozen result.

    >>> ctx = make_context(Path("."), Path("params.yaml"))  # doctest: +SKIP
    >>> data = curate_stage(ctx)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
import pandas as pd

from components.assistant import Manifest, load_assistant
from components.config import Params, Settings, load_params, params_as_dict, redacted
from components.data.versioning import (keep_failed_batch, read_good_versions, record_good_versions,
                                        reproduce_and_push, stage_file)
from components.evaluation.bundle import BundleEvaluation, evaluate_bundle, spread
from components.reporting.bundle import ABLATION_HEADER, ablation_rows, bundle_description, BundleReview, html_report
from components.reporting.charts import ablation_chart, deltas_chart, injection_chart
from components.evaluation.metrics import Metric, Outcomes, PairedDelta, compare_behaviour
from components.evaluation.gates import Decision, compare_with_champion, decide_promotion
from components.index.build import IndexVersion, build_index_version
from components.index.embedding import load_embedder
from components.index.store import connect_weaviate
from components.models.resolve import resolve_model
from components.registry.promotion import (
    ACTED_VERDICTS,
    VERDICT_TAG,
    close_unacted_versions,
    finish_interrupted_move,
    ledger_path,
    promote,
)
from components.reporting.models import generator_description, router_description
from components.registry.reuse import FINGERPRINT_TAG, evaluation_fingerprint, find_version, training_fingerprint
from components.registry.tracking import (
    append_ledger, configure_mlflow, download_model_artifact, get_alias_version, lineage_tags, log_data_versions,
    log_history, log_params_section, register_pyfunc, set_alias,
)
from components.reporting.charts import log_confusion_chart, log_loss_chart
from components.training.answerability import save_check, train_answerability
from components.training.checkpoint import prune_jobs
from components.training.generator import (answers_with_and_without_adapter, save_generator, split_holdout,
                                           train_generator)
from components.training.planted_instructions import plant_instructions, templates_digest
from components.training.router import save_router, train_router
from components.data.validation import DataValidationError, ValidationReport, validate_curated

EXPERIMENT = "ragops"
OUTCOMES_ARTIFACT = "evaluation/outcomes.json"  # per-question golden outcomes, paired with later candidates


@dataclass(frozen=True)
class RunContext:
    project_path: Path
    params: Params
    settings: Settings
    work_path: Path
    params_path: Path | None = None  # the params file of the run (None: the project's params.yaml)

    @property
    def curated_path(self) -> Path:
        return self.project_path / self.params.data.curated_dir

    def read_curated(self, name: str) -> list[dict]:
        return [json.loads(line) for line in (self.curated_path / name).read_text(encoding="utf-8").splitlines() if line]


@dataclass(frozen=True)
class DataVersions:
    versions: dict[str, str]
    reproduced: bool


@dataclass(frozen=True)
class TrainedModel:
    name: str
    version: str
    adapter_path: str
    metrics: dict[str, float]
    run_id: str
    reused: bool = False  # an earlier version trained from the same inputs


@dataclass(frozen=True)
class Evaluation:
    decision: Decision
    manifest: Manifest
    result: BundleEvaluation
    deltas: dict[str, PairedDelta] | None  # challenger minus champion; None without a champion
    champion: str | None
    index: IndexVersion

    @property
    def metrics(self) -> dict[str, Metric]:
        return self.result.metrics


@dataclass(frozen=True)
class Promotion:
    bundle_version: str
    alias: str
    collection: str
    reasons: list[str]


def make_context(project_path: Path, params_path: Path, settings: Settings | None = None) -> RunContext:
    settings = settings or Settings()
    params = load_params(params_path)
    work_path = (settings.home / "runs" / uuid.uuid4().hex[:12]).resolve()
    work_path.mkdir(parents=True, exist_ok=True)
    configure_mlflow(settings, EXPERIMENT)
    return RunContext(project_path.resolve(), params, settings, work_path, params_path.resolve())


def curate_stage(ctx: RunContext) -> DataVersions:
    remote = ctx.settings.dvc_remote_url or str((ctx.settings.home / "dvc-remote").resolve())
    stages_file = stage_file(ctx.project_path, ctx.params_path or ctx.project_path / "params.yaml",
                             ctx.params.data.curated_dir)
    versions, ran = reproduce_and_push(ctx.project_path, remote, stages_file=stages_file)
    return DataVersions(versions, ran)


def validate_stage(ctx: RunContext, data: DataVersions) -> ValidationReport:
    report = validate_curated(ctx.curated_path, ctx.params, ctx.work_path / "data-docs")
    with mlflow.start_run(run_name="validate-data"):
        log_data_versions(data.versions, ctx.curated_path, context="validation")
        mlflow.log_metrics({"validation_success": float(report.success),
                            "validation_failures": float(len(report.failures))})
        mlflow.log_artifacts(str(report.docs_index.parent), "data-docs")
        if not report.success:
            kept = keep_failed_batch(ctx.curated_path, list(data.versions), ctx.work_path / "failed-batch")
            mlflow.log_artifacts(str(kept), "failed-batch")
    good_record = ctx.settings.home / "last-good-data.json"
    if not report.success:
        good = read_good_versions(good_record)
        fallback = (f"The last data that passed validation: {json.dumps(good)}; restore it with "
                    f"`git checkout -- dvc.lock && dvc checkout` (the DVC cache and remote hold it)."
                    if good else "No earlier data version passed validation yet.")
        raise DataValidationError(
            f"curated data failed validation; nothing was trained or indexed, the champion is unchanged.\n"
            f"{report.describe()}\nData Docs: {report.docs_index}\nFailing batch kept in {kept}. {fallback}\n"
            f"Fix the raw data named above and rerun."
        )
    record_good_versions(good_record, data.versions)
    return report


def _log_training_inputs(ctx: RunContext, data: DataVersions, section: str, model_key: str, dataset: str) -> None:
    """Every knob of the params section, the base model reference and the training data version."""
    log_params_section(section, params_as_dict(getattr(ctx.params, section)))
    mlflow.log_param(f"models.{model_key}", getattr(ctx.params.models, model_key))
    log_data_versions({dataset: data.versions[dataset]}, ctx.curated_path, "training")


def _defined(metrics: dict[str, float]) -> dict[str, float]:
    """NaN means undefined (e.g. precision of an intent never predicted): it is left out, not logged as 0."""
    return {k: v for k, v in metrics.items() if not math.isnan(v)}


def _reuse_trained(ctx: RunContext, name: str, fingerprint: str) -> TrainedModel | None:
    """The registered version trained from exactly these inputs, its adapter downloaded, or None."""
    found = find_version(mlflow.MlflowClient(), name, fingerprint)
    if found is None:
        return None
    adapter = download_model_artifact(name, found.version, "adapter", ctx.work_path / f"{name}-v{found.version}")
    metrics = mlflow.MlflowClient().get_run(found.run_id).data.metrics if found.run_id else {}
    print(f"{name}: reusing v{found.version}, trained from the same data, params and code (fingerprint {fingerprint})")
    return TrainedModel(name, found.version, str(adapter), dict(metrics), found.run_id or "", reused=True)


def _training_fingerprint(ctx: RunContext, data: DataVersions, kind: str, dataset: str, model_refs: dict) -> str:
    p = ctx.params
    return training_fingerprint(kind, params_as_dict(getattr(p, kind)), model_refs, {dataset: data.versions[dataset]},
                                p.project.seed, p.project.device)


def router_stage(ctx: RunContext, data: DataVersions) -> TrainedModel:
    """Train, log and register the router, or reuse the version trained from the same inputs."""
    p = ctx.params
    fingerprint = _training_fingerprint(ctx, data, "router", "router.jsonl", {"encoder": p.models.encoder})
    if reused := _reuse_trained(ctx, p.promotion.router_name, fingerprint):
        return reused
    encoder = resolve_model(p.models.encoder, ctx.settings.models_dir)
    with mlflow.start_run(run_name="train-router") as run:
        _log_training_inputs(ctx, data, "router", "encoder", "router.jsonl")
        tic = time.perf_counter()
        result = train_router(ctx.read_curated("router.jsonl"), encoder, p.router, p.project.seed, p.project.device)
        seconds = time.perf_counter() - tic
        log_history(result.history)
        log_loss_chart(result.history, "router training loss", "charts/router_loss.png")
        log_confusion_chart(result.confusion, list(result.intents),
                            f"router on {result.test_size} held-out queries", "charts/router_confusion.png")
        mlflow.log_dict({"intents": list(result.intents), "confusion": result.confusion, "metrics": result.metrics},
                        "evaluation/router_heldout.json")
        adapter = save_router(result, ctx.work_path / "router-adapter")
        description = router_description(result, p, data.versions["router.jsonl"], seconds, run.info.run_id)
        version = register_pyfunc(
            p.promotion.router_name, "router", {"adapter": str(adapter)},
            {"encoder": p.models.encoder, "intents": list(p.router.intents), "max_length": p.router.max_length},
            description, {**lineage_tags(data.versions), "run_id": run.info.run_id, "method": p.router.method,
                          FINGERPRINT_TAG: fingerprint},
            _defined({**result.metrics, "router_test_samples": result.test_size, "train_seconds": seconds}))
    return TrainedModel(p.promotion.router_name, version.version, str(adapter), result.metrics, run.info.run_id)


def generator_stage(ctx: RunContext, data: DataVersions) -> TrainedModel:
    """Fine-tune, log and register the generator, or reuse the version trained from the same inputs."""
    p = ctx.params
    # The answerability check trained beside the adapter starts from the encoder.
    refs = {"generator": p.models.generator, **({"encoder": p.models.encoder} if p.generator.refusal_check else {}),
            **({"planted_instructions": templates_digest()} if p.generator.planted_instructions else {})}
    fingerprint = _training_fingerprint(ctx, data, "generator", "generator.jsonl", refs)
    if reused := _reuse_trained(ctx, p.promotion.generator_name, fingerprint):
        return reused
    base = resolve_model(p.models.generator, ctx.settings.models_dir)
    checkpoints = ctx.settings.home / "checkpoints" / "generator"
    with mlflow.start_run(run_name="train-generator") as run:
        _log_training_inputs(ctx, data, "generator", "generator", "generator.jsonl")
        tic = time.perf_counter()
        curated = ctx.read_curated("generator.jsonl")
        # The generator learns from planted contexts that documents are data; the answerability
        # check decides whether a chunk answers the question, and trains on the curated contexts.
        examples, planted = plant_instructions(curated, p.generator.planted_instructions, p.project.seed)
        mlflow.log_metric("planted_instruction_examples", planted)
        result = train_generator(examples, base, p.generator, p.project.seed,
                                 p.project.device, checkpoint_root=checkpoints)
        seconds = time.perf_counter() - tic
        prune_jobs(checkpoints, keep=3)
        log_history(result.history, result.evals)
        if result.history:
            log_loss_chart(result.history, "generator loss", "charts/generator_loss.png", result.evals)
        behaviour = None
        if result.holdout:
            tuned, base_answers = answers_with_and_without_adapter(result, result.holdout, p.generator)
            behaviour = compare_behaviour(result.holdout, tuned, base_answers, seed=p.project.seed,
                                          refusals=(p.generator.refusal_reply,))
            mlflow.log_dict([{"id": ex["id"], "question": ex["question"], "reference": ex["answer"], "tuned": t,
                              "base": b} for ex, t, b in zip(result.holdout, tuned, base_answers)],
                            "evaluation/generator_heldout_answers.json")
        heldout = behaviour.as_metrics() if behaviour else {}
        check = None
        if p.generator.refusal_check:
            train, holdout = split_holdout(curated, p.generator.holdout_examples, p.project.seed)
            check = train_answerability(train, holdout, resolve_model(p.models.encoder, ctx.settings.models_dir),
                                        p.generator, p.project.seed, p.project.device)
            heldout.update({**check.metrics, "check_training_pairs": check.pairs})
            seconds = time.perf_counter() - tic
        mlflow.log_param("generator.resolved_precision", result.precision)
        adapter = save_generator(result, ctx.work_path / "generator-adapter")
        if check is not None:
            save_check(check.check, adapter)
        description = generator_description(result, p, data.versions["generator.jsonl"], seconds, run.info.run_id,
                                            behaviour, planted)
        version = register_pyfunc(
            p.promotion.generator_name, "generator", {"adapter": str(adapter)},
            {"base_model": p.models.generator, "max_new_tokens": p.generator.max_new_tokens},
            description, {**lineage_tags(data.versions), "run_id": run.info.run_id, "base_model": p.models.generator,
                          FINGERPRINT_TAG: fingerprint},
            _defined({**heldout, "best_eval_loss": result.best_eval_loss, "best_step": result.best_step,
                      "train_seconds": seconds, "resumed_from_step": result.resumed_from_step,
                      "skipped_too_long": result.skipped_too_long}))
    return TrainedModel(p.promotion.generator_name, version.version, str(adapter),
                        {"best_eval_loss": result.best_eval_loss, **heldout}, run.info.run_id)


def registered_models(ctx: RunContext, router_version: str = "champion",
                      generator_version: str = "champion") -> tuple[TrainedModel, TrainedModel]:
    """A registered router and generator with their adapters downloaded: the versions named, or
    ("champion") those of the champion bundle. A reindex evaluates the new index with the models
    already serving; an on-demand evaluation can pair any registered versions."""
    p = ctx.params
    client = mlflow.MlflowClient()
    champion = get_alias_version(client, p.promotion.bundle_name, "champion")
    wanted = {p.promotion.router_name: (router_version, "router_version"),
              p.promotion.generator_name: (generator_version, "generator_version")}
    models = []
    for name, (version, tag) in wanted.items():
        if version == "champion":
            if champion is None:
                raise LookupError(f"no champion of {p.promotion.bundle_name} in {redacted(ctx.settings.tracking_uri)} to take "
                                  f"the {name} version from; run `ragops run` first or name a version")
            version = champion.tags[tag]
        adapter = download_model_artifact(name, version, "adapter", ctx.work_path / f"{name}-v{version}")
        run_id = client.get_model_version(name, version).run_id or ""
        models.append(TrainedModel(name, version, str(adapter), {}, run_id, reused=True))
    return models[0], models[1]


def index_stage(ctx: RunContext, data: DataVersions) -> IndexVersion:
    """A new index version with only the changed documents embedded (or the live one, if nothing
    changed). The live version is the base, so a promotion an earlier run left half done is settled first."""
    p = ctx.params
    finish_interrupted_move(ctx.settings, p)
    docs = ctx.read_curated("documents.jsonl")
    embedder = load_embedder(resolve_model(p.models.encoder, ctx.settings.models_dir), p.project.device)
    with mlflow.start_run(run_name="build-index") as run:
        log_params_section("index", params_as_dict(p.index))
        mlflow.log_param("models.encoder", p.models.encoder)
        log_data_versions({"documents.jsonl": data.versions["documents.jsonl"]}, ctx.curated_path, "index")
        with connect_weaviate(ctx.settings) as client:
            built = build_index_version(client, docs, embedder, p.index, encoder=p.models.encoder)
        mlflow.set_tags({"collection": built.collection, "base_collection": str(built.base),
                         "new_version": str(built.new), "plan": built.plan, "run_id": run.info.run_id})
        mlflow.log_metrics({"documents": built.documents, "chunks": built.chunks, "seconds": built.seconds,
                            "embedded_chunks": built.embedded_chunks, "copied_chunks": built.copied_chunks,
                            "changed_documents": len(built.changed_docs), "deleted_documents": len(built.deleted_docs)})
        mlflow.log_dict({"changed": list(built.changed_docs), "deleted": list(built.deleted_docs)},
                        "index/changes.json")
    print(f"index: {built.collection} ({built.plan}; embedded {built.embedded_chunks} chunks, "
          f"copied {built.copied_chunks}, {built.seconds:.1f} s)")
    return built


def make_manifest(ctx: RunContext, router: TrainedModel, generator: TrainedModel, index: IndexVersion,
                  data: DataVersions) -> Manifest:
    p = ctx.params
    return Manifest.from_params(p, index.collection, router_version=f"models:/{router.name}/{router.version}",
                                generator_version=f"models:/{generator.name}/{generator.version}",
                                data_versions=dict(data.versions))


def champion_outcomes(ctx: RunContext) -> tuple[str | None, Outcomes | None]:
    """The champion's version and its per-question golden outcomes (from its evaluation run);
    None for a champion evaluated before ragops logged them."""
    client = mlflow.MlflowClient()
    champion = get_alias_version(client, ctx.params.promotion.bundle_name, "champion")
    if champion is None:
        return None, None
    run_id = champion.tags.get("run_id")
    folder, name = OUTCOMES_ARTIFACT.rsplit("/", 1)
    if not run_id or name not in {Path(a.path).name for a in client.list_artifacts(run_id, folder)}:
        return str(champion.version), None
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=OUTCOMES_ARTIFACT,
                                                dst_path=str(ctx.work_path / "champion"))
    return str(champion.version), json.loads(Path(local).read_text())


def evaluate_stage(ctx: RunContext, manifest: Manifest, router: TrainedModel, generator: TrainedModel,
                   index: IndexVersion) -> Evaluation:
    """The candidate as it would serve, then the decision: absolute gates and, when there is a
    champion, non-inferiority on the same golden questions."""
    p = ctx.params
    golden = ctx.read_curated("golden.jsonl")
    golden = spread(golden, p.evaluation.max_questions)  # a smaller set keeps the golden set's mix
    with connect_weaviate(ctx.settings) as client:
        assistant = load_assistant(manifest, router.adapter_path, generator.adapter_path, ctx.settings, client,
                                   p.project.device)
        result = evaluate_bundle(assistant, golden, ctx.read_curated("general_prompts.jsonl"), index, p.evaluation,
                                 p.project.seed, ctx.read_curated("redteam.jsonl"), p.index)
    champion, theirs = champion_outcomes(ctx)
    deltas = (None if theirs is None else
              compare_with_champion(result.outcomes, theirs, resamples=p.evaluation.bootstrap_resamples,
                                    seed=p.project.seed))
    decision = decide_promotion(result.metrics, p.evaluation.gates, p.evaluation.non_inferiority, deltas, champion)
    return Evaluation(decision, manifest, result, deltas, champion, index)


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
    return EarlierEvaluation(metrics, Promotion(str(found.version), "champion" if is_champion else "challenger",
                                                found.tags["collection"], [reason]))


def _run_link(run_id: str) -> str:
    run = mlflow.MlflowClient().get_run(run_id)
    return f"#/experiments/{run.info.experiment_id}/runs/{run_id}"


def register_bundle_stage(ctx: RunContext, evaluation: Evaluation, router: TrainedModel,
                          generator: TrainedModel) -> str:
    """Register the candidate bundle with its evaluation, whatever the decision: metrics with
    sample counts, per-question outcomes, answers, ablation table, charts, the HTML report and a
    description a reviewer can act on."""
    p, result = ctx.params, evaluation.result
    manifest_path = ctx.work_path / "manifest.json"
    manifest_path.write_text(evaluation.manifest.to_json())
    metrics = _defined({name: metric.value for name, metric in evaluation.metrics.items()})
    metrics.update({f"{name}_samples": metric.samples for name, metric in evaluation.metrics.items()})
    for name, delta in (evaluation.deltas or {}).items():
        if delta.samples:
            metrics.update({f"vs_champion_{name}": delta.value, f"vs_champion_{name}_low": delta.low,
                            f"vs_champion_{name}_high": delta.high})
    with mlflow.start_run(run_name="evaluate-bundle") as run:
        mlflow.log_dict(result.outcomes, OUTCOMES_ARTIFACT)
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
            result.injection)
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


def _close_unacted(ctx: RunContext, client: mlflow.MlflowClient, bundle_version: str) -> None:
    tagged = close_unacted_versions(client, ctx.settings, ctx.params.promotion.bundle_name, bundle_version)
    if tagged:
        print(f"bundle versions {', '.join('v' + v for v in tagged)} were registered by runs that stopped before "
              f"promoting; tagged {VERDICT_TAG}='not acted on ... superseded by v{bundle_version}'")


def promote_stage(ctx: RunContext, evaluation: Evaluation, bundle_version: str) -> Promotion:
    """Gates passed: move MLflow `champion` and the Weaviate alias together (undo the first if the
    second fails). Otherwise: alias `challenger`, reasons already in the version's tags."""
    p = ctx.params
    collection = evaluation.manifest.collection
    ledger = ledger_path(ctx.settings)
    client = mlflow.MlflowClient()
    if not evaluation.decision.passed or p.promotion.require_approval:
        set_alias(client, p.promotion.bundle_name, "challenger", bundle_version)
        why = evaluation.decision.reasons if not evaluation.decision.passed else ["awaiting approval"]
        append_ledger(ledger, {"action": "hold", "bundle": p.promotion.bundle_name, "version": str(bundle_version),
                               "collection": collection, "reasons": why})
        held = evaluation.decision.failures if not evaluation.decision.passed else why
        client.set_model_version_tag(p.promotion.bundle_name, str(bundle_version), VERDICT_TAG,
                                     "held: " + "; ".join(held))
        _close_unacted(ctx, client, str(bundle_version))
        return Promotion(bundle_version, "challenger", collection, why)
    promote(ctx.settings, p, bundle_version, collection, evaluation.decision.reasons)
    client.set_model_version_tag(p.promotion.bundle_name, str(bundle_version), VERDICT_TAG, "promoted")
    _close_unacted(ctx, client, str(bundle_version))
    return Promotion(bundle_version, "champion", collection, evaluation.decision.reasons)
