"""Resident memory of a run: each pipeline step's peak, printed with its time when the step ends,
and memory the allocator kept after a large job handed back to the system.

On Linux a step's own peak: the kernel's high-water mark of the process (VmHWM) is reset when the
step starts (writing 5 to /proc/self/clear_refs) and read when it ends. Elsewhere the process's
peak so far (getrusage), which includes the steps before it and says so.

glibc's malloc keeps what a freed tensor used for the next allocation of the process: after the
generator's training, 2.8 GB of 3.8 GB resident was such kept memory (demo, 2026-12-05), and every
later step of the run carried it. `release_freed_memory` returns it (malloc_trim) between jobs.

    >>> with peak_memory("curate-and-version"):  # doctest: +SKIP
    ...     ...
    curate-and-version: 3.9 s, peak resident memory 0.61 GB
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path

STATUS, CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def _reset_peak() -> bool:
    """Start a new high-water mark; False where the platform has none to reset."""
    try:
        CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def _peak_bytes(reset: bool) -> int:
    if reset:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def process_peak_bytes() -> int:
    """The peak resident memory of this process since it started or a step reset it: VmHWM on
    Linux, which a spawned child has of its own (getrusage's would include the parent's size when it
    forked the child)."""
    return _peak_bytes(reset=STATUS.exists())


def release_freed_memory() -> None:
    """Collect garbage and hand what the allocator keeps back to the system (glibc only; a no-op
    elsewhere). Costs milliseconds: call it after a job that allocated a lot, not in a loop."""
    gc.collect()
    if sys.platform.startswith("linux"):
        # The C library already loaded into this process (ctypes.util.find_library would run ldconfig each call)
        with contextlib.suppress(OSError, AttributeError):  # not glibc (musl has no malloc_trim)
            ctypes.CDLL(None).malloc_trim(0)


@contextlib.contextmanager
def peak_memory(step: str) -> Iterator[None]:
    """Print the step's time and peak when it ends, and release what it freed for the steps after it."""
    reset, tic = _reset_peak(), time.perf_counter()
    try:
        yield
    finally:
        scope = "" if reset else " (the process's peak so far)"
        print(f"{step}: {time.perf_counter() - tic:.1f} s, peak resident memory {_peak_bytes(reset) / 2**30:.2f} GB{scope}")
        release_freed_memory()
