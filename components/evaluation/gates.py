"""The promotion decision: a pure function from metrics (and, when there is a champion, paired
differences from it) to pass/fail with one reason per gate.

Two kinds of gate, both in params.yaml `evaluation`:
- absolute (`gates`): a minimum for metrics where higher is better, a maximum for latency and
  regression;
- non-inferiority (`non_inferiority`): challenger minus champion on the *same* golden questions,
  with a paired-bootstrap 95% confidence interval; its worse end must stay within the margin.
  A small golden set gives wide intervals, so a margin says how much worse a candidate may
  plausibly be, not how much worse it looked once.

A missing or NaN metric fails its gate; so does a comparison with no questions in common, and a
metric seen on fewer samples than its minimum (`min_samples`: a freshness gate decided on one
probe says little).

    >>> from components.evaluation.metrics import Metric
    >>> decide_promotion({"key_fact_accuracy": Metric(0.5, 40)}, {"key_fact_accuracy": 0.3}, {}, None).passed
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from components.config import LOWER_IS_BETTER, PAIRED_METRICS
from components.evaluation.metrics import Metric, Outcomes, PairedDelta, paired_bootstrap_delta


@dataclass(frozen=True)
class GateCheck:
    metric: str
    kind: str  # "absolute" | "non-inferiority"
    passed: bool
    reason: str


@dataclass(frozen=True)
class Decision:
    passed: bool
    checks: tuple[GateCheck, ...]

    @property
    def reasons(self) -> list[str]:
        return [c.reason for c in self.checks]

    @property
    def failures(self) -> list[str]:
        return [c.reason for c in self.checks if not c.passed]


def _absolute(name: str, metric: Metric | None, threshold: float, min_samples: int = 0) -> GateCheck:
    lower = name in LOWER_IS_BETTER
    bound = f"{'<=' if lower else '>='} {threshold:g}"
    if metric is None or math.isnan(metric.value):
        samples = "missing" if metric is None else f"NaN on {metric.samples} samples"
        return GateCheck(name, "absolute", False, f"{name} could not be computed ({samples}); gate {bound}")
    if metric.samples < min_samples:
        return GateCheck(name, "absolute", False,
                         f"{name} {metric.value:.3f} (n={metric.samples}) is on fewer samples than the {min_samples} "
                         f"evaluation.min_samples asks; gate {bound}")
    passed = metric.value <= threshold if lower else metric.value >= threshold
    return GateCheck(name, "absolute", passed,
                     f"{name} {metric.value:.3f} (n={metric.samples}) {bound if passed else 'fails ' + bound}")


def _non_inferior(name: str, delta: PairedDelta | None, margin: float, champion: str) -> GateCheck:
    if delta is None or delta.samples == 0 or math.isnan(delta.value):
        return GateCheck(name, "non-inferiority", False,
                         f"{name} cannot be compared with champion v{champion}: no golden question scored for both")
    lower = name in LOWER_IS_BETTER
    worst = delta.high if lower else delta.low
    passed = worst <= margin if lower else worst >= -margin
    limit = f"{'+' if lower else '-'}{margin:g}"
    return GateCheck(name, "non-inferiority", passed,
                     f"{name} vs champion v{champion} {delta.value:+.3f} (95% CI {delta.low:+.3f}..{delta.high:+.3f}, "
                     f"n={delta.samples}): worst case {worst:+.3f} {'within' if passed else 'beyond'} the {limit} margin")


def decide_promotion(metrics: Mapping[str, Metric], gates: Mapping[str, float], margins: Mapping[str, float],
                     deltas: Mapping[str, PairedDelta] | None, champion: str | None = None,
                     min_samples: Mapping[str, int] | None = None) -> Decision:
    """`deltas`: challenger minus champion per paired metric; None when there is no champion, or
    when the champion was evaluated before per-question outcomes were logged (the non-inferiority
    gates then have nothing to hold the candidate to, and pass saying so). `min_samples`: gated
    metric → the fewest samples its gate decides on."""
    least = min_samples or {}
    checks = [_absolute(name, metrics.get(name), threshold, least.get(name, 0)) for name, threshold in gates.items()]
    for name, margin in margins.items():
        if deltas is None:
            why = (f"champion v{champion} has no per-question outcomes (evaluated before ragops logged them): "
                   f"not compared" if champion else "no champion yet to compare with")
            checks.append(GateCheck(name, "non-inferiority", True, f"{name}: {why}"))
        elif name not in deltas:
            checks.append(GateCheck(name, "non-inferiority", True, f"{name}: champion v{champion} was evaluated "
                                                                   f"before ragops measured it: not compared"))
        else:
            checks.append(_non_inferior(name, deltas[name], margin, champion or "?"))
    return Decision(all(c.passed for c in checks), tuple(checks))


def compare_with_champion(challenger: Outcomes, champion: Outcomes, metrics: tuple[str, ...] = PAIRED_METRICS,
                          resamples: int = 2000, seed: int = 0) -> dict[str, PairedDelta]:
    """Challenger minus champion per metric, on the golden questions both were scored on (paired by
    question id; a question added or dropped since the champion's evaluation is left out). A metric
    the champion's evaluation did not measure at all (it predates the metric) is left out."""
    deltas = {}
    for name in metrics:
        if name not in champion:
            continue
        ours, theirs = challenger.get(name, {}), champion[name]
        common = sorted(set(ours) & set(theirs))
        deltas[name] = paired_bootstrap_delta([ours[q] for q in common], [theirs[q] for q in common],
                                              resamples=resamples, seed=seed)
    return deltas
