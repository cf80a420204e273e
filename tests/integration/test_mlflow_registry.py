"""A real MLflow store (SQLite + local artifacts in a temp dir): runs, registration, aliases, ledger."""

import json

import mlflow
import pandas as pd
import pytest

from components.config import RouterConfig
from components.pyfunc_models import RouterPyfunc
from components.registry import (append_ledger, configure_mlflow, get_alias_version, log_data_versions, log_history,
                                 log_loss_chart, register_pyfunc, set_alias)
from components.training.router import save_router, train_router
from tests.conftest import read_jsonl

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
        version = register_pyfunc("test-router", RouterPyfunc(), {"adapter": str(adapter)},
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

    loaded = mlflow.pyfunc.load_model("models:/test-router@champion")
    out = loaded.predict(pd.DataFrame({"text": ["hi there", "how much is the kettle?"]}))
    assert list(out.columns) == ["intent", "confidence"]
    assert set(out["intent"]) <= set(config.intents)
    assert out["confidence"].between(0, 1).all()


def _tiny_bert(settings):
    from components.models import resolve_model

    return resolve_model("tiny:bert", settings.models_dir)


def test_ledger_is_append_only_jsonl(tmp_path):
    ledger = tmp_path / "promotions.jsonl"
    append_ledger(ledger, {"action": "promote", "version": "1"})
    append_ledger(ledger, {"action": "hold", "version": "2", "reasons": ["x < y"]})
    rows = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert [r["action"] for r in rows] == ["promote", "hold"]
    assert all("at" in r and "by" in r for r in rows)
