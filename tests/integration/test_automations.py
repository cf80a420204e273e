"""infra/prefect/automations.yaml: the automations Prefect's `prefect automation create` would
create (its own model), reacting to the events ragops emits."""

from __future__ import annotations

import uuid

import pytest
import yaml
from prefect.events.schemas.automations import AutomationCore

from flows.events import BUNDLE_EVENTS, DOCUMENTS_EVENT

pytestmark = pytest.mark.integration


def test_automations_validate_and_listen_to_ragops_events(project_root):
    text = (project_root / "infra" / "prefect" / "automations.yaml").read_text()
    assert "${NOTIFY_BLOCK_ID}" in text  # filled with envsubst, as the file's header says
    rows = yaml.safe_load(text.replace("${NOTIFY_BLOCK_ID}", str(uuid.uuid4())))["automations"]
    automations = [AutomationCore.model_validate(row) for row in rows]
    assert len({a.name for a in automations}) == len(automations) == 3
    expected = {event for a in automations for event in a.trigger.expect | set(getattr(a.trigger, "after", set()))}
    assert BUNDLE_EVENTS["challenger"] in expected and DOCUMENTS_EVENT in expected
    assert {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"} <= expected
    assert all(action.type == "send-notification" for a in automations for action in a.actions)
