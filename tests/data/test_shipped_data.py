"""The expectation suites on the shipped demo data, and on deliberately broken copies."""

import pandas as pd
import pytest

from components.config import Params
from components.data.curate import curate
from components.data.validation import load_curated, validate_frames

pytestmark = pytest.mark.data
NAMES = ("documents.jsonl", "router.jsonl", "generator.jsonl", "golden.jsonl")


@pytest.fixture(scope="module")
def frames(project_root, tmp_path_factory) -> dict[str, pd.DataFrame]:
    out = tmp_path_factory.mktemp("curated")
    curate(project_root / "data" / "raw", out, Params().data, Params().index.metadata_fields)
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


def test_a_domain_without_prices_or_stock_passes_and_a_bad_price_still_fails(frames, tmp_path):
    """Metadata fields are optional: a catalog none of whose documents has `price` or `stock`
    validates; where the field exists it is still checked."""
    no_numbers = {**frames, "documents.jsonl": frames["documents.jsonl"].drop(columns=["price", "stock"])}
    report = validate_frames(no_numbers, Params(), tmp_path / "docs")
    assert report.success, report.describe()
    only_price = {**frames, "documents.jsonl": frames["documents.jsonl"].drop(columns=["stock"])}
    only_price["documents.jsonl"].loc[0, "price"] = -1.0
    report = validate_frames(only_price, Params(), tmp_path / "docs-2")
    assert [f["column"] for f in report.failures] == ["price"], report.describe()


def test_the_python_faq_example_passes_curation_and_every_suite(project_root, tmp_path):
    """The second shipped domain (examples/python-faq): its own intents, no prices, its own
    refusal and out-of-scope wording, through the same curation and suites with its params file."""
    from components.config import load_params

    params = load_params(project_root / "examples" / "python-faq" / "params.yaml")
    curate(project_root / params.data.raw_dir, tmp_path / "curated", params.data, params.index.metadata_fields)
    frames = load_curated(tmp_path / "curated")
    report = validate_frames(frames, params, tmp_path / "docs")
    assert report.success, report.describe()
    assert "price" not in frames["documents.jsonl"] and set(frames["router.jsonl"]["intent"]) == set(params.router.intents)
