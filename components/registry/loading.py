"""Loading a registered model without running code from the registry.

A bundle, router or generator version is logged as MLflow models-from-code: its artifacts hold a
copy of the Python file that builds the model, and `mlflow.pyfunc.load_model` executes that copy.
Anyone who can write to the registry or its artifact store could then run code in every server
that follows `champion`, where the Weaviate key is. ragops' own loaders never execute it: the
version's MLmodel only says which of ragops' three entry points it is (the file's name, checked
against ENTRY_POINTS), the class comes from the installed ragops package, and only the version's
data is read (adapters as safetensors, the manifest as JSON, the model config as YAML).

A registry writer can still change what a version's weights and manifest say (the answers), not
what code runs. `mlflow models serve` is MLflow's loader: it runs the artifact's copy (README,
"Security").

    >>> bundle = load_registered("models:/ragops-assistant@champion")  # doctest: +SKIP
    >>> bundle.assistant.answer(["How much is the Aurora ANC Headphones Edge?"])  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import yaml
from mlflow.pyfunc import PythonModel, PythonModelContext

# The model-code file a version was logged from (components/registry/model_code/<kind>.py) → the class of
# the installed package that loads it.
ENTRY_POINTS = {"bundle": ("components.registry.pyfunc", "BundleModel"),
                "router": ("components.registry.pyfunc", "RouterPyfunc"),
                "generator": ("components.registry.pyfunc", "GeneratorPyfunc")}


class ModelCodeRefused(RuntimeError):
    """A registered version does not name one of ragops' entry points, or its artifacts point
    outside the version."""


def load_registered(uri: str) -> PythonModel:
    """The ragops pyfunc of `uri` (`models:/<name>/<version>` or `models:/<name>@<alias>`), loaded
    with its artifacts: weights are read into memory, the download is removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="ragops-model-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp)).resolve()
        flavor = (yaml.safe_load((local / "MLmodel").read_text()) or {}).get("flavors", {}).get("python_function", {})
        code = str(flavor.get("model_code_path") or "")
        kind = Path(code).name.removesuffix(".py")
        if kind not in ENTRY_POINTS:
            raise ModelCodeRefused(f"{uri} was logged from model code {code!r}, not one of ragops' entry points "
                                   f"({', '.join(f'{k}.py' for k in ENTRY_POINTS)}); ragops does not run code taken from "
                                   f"the registry: register versions with ragops")
        artifacts = {}
        for key, spec in (flavor.get("artifacts") or {}).items():
            path = (local / str(spec["path"])).resolve()
            if not path.is_relative_to(local):
                raise ModelCodeRefused(f"{uri}: artifact {key!r} points outside the version ({spec['path']!r})")
            artifacts[key] = str(path)
        module, name = ENTRY_POINTS[kind]
        model = getattr(importlib.import_module(module), name)()
        model.load_context(PythonModelContext(artifacts, flavor.get("config")))
        return model


def registered_manifest(name: str, version: str) -> Any:
    """The manifest of bundle version `version` of `name` (components.assistant.Manifest), read
    without loading its models: what a server compares with the bundle it serves."""
    from components.assistant import Manifest

    with tempfile.TemporaryDirectory(prefix="ragops-manifest-") as tmp:
        uri = f"models:/{name}/{version}"
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{uri}/MLmodel", dst_path=tmp))
        flavor = (yaml.safe_load(local.read_text()) or {}).get("flavors", {}).get("python_function", {})
        spec = (flavor.get("artifacts") or {}).get("manifest", {})
        path = str(spec.get("path", ""))
        if not path or Path(path).is_absolute() or ".." in Path(path).parts:
            raise ModelCodeRefused(f"{uri}: no manifest artifact inside the version ({path!r})")
        manifest = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{uri}/{path}", dst_path=tmp))
        return Manifest.from_json(manifest.read_text())
