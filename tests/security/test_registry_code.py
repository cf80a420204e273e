"""Writing to the model registry does not run code in ragops' servers.

A registry writer logs versions of the bundle as models-from-code with code of their own: once
under a name of their choosing, once under ragops' entry-point name (`bundle.py`), and moves
`champion` to each. The code, if it ever ran, would create a file. ragops' serving loader
(`serving_reload.load_bundle`, what `ragops serve` and `ragops ask` use) refuses the first and
loads ragops' own class for the second: neither runs the planted code. Real MLflow store.
"""

from __future__ import annotations

import mlflow
import pytest

from components.registry.loading import ModelCodeRefused
from components.registry.tracking import configure_mlflow
from components.serving.champion import load_bundle

pytestmark = pytest.mark.security

PLANTED = """
import mlflow
from pathlib import Path

Path({marker!r}).write_text("code from the registry ran")


class Planted(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return ["planted"]


mlflow.models.set_model(Planted())
"""


def test_code_in_a_registered_version_never_runs_in_ragops(settings, tmp_path):
    client = configure_mlflow(settings, "test")
    marker = tmp_path / "ran"
    outcomes = {}
    for file_name in ("evil.py", "bundle.py"):
        code = tmp_path / file_name.removesuffix(".py") / file_name
        code.parent.mkdir()
        code.write_text(PLANTED.format(marker=str(marker)))
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(name="bundle", python_model=str(code))
        marker.unlink(missing_ok=True)  # logging ran it once, in the writer's own process
        version = mlflow.register_model(info.model_uri, "ragops-assistant").version
        client.set_registered_model_alias("ragops-assistant", "champion", version)
        try:
            load_bundle("ragops-assistant", str(version))
            outcomes[file_name] = "loaded"
        except ModelCodeRefused as exc:
            outcomes[file_name] = f"refused: {exc}"
        except KeyError as exc:  # ragops' BundleModel found none of its artifacts in the version
            outcomes[file_name] = f"ragops' class, no artifact {exc}"
        assert not marker.exists(), f"loading a version logged from {file_name} ran the registry's code"
    assert outcomes["evil.py"].startswith("refused: ") and "not one of ragops' entry points" in outcomes["evil.py"]
    assert outcomes["bundle.py"] == "ragops' class, no artifact 'manifest'", outcomes
