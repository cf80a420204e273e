"""A real MLflow store (SQLite + local artifacts in a temp dir): runs, registration, aliases, ledger."""

import json

import mlflow
import pandas as pd
import pytest

from components.config import RouterConfig
from components.registry.loading import load_registered
from components.registry.promotion import append_promotion_ledger
from components.registry.tracking import (
    configure_mlflow, get_alias_version, log_data_versions, log_history, register_pyfunc, set_alias,
)
from components.reporting.charts import log_loss_chart
from components.training.router import save_router, train_router
from components.models.resolve import resolve_model
from tests.support.project import read_jsonl

pytestmark = pytest.mark.integration


def test_router_registers_with_lineage_and_loads_back_by_alias(settings, project_root, tmp_path):
    client = configure_mlflow(settings, "test")
    rows = read_jsonl(project_root / "data" / "raw" / "router.jsonl")
    config = RouterConfig(epochs=1)
    curated = tmp_path / "curated"
    curated.mkdir()
    (curated / "router.jsonl").write_text((project_root / "data" / "raw" / "router.jsonl").read_text())

    with mlflow.start_run(run_name="train-router") as run:
        log_data_versions({"router.jsonl": "0123abcd"}, curated, "training")
        result = train_router(rows, _tiny_bert(settings), config, seed=1)
        log_history(result.history)
        log_loss_chart(result.history, "loss", "charts/router_loss.png")
        adapter = save_router(result, tmp_path / "adapter")
        version = register_pyfunc("test-router", "router", {"adapter": str(adapter)},
                                  {"encoder": "tiny:bert", "intents": list(config.intents), "max_length": 32},
                                  "a tiny router", {"data.router.jsonl.md5": "0123abcd"})

    assert str(settings.artifact_root) in client.get_experiment_by_name("test").artifact_location
    logged = client.get_run(run.info.run_id)
    assert logged.data.tags["data.router.jsonl.md5"] == "0123abcd"
    assert [d.dataset.digest for d in logged.inputs.dataset_inputs] == ["0123abcd"]
    assert len(client.get_metric_history(run.info.run_id, "loss")) == len(result.history)
    assert "charts/router_loss.png" in [a.path for a in client.list_artifacts(run.info.run_id, "charts")]
    assert version.tags["data.router.jsonl.md5"] == "0123abcd"
    assert version.description == "a tiny router"

    assert get_alias_version(client, "test-router", "champion") is None
    set_alias(client, "test-router", "champion", version.version)
    assert get_alias_version(client, "test-router", "champion").version == version.version

    loaded = mlflow.pyfunc.load_model("models:/test-router@champion")  # MLflow's loader (mlflow models serve)
    texts = pd.DataFrame({"text": ["hi there", "how much is the kettle?"]})
    out = loaded.predict(texts)
    assert list(out.columns) == ["intent", "confidence"]
    assert set(out["intent"]) <= set(config.intents)
    assert out["confidence"].between(0, 1).all()
    # ragops' own loader (no code from the registry) gives the same predictions
    assert load_registered("models:/test-router@champion").predict(None, texts).equals(out)


def _tiny_bert(settings):
    return resolve_model("tiny:bert", settings.models_dir)


def test_ledger_is_append_only_jsonl(tmp_path):
    ledger = tmp_path / "promotions.jsonl"
    append_promotion_ledger(ledger, {"action": "promote", "version": "1"})
    append_promotion_ledger(ledger, {"action": "hold", "version": "2", "reasons": ["x < y"]})
    rows = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert [r["action"] for r in rows] == ["promote", "hold"]
    assert all("at" in r and "by" in r for r in rows)


def test_generator_registers_as_adapter_plus_base_reference_and_loads_offline(settings, project_root, tmp_path):
    import dataclasses

    from components.config import GeneratorConfig
    from components.training.generator import save_generator, train_generator

    client = configure_mlflow(settings, "test")
    examples = read_jsonl(project_root / "data" / "raw" / "generator.jsonl")[:8]
    config = dataclasses.replace(GeneratorConfig(), max_steps=2, batch_size=2, max_length=1024, warmup_steps=0,
                                 holdout_examples=0, early_stopping_patience=0, replay_examples=0, refusal_check=False)
    result = train_generator(examples, resolve_model("tiny:llama", settings.models_dir), config, seed=0)
    with mlflow.start_run(run_name="train-generator"):
        adapter = save_generator(result, tmp_path / "adapter")
        version = register_pyfunc("test-generator", "generator", {"adapter": str(adapter)},
                                  {"base_model": "tiny:llama", "max_new_tokens": 6}, "a tiny generator", {})

    files = [p for p in (settings.artifact_root).rglob("*") if p.is_file() and "test-generator" not in p.name]
    names = {p.name for p in files}
    assert "adapter_model.safetensors" in names
    assert "model.safetensors" not in names, "the base model must be referenced, not copied into the registry"

    set_alias(client, "test-generator", "champion", version.version)
    loaded = mlflow.pyfunc.load_model("models:/test-generator@champion")
    answers = loaded.predict(pd.DataFrame({"messages": [[{"role": "user", "content": "hello"}]]}))
    assert len(answers) == 1 and isinstance(answers[0], str)
