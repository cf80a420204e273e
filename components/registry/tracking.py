"""MLflow: tracking set-up, run logging, model registration and aliases (the promotion ledger:
components/registry/promotion.py; charts: components/reporting/charts.py).

    >>> client = configure_mlflow(settings)  # doctest: +SKIP
    >>> version = register_pyfunc("ragops-router", "router", {"adapter": "out/router"}, ...)  # doctest: +SKIP
    >>> set_alias(client, "ragops-assistant", "champion", version.version)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import mlflow
import pandas as pd
import yaml
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.entities.model_registry import ModelVersion
from mlflow.models import ModelSignature
from mlflow.types.schema import AnyType, Array, ColSpec, Object, Property, Schema

from components.settings import Settings

PIP_REQUIREMENTS = ["mlflow==3.17.2", "torch==2.15.0", "transformers==5.23.0", "peft==0.21.2",
                    "weaviate-client==4.23.1", "pandas"]


EXPERIMENT = "ragops"  # the MLflow experiment every ragops run logs to


def configure_mlflow(settings: Settings, experiment: str = EXPERIMENT) -> MlflowClient:
    """Point MLflow at the tracking store and make sure the experiment stores artifacts under
    settings.home (not ./mlruns of whatever directory we were started from)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    mlflow.set_tracking_uri(_without_credentials(settings.tracking_uri))
    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    if found is None:
        location = None if settings.mlflow_tracking_uri else settings.artifact_root.as_uri()
        experiment_id = client.create_experiment(experiment, artifact_location=location)
    else:
        experiment_id = found.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return client


def _without_credentials(uri: str) -> str:
    """A tracking URI with `user:password@` becomes MLflow's own credentials (MLFLOW_TRACKING_USERNAME
    and _PASSWORD, unless already set) and the URI without them: MLflow prints its tracking URI
    (run links) and stores it with runs, where a password must not be."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    os.environ.setdefault("MLFLOW_TRACKING_USERNAME", unquote(parts.username or ""))
    os.environ.setdefault("MLFLOW_TRACKING_PASSWORD", unquote(parts.password or ""))
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def log_params_section(prefix: str, values: Mapping) -> None:
    mlflow.log_params({f"{prefix}.{k}": (json.dumps(v) if isinstance(v, (list, dict)) else v)
                       for k, v in values.items()})


def lineage_tags(versions: Mapping[str, str]) -> dict[str, str]:
    """`data.<file>.md5` tags: the data versions a run or model version was built from."""
    return {f"data.{name}.md5": md5 for name, md5 in versions.items()}


def log_data_versions(versions: Mapping[str, str], curated_path: Path, context: str) -> None:
    """Tags `data.<file>.md5` and one MLflow dataset input per file, digest = DVC md5."""
    mlflow.set_tags(lineage_tags(versions))
    for name, md5 in versions.items():
        path = curated_path / name
        frame = pd.read_json(path, lines=True) if path.exists() else pd.DataFrame()
        dataset = mlflow.data.from_pandas(frame, source=str(path), name=name, digest=md5)
        mlflow.log_input(dataset, context=context)


def log_history(history: list[dict], evals: Sequence[dict] = ()) -> None:
    """Per-step training metrics (and held-out losses as `eval_loss`) in the active run, in one
    batched write (MlflowClient splits it at MLflow's per-request limits) rather than a request per step."""
    at = int(time.time() * 1000)
    metrics = [Metric(k, float(v), at, int(row["step"])) for row in history for k, v in row.items() if k != "step"]
    metrics += [Metric("eval_loss", float(row["eval_loss"]), at, int(row["step"])) for row in evals]
    if metrics:
        MlflowClient().log_batch(mlflow.active_run().info.run_id, metrics=metrics)


MODEL_CODE_PATH = Path(__file__).resolve().parent / "model_code"
_CHUNK = Object([Property("doc_id", "string"), Property("text", "string"), Property("score", "double")])
_MESSAGE = Object([Property("role", "string"), Property("content", "string")])
SIGNATURES = {
    "bundle": ModelSignature(
        # filters: an object of conditions on the index's metadata fields (SearchFilters.parse),
        # whose keys are the domain's, or its JSON text
        inputs=Schema([ColSpec("string", "question"), ColSpec(AnyType(), "filters", required=False)]),
        outputs=Schema([ColSpec("string", "question"), ColSpec("string", "answer"), ColSpec(Array("string"), "citations"),
                        ColSpec("string", "route"), ColSpec("double", "route_confidence"),
                        ColSpec(Array(_CHUNK), "chunks")])),
    "router": ModelSignature(inputs=Schema([ColSpec("string", "text")]),
                             outputs=Schema([ColSpec("string", "intent"), ColSpec("double", "confidence")])),
    "generator": ModelSignature(inputs=Schema([ColSpec(Array(_MESSAGE), "messages")]), outputs=Schema([ColSpec("string")])),
}


def register_pyfunc(name: str, kind: str, artifacts: dict[str, str], model_config: dict, description: str,
                    tags: Mapping[str, str], metrics: Mapping[str, float] | None = None) -> ModelVersion:
    """Log the pyfunc of `kind` (bundle | router | generator) in the active run, as code
    (components/registry/model_code/<kind>.py) with its signature, and register it as a new version of `name`.

    `metrics`, the run's summary figures, are logged after the model, linked to it, in one request.
    (Logged before, MLflow links each of the run's metrics to the new model itself with one history
    read per metric: 105 requests for a bundle, ~5 s against an MLflow server here; step histories
    logged earlier still cost one read each.) The version is created with its tags in the same
    request, and only once the metrics are in."""
    info = mlflow.pyfunc.log_model(name=name, python_model=str(MODEL_CODE_PATH / f"{kind}.py"), artifacts=artifacts,
                                   model_config=model_config or None, signature=SIGNATURES[kind],
                                   pip_requirements=PIP_REQUIREMENTS)
    if metrics:
        mlflow.log_metrics(dict(metrics), model_id=info.model_id)
    version = mlflow.register_model(info.model_uri, name, tags={k: str(v) for k, v in tags.items()})
    client = MlflowClient()
    client.update_model_version(name, str(version.version), description=description)
    return client.get_model_version(name, str(version.version))


def download_model_artifact(name: str, version: str, key: str, dst: Path) -> Path:
    """A pyfunc artifact (e.g. the LoRA adapter) of a registered version, downloaded to `dst`."""
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(dst)))
    flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
    return local / flavor["artifacts"][key]["path"]


def get_alias_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def set_alias(client: MlflowClient, name: str, alias: str, version: str) -> None:
    client.set_registered_model_alias(name, alias, version)


def wait_for_version_ready(client: MlflowClient, name: str, version: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while client.get_model_version(name, version).status != "READY":
        if time.monotonic() > deadline:
            raise TimeoutError(f"model {name} version {version} not READY after {timeout_s}s")
        time.sleep(0.5)
