"""Answering from the registry as `ragops ask` does: the champion bundle, or a held version a
reviewer tries; without a champion, what to do instead.

    >>> ask_bundle(["How much is the Aurora ANC Headphones Edge?"], params, Settings())  # doctest: +SKIP
    [{'answer': '... [p-001].', 'citations': ['p-001'], ...}]
"""

from __future__ import annotations

import pandas as pd
from mlflow.exceptions import MlflowException

from components.config import Params
from components.registry.loading import load_registered
from components.registry.promotion import review as candidates_of
from components.registry.traces import limit_export_retries
from components.registry.tracking import configure_mlflow, get_alias_version
from components.settings import Settings, redacted


class NoBundle(LookupError):
    """No bundle version to answer with; the message says why and what to do."""


def no_champion_message(params: Params, settings: Settings) -> str:
    """What to do when there is no champion: the newest held version, why, and how to try it."""
    name = params.promotion.bundle_name
    _, candidates = candidates_of(params)
    if not candidates:
        return f"no champion for {name} in {redacted(settings.tracking_uri)}: no bundle version yet; run `ragops run` first"
    held = candidates[-1]
    why = ("passed its gates and awaits approval (`ragops promote " + held.version + "`)" if held.gates_passed
           else f"is held, failed gates: {held.reasons or 'no gate record'}")  # a held version's tag holds its failures
    return (f"no champion for {name} in {redacted(settings.tracking_uri)}: v{held.version} {why}. Try it with "
            f"`ragops ask --version {held.version} QUESTION`; `ragops review` compares the held versions")


def ask_bundle(questions: list[str], params: Params, settings: Settings, version: str = "") -> list[dict]:
    """Answers of the champion bundle, or of bundle `version` (a held candidate a reviewer tries);
    NoBundle when there is none to ask."""
    client = configure_mlflow(settings)
    name = params.promotion.bundle_name
    if version:
        try:
            client.get_model_version(name, version)
        except MlflowException:
            raise NoBundle(f"{name} has no version {version!r} in {redacted(settings.tracking_uri)}; `ragops review` "
                           f"lists the versions") from None
    else:
        champion = get_alias_version(client, name, "champion")
        if champion is None:
            raise NoBundle(no_champion_message(params, settings))
        version = str(champion.version)
    limit_export_retries()  # its answers are traced, and the traces sent before the process exits
    bundle = load_registered(f"models:/{name}/{version}")
    bundle.bundle_version = version
    try:
        return bundle.predict(None, pd.DataFrame({"question": questions}))
    finally:
        bundle.unload()
