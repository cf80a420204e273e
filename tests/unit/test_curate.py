"""Curation: normalisation, duplicates, and errors naming file, record and fix (leakage of evaluation
questions into training data: tests/data/test_bad_inputs.py)."""

import random

import pytest

from components.config import DataConfig, IndexConfig
from components.data.curate import (CurationError, curate_documents, jaccard, normalize_text, read_documents,
                                    read_jsonl, shingles)

pytestmark = pytest.mark.unit

FIELDS = IndexConfig().metadata_fields


def _doc(doc_id, text):
    return {"id": doc_id, "text": text, "source": f"{doc_id}.md"}


def test_normalize_text_collapses_spaces_keeps_paragraphs():
    assert normalize_text("a  \t b\r\n\r\n\r\n\nc ") == "a b\n\nc"


def test_exact_and_near_duplicates_are_dropped():
    base = "The Kettlo Glass Kettle boils 1.7 litres of water in three minutes flat with a 2200 W element."
    docs = [_doc("a", base), _doc("b", base), _doc("c", base.replace("flat", "flat!")),
            _doc("d", "A completely different document about laptops and their batteries.")]
    kept, dropped = curate_documents(docs, DataConfig(), FIELDS)
    assert [d["id"] for d in kept] == ["a", "d"]
    assert any("b: exact duplicate of a" in note for note in dropped)
    assert any(note.startswith("c: near duplicate of a") for note in dropped)
    assert all(len(d["content_hash"]) == 64 for d in kept)


def test_the_lsh_near_duplicate_check_drops_what_comparing_every_pair_drops():
    """400 random documents and 150 edited copies (1 to 4 words changed: Jaccard from about 0.95
    down to 0.75, around the 0.9 threshold): the MinHash LSH check keeps exactly the documents
    the exhaustive pairwise comparison keeps."""
    rng = random.Random(7)
    words = [f"w{i}" for i in range(3000)]
    docs = [_doc(f"d{i}", " ".join(rng.choices(words, k=70))) for i in range(400)]
    for j in range(150):
        text = docs[rng.randrange(400)]["text"].split()
        for _ in range(1 + j % 4):
            text[rng.randrange(len(text))] = rng.choice(words)
        docs.append(_doc(f"e{j}", " ".join(text)))
    rng.shuffle(docs)
    config = DataConfig()
    kept, _ = curate_documents(docs, config, FIELDS)
    reference: list[tuple[str, set]] = []
    for doc in docs:
        grams = shingles(doc["text"])
        if all(jaccard(grams, other) < config.near_duplicate_threshold for _, other in reference):
            reference.append((doc["id"], grams))
    assert [d["id"] for d in kept] == [doc_id for doc_id, _ in reference]
    assert 400 < len(kept) < 550  # some copies are near duplicates, some are not


def test_duplicate_id_is_an_error_naming_both_files():
    with pytest.raises(CurationError, match="duplicate document id"):
        curate_documents([_doc("a", "x" * 40), {**_doc("a", "y" * 40), "source": "other.md"}], DataConfig(), FIELDS)


def test_too_short_document_is_an_error():
    with pytest.raises(CurationError, match=r"a\.md \(id a\).*outside data.min_doc_chars"):
        curate_documents([_doc("a", "tiny")], DataConfig(), FIELDS)


def test_malformed_json_line_names_the_line(tmp_path):
    path = tmp_path / "router.jsonl"
    path.write_text('{"id": "r1", "text": "hi"}\n{"id": "r2", "text": \n')
    with pytest.raises(CurationError, match=r"router.jsonl:2: malformed JSON"):
        read_jsonl(path)


def test_non_utf8_document_names_the_file(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9 au lait and more words here")
    with pytest.raises(CurationError, match=r"bad.txt: not valid UTF-8"):
        read_documents(tmp_path)


def test_markdown_without_id_is_rejected(tmp_path):
    (tmp_path / "x.md").write_text("---\nname: X\n---\nbody text long enough")
    with pytest.raises(CurationError, match="no 'id'"):
        read_documents(tmp_path)


def test_all_three_document_formats_are_read(tmp_path):
    (tmp_path / "a.md").write_text("---\nid: a\nprice: 3.5\n---\n# A\nbody")
    (tmp_path / "b.txt").write_text("plain text")
    (tmp_path / "c.jsonl").write_text('{"id": "c", "text": "from jsonl"}\n')
    docs = read_documents(tmp_path)
    assert {d["id"] for d in docs} == {"a", "b", "c"}
    assert next(d for d in docs if d["id"] == "a")["price"] == 3.5


def test_a_domains_own_metadata_fields_are_type_checked_where_present():
    fields = {"section": "text", "votes": "int"}
    kept, _ = curate_documents([_doc("a", "x" * 40), {**_doc("b", "y" * 40), "section": "Strings", "votes": 3}],
                               DataConfig(), fields)
    assert [d.get("votes") for d in kept] == [None, 3]
    with pytest.raises(CurationError, match=r"\(id b\): 'section' must be text \(quote it\) \(index.metadata_fields: text\), "
                                            r"got int 12; fix the front matter"):
        curate_documents([{**_doc("b", "y" * 40), "section": 12}], DataConfig(), fields)


def test_the_committed_dvc_locks_match_the_curation_code(project_root, tmp_path):
    """A change to a file a curate stage depends on must come with its dvc.lock (the demo's and every
    shipped example's), or every fresh clone re-curates on its first run and is left with a modified
    dvc.lock (the integration test in tests/integration/test_dvc_versioning.py finds it too, 15
    minutes later). An example's committed dvc.yaml is the one a run writes for its params file."""
    import hashlib
    import json
    import shutil

    import yaml

    from components.config import load_params
    from components.data.versioning import stage_file

    examples = sorted(project_root.glob("examples/*/dvc.yaml"))
    assert examples, "no shipped example has its DVC stage committed"
    for stages in [project_root / "dvc.yaml", *examples]:
        lock = yaml.safe_load((stages.parent / "dvc.lock").read_text())["stages"]["curate"]
        assert any(dep["path"].endswith(".py") for dep in lock["deps"]), f"{stages.parent / 'dvc.lock'} names no code"
        for dep in lock["deps"]:
            path = project_root / dep["path"]
            if dep["md5"].endswith(".dir"):  # DVC's: the md5 of its files' {md5, relpath} list (.dvcignore: no __pycache__)
                listing = [{"md5": hashlib.md5(f.read_bytes()).hexdigest(), "relpath": f.relative_to(path).as_posix()}
                           for f in sorted(path.rglob("*")) if f.is_file() and "__pycache__" not in f.parts]
                actual = hashlib.md5(json.dumps(listing, sort_keys=True).encode()).hexdigest() + ".dir"
            else:
                actual = hashlib.md5(path.read_bytes()).hexdigest()
            assert actual == dep["md5"], (f"{stages.parent / 'dvc.lock'} is stale for {dep['path']}: run `dvc repro "
                                          f"{stages.relative_to(project_root)}:curate` and commit the lock")
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(project_root / name, tmp_path / name)
    for stages in examples:
        params = stages.parent / "params.yaml"
        copy = tmp_path / params.relative_to(project_root)
        copy.parent.mkdir(parents=True)
        shutil.copy(params, copy)
        written = stage_file(tmp_path, copy, load_params(copy).data.curated_dir)
        assert written.read_text() == stages.read_text(), f"{stages} differs from what a run writes: rerun its example"
