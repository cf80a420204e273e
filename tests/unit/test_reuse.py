"""Fingerprints change with every input that changes the result, and only with those."""

from __future__ import annotations

import pytest

from components.registry.reuse import evaluation_fingerprint, training_fingerprint

pytestmark = pytest.mark.unit

BASE = {"kind": "router", "section": {"epochs": 4, "lora_r": 8}, "model_refs": {"encoder": "pypi:e"},
        "data_md5s": {"router.jsonl": "a1"}, "seed": 42, "device": "cpu"}


@pytest.mark.parametrize("change", [
    {"section": {"epochs": 5, "lora_r": 8}},
    {"model_refs": {"encoder": "pypi:other"}},
    {"data_md5s": {"router.jsonl": "b2"}},
    {"seed": 7},
    {"device": "cuda"},
    {"kind": "generator"},  # other training code
])
def test_training_fingerprint_changes_with_each_input(change):
    assert training_fingerprint(**{**BASE, **change}) != training_fingerprint(**BASE)


def test_training_fingerprint_is_stable_and_order_free():
    reordered = {**BASE, "section": {"lora_r": 8, "epochs": 4}}
    assert training_fingerprint(**reordered) == training_fingerprint(**BASE)


def test_evaluation_fingerprint_follows_manifest_and_settings():
    manifest = '{"collection": "Catalog_v2", "router_version": "models:/r/1"}'
    same = evaluation_fingerprint(manifest, {"max_questions": 0}, 42)
    assert same == evaluation_fingerprint(manifest, {"max_questions": 0}, 42)
    assert same != evaluation_fingerprint(manifest.replace("v2", "v3"), {"max_questions": 0}, 42)
    assert same != evaluation_fingerprint(manifest, {"max_questions": 6}, 42)
