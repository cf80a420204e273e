"""The retraining deployment's cron schedule (params.yaml `schedule.retrain_cron`) makes a real
`prefect server` create scheduled flow runs. Registering the schedule is not enough: with
SQLAlchemy 2.1 the server's scheduler failed on every loop (`Can't evaluate bulk DML statement`)
and the daily retrain never ran, while the deployment and its schedule looked fine."""

from __future__ import annotations

import time
from datetime import datetime

import httpx
import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from components.config import load_params
from flows.deploy import deployments

pytestmark = pytest.mark.integration
# The server's scheduler picks up a just-registered deployment within seconds (its "recent
# deployments" loop); the full loop runs every minute. Slack for a loaded 2-core machine.
SCHEDULED_WITHIN_SECONDS = 180


def _scheduled_runs(api: str, deployment_id: str) -> list[dict]:
    return httpx.post(f"{api}/flow_runs/filter", timeout=10, json={
        "deployments": {"id": {"any_": [deployment_id]}},
        "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
    }).json()


@pytest.mark.timeout(600)
def test_retrain_cron_schedule_creates_scheduled_runs(project_root, tmp_path, prefect_api):
    params = load_params(project_root / "params.yaml")
    assert params.schedule.retrain_cron, "params.yaml has no schedule.retrain_cron: nothing to test"
    (retrain,) = [d for d in deployments(project_root, "params.yaml", params) if d.name == "retrain"]
    with temporary_settings({PREFECT_API_URL: prefect_api}):
        deployment_id = str(retrain.apply())
    (schedule,) = httpx.get(f"{prefect_api}/deployments/{deployment_id}", timeout=10).json()["schedules"]
    assert schedule["active"] and schedule["schedule"]["cron"] == params.schedule.retrain_cron
    assert schedule["schedule"]["timezone"] == params.schedule.timezone

    deadline = time.monotonic() + SCHEDULED_WITHIN_SECONDS
    while not (runs := _scheduled_runs(prefect_api, deployment_id)) and time.monotonic() < deadline:
        time.sleep(2)
    server_log = (tmp_path / "prefect-server.log").read_text(errors="replace")  # the prefect_api fixture's
    assert runs, (f"no scheduled run of ragops-retrain/retrain within {SCHEDULED_WITHIN_SECONDS} s; the "
                  f"server's log ends:\n{server_log[-3000:]}")

    assert len({r["expected_start_time"] for r in runs}) == len(runs)  # one run per cron occurrence
    for run in runs:
        assert run["auto_scheduled"] and run["created_by"]["type"] == "SCHEDULE"
        assert run["created_by"]["id"] == schedule["id"]
        assert run["parameters"]["trigger"] == "schedule"  # its run is named retrain-schedule
        assert datetime.fromisoformat(run["expected_start_time"]) > datetime.fromisoformat(run["created"])
