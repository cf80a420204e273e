"""The cache of generators converted for an inference engine (components/models/ct2.py,
components/models/ov_engine.py): each engine reads its own model format, so the generator with its
adapter merged (or the base model alone) is converted once and kept under
`$RAGOPS_HOME/cache/<engine>/<engine version>-<key>`, the key a hash of the adapter's weights and the
base model. Every process that serves or evaluates the same generator converts it once.

Converting holds much more memory than answering: for SmolLM2-135M and OpenVINO, a merged copy of
the generator, the model loaded again for tracing and the converter's constants, ~2.5 GB above the
~1 GB the converted model answers in. `convert_in_child` converts in a child process, which gives
all of it back to the system when it exits; a run's evaluation and a server stay small.

    >>> entry = cache / f"{version}-{weights_key(base_folder)}"
    >>> target = convert(lambda scratch: base_folder, entry, converter)  # doctest: +SKIP
    >>> convert_in_child(converter, base_folder, adapter_folder, entry)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

from components.memory import process_peak_bytes
from components.models.generator import load_generator


class Engine(NamedTuple):
    """An inference engine: what answers (built from a converted folder and the tokenizer), what
    converts a transformers model folder for it, and its version (part of a conversion's name)."""

    generator: Callable[[Path, Any], Any]
    convert_folder: Callable[[str, str], None]
    version: str


LARGE_FILE = 64 << 20  # bytes
# Conversions kept in the cache of each engine: the champion's generator, a candidate's, and the base
# model (the ablation's and general prompts' baseline), with one to spare.
KEEP_CONVERTED = 4


def weights_key(*paths: str | Path) -> str:
    """A key for the conversion of the model under each of `paths` (an adapter folder, a base model
    folder): the files at the top of each folder (not its subfolders: the answerability check lives
    in one of the adapter's and is no part of the generator), small ones by content, a large one (a
    base model's weights, kept in the model cache and never rewritten) by path, size and
    modification time, so that loading a bundle does not read half a gigabyte to name its cache
    entry."""
    digest = hashlib.sha256()
    for root in map(Path, paths):
        files = sorted(p for p in root.iterdir() if p.is_file()) if root.is_dir() else [root]
        for path in files:
            stat = path.stat()
            digest.update(f"{path.name}|{stat.st_size}".encode())
            if stat.st_size > LARGE_FILE:
                digest.update(f"{path.resolve()}|{stat.st_mtime_ns}".encode())
                continue
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:24]


def convert(prepare: Callable[[str], str], target: Path, converter: Callable[[str, str], None]) -> Path:
    """The transformers model folder `prepare(scratch)` names, converted by `converter(folder, out)`
    into `target`: `prepare` writes one into the scratch folder (a generator with its adapter
    merged) or returns one that exists (the base model's, converted where it lies). Written beside
    `target` and renamed into place, so a reader never sees half a model and two processes
    converting at once both end with a whole one. An existing `target` is kept."""
    if target.exists():
        os.utime(target)  # used now: pruning keeps the most recently used
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _prune(target.parent, KEEP_CONVERTED - 1)
    with tempfile.TemporaryDirectory(prefix="convert-", dir=target.parent) as tmp:
        converter(prepare(tmp), f"{tmp}/converted")
        try:
            os.rename(f"{tmp}/converted", target)
        except OSError:
            if not target.exists():  # not a concurrent conversion that won the rename
                raise
    return target


def convert_generator(converter: Callable[[str, str], None], base_path: str, adapter: str | None,
                      target: Path) -> Path:
    """The generator with `adapter` merged into its base model (None: the base model alone),
    converted by `converter` into `target` (`convert`)."""
    def prepare(scratch: str) -> str:
        if adapter is None:
            return base_path  # converted where it lies
        model, tokenizer = load_generator(adapter, base_path)
        model.merge_and_unload().save_pretrained(f"{scratch}/hf")
        tokenizer.save_pretrained(f"{scratch}/hf")
        return f"{scratch}/hf"

    return convert(prepare, target, converter)


def _convert_and_measure(*args: Any) -> tuple[Path, int]:
    return convert_generator(*args), process_peak_bytes()


def convert_in_child(converter: Callable[[str, str], None], base_path: str, adapter: str | None,
                     target: Path) -> Path:
    """`convert_generator` in a new Python process: what converting allocates is handed back to the
    system when the process exits, and this one stays as large as it was. Spawned, not forked: a fork
    of a process whose torch and OpenVINO threads are running can deadlock. Its errors are raised
    here."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        folder, peak = pool.submit(_convert_and_measure, converter, base_path, adapter, target).result()
    print(f"{target.parent.name}: converted the generator in a child process (its peak resident memory "
          f"{peak / 2**30:.2f} GB)")
    return folder


# A child process costs a Python start with torch and the engine (~3-5 s on 2 cores, more on a busy
# machine): a model whose weights are smaller than this converts in the calling process, holding a
# few times its size for seconds (the tests' tiny models, ~2 MB; SmolLM2-135M is 538 MB).
CHILD_CONVERSION_BYTES = 64 << 20


def converted(converter: Callable[[str, str], None], base_path: str, adapter: str | None, target: Path) -> Path:
    """`target`, the generator converted where the cache lacks it (`convert_generator`): in a child
    process for a model of CHILD_CONVERSION_BYTES or more, in this one for a smaller one. An
    existing conversion is marked as used."""
    if not target.exists() and _folder_bytes(base_path) >= CHILD_CONVERSION_BYTES:
        convert_in_child(converter, base_path, adapter, target)
    return convert_generator(converter, base_path, adapter, target)


def _folder_bytes(folder: str) -> int:
    return sum(p.stat().st_size for p in Path(folder).iterdir() if p.is_file())


def _prune(cache: Path, keep: int) -> None:
    """Remove all but the `keep` most recently used conversions (each is as large as the model: a
    new generator version every day would otherwise fill the disk). A process that already loaded
    one keeps it in memory; one that needs it again converts it again."""
    entries = sorted((p for p in cache.iterdir() if p.is_dir() and not p.name.startswith("convert-")),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[keep:]:
        shutil.rmtree(old, ignore_errors=True)
