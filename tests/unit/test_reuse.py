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


def test_the_producing_code_is_followed_through_imports():
    """A module the producing functions come to use is in the digest without being named (a moved
    or new helper module cannot be forgotten); configuration, settings and serving are not."""
    from components.registry.reuse import NOT_PRODUCING, PRODUCING_CODE, producing_modules

    found = {kind: set(producing_modules(kind)) for kind in PRODUCING_CODE}
    for kind, roots in PRODUCING_CODE.items():
        assert set(roots) <= found[kind]
        assert not {m for m in found[kind] for other in NOT_PRODUCING if m == other or m.startswith(other + ".")}
    assert {"components.training.generator_examples", "components.training.checkpoint",
            "components.evaluation.metrics"} <= found["generator"]  # imported, not named
    assert {"components.models.router", "components.index.search", "components.prompting"} <= found["bundle"]
    assert not any(m.startswith(("components.serving", "components.stages", "components.training"))
                   for m in found["bundle"])
