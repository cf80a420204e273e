"""Real Prefect flow runs (prefect_test_harness): bad data stops the flow before any training,
with an error naming the dataset, the record and the fix, and nothing registered. (Curation
errors, a leaked evaluation question among them, surface through DVC with their file and record:
tests/integration/test_dvc_versioning.py and tests/data/test_bad_inputs.py.)"""

import json
import re
from pathlib import Path

import pytest
from mlflow import MlflowClient
from prefect.testing.utilities import prefect_test_harness

from components.data.validation import DataValidationError
from flows.pipeline import retrain
from tests.support.project import copy_project

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", autouse=True)
def prefect_server():
    # server_startup_timeout=None: use PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS (300 s in conftest)
    with prefect_test_harness(server_startup_timeout=None):
        yield


def _rewrite_jsonl(path, change):
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    change(rows)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_invalid_data_fails_the_flow_before_training(project_root, tmp_path, settings):
    repo = copy_project(project_root, tmp_path / "repo")
    _rewrite_jsonl(repo / "data" / "raw" / "router.jsonl", lambda rows: rows[0].update(intent="sales"))

    state = retrain(project_path=str(repo), params_path="params.yaml", return_state=True)

    assert state.is_failed()
    with pytest.raises(DataValidationError) as err:
        state.result()
    message = str(err.value)
    assert "router.jsonl: expect_column_values_to_be_in_set on intent" in message and "sales" in message
    assert "nothing was trained or indexed" in message
    kept = Path(re.search(r"Failing batch kept in (\S+)\.", message).group(1))
    assert '"intent": "sales"' in (kept / "router.jsonl").read_text()
    registry = MlflowClient(settings.tracking_uri)
    assert registry.search_registered_models() == []
    assert not (settings.home / "weaviate").exists(), "no index may be built from invalid data"
