"""Events ragops emits to Prefect: what automations (notifications) and triggers react to.

- `ragops.documents.changed` (resource `ragops.documents`): the documents folder changed; the
  reindex deployment's trigger. Emitted by the watcher of `ragops deploy`.
- `ragops.feedback.harvested` (resource `ragops.feedback`): `feedback.retrain_after_items` reviewed
  items have been harvested into the data since the last such event; the retrain deployment's
  trigger. Emitted by the harvest flow, with the items and data versions in the payload.
- `ragops.bundle.promoted` / `ragops.bundle.held` (resource `ragops.bundle.<name>`): a candidate
  bundle's verdict, with its version, collection and gate reasons in the payload. Emitted by the
  flows after promotion; infra/prefect/automations.yaml notifies reviewers of held bundles.
"""

from __future__ import annotations

from pathlib import Path

from prefect.events import emit_event

from components.data.watch import Changes

DOCUMENTS_EVENT = "ragops.documents.changed"
DOCUMENTS_RESOURCE = "ragops.documents"
FEEDBACK_EVENT = "ragops.feedback.harvested"
FEEDBACK_RESOURCE = "ragops.feedback"
BUNDLE_EVENTS = {"champion": "ragops.bundle.promoted", "challenger": "ragops.bundle.held"}


def emit_documents_changed(folder: Path, changes: Changes) -> None:
    emit_event(event=DOCUMENTS_EVENT, resource={"prefect.resource.id": DOCUMENTS_RESOURCE,
                                                "ragops.folder": str(folder.resolve())},
               payload={"added": changes.added, "modified": changes.modified, "removed": changes.removed})
    print(f"documents changed: {changes.count} files ({', '.join((changes.added + changes.modified + changes.removed)[:5])}"
          f"{'...' if changes.count > 5 else ''}) → event {DOCUMENTS_EVENT}")


def emit_bundle_decision(bundle_name: str, promotion) -> None:
    """`promotion`: a components.stages.Promotion just made (alias champion or challenger)."""
    emit_event(event=BUNDLE_EVENTS[promotion.alias],
               resource={"prefect.resource.id": f"ragops.bundle.{bundle_name}", "prefect.resource.name": bundle_name,
                         "ragops.version": str(promotion.bundle_version), "ragops.collection": promotion.collection},
               payload={"version": str(promotion.bundle_version), "alias": promotion.alias,
                        "collection": promotion.collection, "reasons": list(promotion.reasons)})


def emit_feedback_harvested(items: int, data_versions: dict[str, str]) -> None:
    emit_event(event=FEEDBACK_EVENT, resource={"prefect.resource.id": FEEDBACK_RESOURCE},
               payload={"items": items, "data_versions": data_versions})
    print(f"{items} harvested item(s) since the last retrain request → event {FEEDBACK_EVENT}")
