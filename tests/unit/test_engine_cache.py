"""The cache of converted generators (components/models/engine_cache.py): what names an entry, and what is
pruned; and what a failed conversion says."""

from __future__ import annotations

import os

import pytest

from components.models.engine_cache import _prune, convert, weights_key

pytestmark = pytest.mark.unit


def test_an_entry_is_named_by_the_adapters_own_files_not_its_subfolders_or_where_it_was_downloaded(tmp_path):
    first, second = tmp_path / "run-1" / "adapter", tmp_path / "run-2" / "adapter"
    for folder in (first, second):
        (folder / "answerability").mkdir(parents=True)
        (folder / "adapter_model.safetensors").write_bytes(b"lora weights")
    (first / "answerability" / "model.safetensors").write_bytes(b"a check")
    (second / "answerability" / "model.safetensors").write_bytes(b"another check")
    assert weights_key(first) == weights_key(second)  # the same adapter, downloaded twice, another check beside it
    (second / "adapter_model.safetensors").write_bytes(b"other lora weights")
    assert weights_key(first) != weights_key(second)


def test_a_conversion_is_reused_and_only_the_most_recently_used_are_kept(tmp_path):
    cache = tmp_path / "ct2"
    written = []

    def prepare(scratch: str) -> str:  # stands in for writing a merged model; the converter is not run
        written.append(scratch)
        return scratch

    for i in range(5):
        (cache / f"entry-{i}").mkdir(parents=True)
        os.utime(cache / f"entry-{i}", (1000 + i, 1000 + i))
    assert convert(prepare, cache / "entry-0", converter=None) == cache / "entry-0" and not written  # there: used, not converted
    _prune(cache, 3)
    assert sorted(p.name for p in cache.iterdir()) == ["entry-0", "entry-3", "entry-4"]


def test_a_generator_openvino_cannot_convert_names_its_folder_and_the_setting_that_avoids_it(tmp_path):
    from components.models.ov_engine import convert_folder

    folder = tmp_path / "generator"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')  # weights missing: the export fails
    with pytest.raises(RuntimeError, match="serve.inference_engine: ctranslate2") as failure:
        convert_folder(str(folder), str(tmp_path / "out"))
    assert str(folder) in str(failure.value)
