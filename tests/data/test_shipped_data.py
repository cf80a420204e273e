"""The expectation suites on the shipped demo data, and on deliberately broken copies."""

import pandas as pd
import pytest

from components.config import Params
from components.data.curate import curate
from components.validation import load_curated, validate_frames

pytestmark = pytest.mark.data
NAMES = ("documents.jsonl", "router.jsonl", "generator.jsonl", "golden.jsonl")


@pytest.fixture(scope="module")
def frames(project_root, tmp_path_factory) -> dict[str, pd.DataFrame]:
    out = tmp_path_factory.mktemp("curated")
    curate(project_root / "data" / "raw", out, Params().data)
    return load_curated(out, NAMES)


def test_shipped_data_passes_every_suite(frames, tmp_path):
    report = validate_frames(frames, Params(), tmp_path / "docs")
    assert report.success, report.describe()
    assert report.checked == {name: len(frame) for name, frame in frames.items()}
    assert report.docs_index.exists() and "<html" in report.docs_index.read_text().lower()


def test_bad_rows_are_named_by_dataset_expectation_and_id(frames, tmp_path):
    broken = {name: frame.copy() for name, frame in frames.items()}
    docs = broken["documents.jsonl"]
    docs.loc[docs["id"] == "p-002", "price"] = -5.0
    router = broken["router.jsonl"]
    router.loc[0, "intent"] = "sales"
    report = validate_frames(broken, Params(), tmp_path / "docs")
    assert not report.success
    by_dataset = {(f["dataset"], f["expectation"]): f for f in report.failures}
    price = by_dataset[("documents.jsonl", "expect_column_values_to_be_between")]
    assert price["ids"] == ["p-002"] and price["values"] == [-5.0]
    intent = by_dataset[("router.jsonl", "expect_column_values_to_be_in_set")]
    assert intent["values"] == ["sales"] and intent["ids"] == [router.loc[0, "id"]]
    assert "p-002" in report.describe()
