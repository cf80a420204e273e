"""The run context every stage takes, and the small frozen results stages pass on."""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from components.assistant import Manifest
from components.config import Params, load_params
from components.data.injection_scan import found_text, held
from components.evaluation.bundle import BundleEvaluation
from components.evaluation.gates import Decision
from components.evaluation.memo import GenerationMemo
from components.evaluation.metrics import Metric, PairedDelta
from components.index.build import IndexVersion
from components.registry.tracking import configure_mlflow
from components.settings import Settings


@dataclass(frozen=True)
class RunContext:
    project_path: Path
    params: Params
    settings: Settings
    work_path: Path
    params_path: Path | None = None  # the params file of the run (None: the project's params.yaml)

    @property
    def curated_path(self) -> Path:
        return self.project_path / self.params.data.curated_dir

    def read_curated(self, name: str) -> list[dict]:
        return [json.loads(line) for line in (self.curated_path / name).read_text(encoding="utf-8").splitlines() if line]

    def quarantined(self) -> dict[str, str]:
        """The documents the injection scan held back (id → what it found): in no index built from this data."""
        path = self.curated_path / "quarantine.jsonl"
        return {row["id"]: found_text(row) for row in held(self.read_curated(path.name))} if path.is_file() else {}


@dataclass(frozen=True)
class DataVersions:
    versions: dict[str, str]
    reproduced: bool


@dataclass(frozen=True)
class TrainedModel:
    name: str
    version: str
    adapter_path: str
    metrics: dict[str, float]
    run_id: str
    reused: bool = False  # an earlier version trained from the same inputs


@dataclass(frozen=True)
class Evaluation:
    decision: Decision
    manifest: Manifest
    result: BundleEvaluation
    deltas: dict[str, PairedDelta] | None  # challenger minus champion; None without a champion
    champion: str | None
    index: IndexVersion
    memo: GenerationMemo | None = None  # the answers it generated or reused (logged for the next evaluation)

    @property
    def metrics(self) -> dict[str, Metric]:
        return self.result.metrics


@dataclass(frozen=True)
class Promotion:
    bundle_version: str
    alias: str
    collection: str
    reasons: list[str]
    failed: list[str] = field(default_factory=list)  # the reasons of the gates that failed (none: all passed)


def make_context(project_path: Path, params_path: Path, settings: Settings | None = None) -> RunContext:
    settings = settings or Settings()
    params = load_params(params_path)
    work_path = (settings.home / "runs" / uuid.uuid4().hex[:12]).resolve()
    work_path.mkdir(parents=True, exist_ok=True)
    configure_mlflow(settings)
    return RunContext(project_path.resolve(), params, settings, work_path, params_path.resolve())


def defined_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """NaN means undefined (e.g. precision of an intent never predicted): it is left out, not logged as 0."""
    return {k: v for k, v in metrics.items() if not math.isnan(v)}
