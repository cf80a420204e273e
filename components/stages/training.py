"""Training stages: the router and the generator (with its answerability check), each reused when
its fingerprint is registered already; the registered models a bundle pins."""

from __future__ import annotations

import time

import mlflow

from components.config import params_as_dict
from components.evaluation.metrics import compare_behaviour
from components.memory import release_freed_memory
from components.models.resolve import resolve_model
from components.registry.reuse import FINGERPRINT_TAG, find_version, training_fingerprint
from components.registry.tracking import (download_model_artifact, get_alias_version, lineage_tags, log_data_versions,
                                          log_history, log_params_section, register_pyfunc)
from components.reporting.charts import log_confusion_chart, log_loss_chart
from components.reporting.models import generator_description, router_description
from components.settings import redacted
from components.stages.context import DataVersions, RunContext, TrainedModel, defined_metrics
from components.training.answerability import save_check, train_answerability
from components.training.checkpoint import prune_jobs
from components.training.generator import answers_with_and_without_adapter, save_generator, train_generator
from components.training.generator_examples import split_holdout
from components.training.planted_instructions import plant_instructions, templates_digest
from components.training.router import save_router, train_router


def _log_training_inputs(ctx: RunContext, data: DataVersions, section: str, model_key: str, dataset: str) -> None:
    """Every knob of the params section, the base model reference and the training data version."""
    log_params_section(section, params_as_dict(getattr(ctx.params, section)))
    mlflow.log_param(f"models.{model_key}", getattr(ctx.params.models, model_key))
    log_data_versions({dataset: data.versions[dataset]}, ctx.curated_path, "training")


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
            defined_metrics({**result.metrics, "router_test_samples": result.test_size, "train_seconds": seconds}))
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
        release_freed_memory()  # what training's activations and optimizer held (components/memory.py)
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
            release_freed_memory()  # what the held-out answers' generation held
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
            defined_metrics({**heldout, "best_eval_loss": result.best_eval_loss, "best_step": result.best_step,
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
