"""docs/benchmarks.md quotes every benchmark's latest figures as benchmarks/figures.py renders them
from benchmarks/results/: a results file updated without the page, or a figure edited by hand,
fails here; and every results file is quoted."""

from __future__ import annotations

import importlib.util
import json

import pytest


@pytest.fixture(scope="module")
def figures(project_root):
    spec = importlib.util.spec_from_file_location("figures", project_root / "benchmarks" / "figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmarks_page_shows_the_figures_of_the_results_files(figures):
    results = figures.load_results()
    assert set(results) == set(figures.FIGURES) | (set(figures.SUMMARIES) & set(results)), \
        "a results file no table of benchmarks/figures.py quotes, or a table without its file"
    page = figures.PAGE.read_text()
    assert figures.rendered(page, results) == page, "run `.venv/bin/python benchmarks/figures.py` and commit the page"


def test_a_changed_figure_changes_the_page_and_a_page_without_markers_is_refused(figures, tmp_path):
    results = figures.load_results()
    results["serving_latency"]["answer"]["p50_ms"] = 123456.0
    assert "| 123456 / " in figures.rendered(figures.PAGE.read_text(), results)
    (tmp_path / "serving_latency.json").write_text(json.dumps(results["serving_latency"]))
    page = tmp_path / "page.md"
    page.write_text("# a page without its markers\n")
    with pytest.raises(ValueError, match="markers"):
        figures.write(page, tmp_path)
