"""Retrieval filters are conditions on the fields a domain names (index.metadata_fields), checked before a query."""

import pytest

from components.config import ConfigError, IndexConfig
from components.index.search import FilterError, SearchFilters

pytestmark = pytest.mark.unit

FAQ = {"category": "text", "section": "text", "votes": "int", "reviewed": "bool"}


def test_values_are_equality_and_objects_map_operators():
    parsed = SearchFilters.parse({"section": "Strings", "votes": {"gte": 3, "lt": 10}, "reviewed": True}, FAQ)
    assert parsed.conditions == (("section", "eq", "Strings"), ("votes", "gte", 3), ("votes", "lt", 10),
                                 ("reviewed", "eq", True))
    assert SearchFilters.parse({}, FAQ).to_weaviate() is None
    assert parsed.to_weaviate() is not None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"price": {"lte": 5}}, "filters.price: not a field this index can filter on (index.metadata_fields: "
                                "category, section, votes, reviewed)"),
        ({"votes": {"atleast": 3}}, "filters.votes: unknown operator 'atleast'; use one of eq, ne, gt, gte, lt, lte"),
        ({"votes": "3"}, "filters.votes: eq needs an integer, got str '3'"),
        ({"votes": True}, "filters.votes: eq needs an integer, got bool True"),
        ({"section": {"gt": "A"}}, "filters.section: a text field takes eq or ne, not gt"),
    ],
)
def test_a_filter_the_fields_cannot_answer_names_the_field_and_the_fix(spec, message):
    with pytest.raises(FilterError) as refused:
        SearchFilters.parse(spec, FAQ)
    assert message in str(refused.value)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"Price": "number"}, "index.metadata_fields.Price must be a lower-case front-matter field name"),
        ({"doc_id": "text"}, "index.metadata_fields.doc_id must be a lower-case"),
        ({"price": "money"}, "index.metadata_fields.price must be one of text, number, int, bool, got 'money'"),
    ],
)
def test_bad_metadata_fields_are_refused_in_params(fields, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        IndexConfig(metadata_fields=fields)


def test_the_pyfunc_takes_filters_as_an_object_or_its_json_text():
    from components.registry.pyfunc import row_filters

    assert row_filters({"votes": {"gt": 2}}, FAQ, "filters (row 0)") == SearchFilters((("votes", "gt", 2),))
    assert row_filters('{"section": "Strings"}', FAQ, "filters (row 0)") == SearchFilters((("section", "eq", "Strings"),))
    assert row_filters(float("nan"), FAQ, "filters (row 1)") is None and row_filters(None, FAQ, "x") is None
    with pytest.raises(FilterError, match=r"filters \(row 2\): not a JSON object"):
        row_filters("{section", FAQ, "filters (row 2)")
    with pytest.raises(FilterError, match=r"filters \(row 3\): must be an object of conditions on category, section"):
        row_filters(["section"], FAQ, "filters (row 3)")
