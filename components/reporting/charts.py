"""Charts logged to MLflow: training curves, the router's confusion matrix, and the bundle
review's injection, ablation and champion-delta charts (matplotlib, headless)."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from components.evaluation.bundle import ABLATION_METRICS, AblationCell  # noqa: E402
from components.evaluation.metrics import PairedDelta  # noqa: E402
from components.reporting.bundle import injection_rows  # noqa: E402


def log_loss_chart(history: list[dict], title: str, artifact_file: str, evals: list[dict] | None = None) -> None:
    """Training loss per step, with the evaluation loss (when there is one) on the same axes."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([h["step"] for h in history], [h["loss"] for h in history], marker=".", label="training")
    if evals:
        ax.plot([e["step"] for e in evals], [e["eval_loss"] for e in evals], marker="o", label="held-out")
        ax.legend()
    ax.set(title=title, xlabel="step", ylabel="loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    mlflow.log_figure(fig, artifact_file)
    plt.close(fig)


def log_confusion_chart(matrix: list[list[int]], labels: list[str], title: str, artifact_file: str) -> None:
    """Counts per (true, predicted) pair; the diagonal is what the model got right."""
    fig, ax = plt.subplots(figsize=(5, 4.2))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    peak = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", color="white" if count > peak / 2 else "black")
    ax.set(title=title, xlabel="predicted", ylabel="true")
    fig.tight_layout()
    mlflow.log_figure(fig, artifact_file)
    plt.close(fig)


def injection_chart(attacks: list[dict]) -> Figure:
    rows = injection_rows(attacks)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    kinds = [r[0] for r in rows]
    ax.bar(kinds, [int(r[2]) for r in rows], color="#9ecae1", label="retrieved")
    ax.bar(kinds, [int(r[4]) for r in rows], color="#f4a582", width=0.5, label="succeeded, base model")
    ax.bar(kinds, [int(r[3]) for r in rows], color="#cf222e", width=0.3, label="succeeded, fine-tuned")
    ax.set_ylabel("attacks")
    ax.set_title("Prompt injection: attacks retrieved and obeyed, per kind")
    ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    ax.legend()
    fig.tight_layout()
    return fig


def ablation_chart(cells: list[AblationCell]) -> Figure:
    """Grouped bars: each metric, four arms; fine-tuning and retrieval side by side."""
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.2
    for n, cell in enumerate(cells):
        values = [cell.metrics[m].value for m in ABLATION_METRICS]
        label = f"{cell.generator}, {'retrieval' if cell.retrieval else 'no retrieval'}"
        ax.bar([i + (n - 1.5) * width for i in range(len(ABLATION_METRICS))],
               [0 if math.isnan(v) else v for v in values], width, label=label)
    ax.set_xticks(range(len(ABLATION_METRICS)), [m.replace("_", " ") for m in ABLATION_METRICS])
    ax.set(ylim=(0, 1.05), ylabel="score", title="ablation: generator x retrieval (golden set)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def deltas_chart(deltas: dict[str, PairedDelta], margins: dict[str, float], champion: str) -> Figure:
    """Challenger minus champion per metric with its 95% interval; the margin as a red tick."""
    names = [n for n, d in deltas.items() if d.samples]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(names) + 1.2))
    for y, name in enumerate(names):
        d = deltas[name]
        ax.errorbar(d.value, y, xerr=[[d.value - d.low], [d.high - d.value]], fmt="o", capsize=4, color="tab:blue")
        if name in margins:
            ax.plot(-margins[name], y, marker="|", markersize=14, color="tab:red")
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(range(len(names)), names)
    ax.set(xlabel=f"this version minus champion v{champion} (95% CI; red: non-inferiority margin)",
           title="paired comparison with the champion")
    fig.tight_layout()
    return fig
