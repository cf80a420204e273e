"""Peak resident memory of each pipeline step, printed when the step ends: what a machine needs
for a run, and where to look when it needs too much.

On Linux a step's own peak: the kernel's high-water mark of the process (VmHWM) is reset when the
step starts (writing 5 to /proc/self/clear_refs) and read when it ends. Elsewhere the process's
peak so far (getrusage), which includes the steps before it and says so.

    >>> with peak_memory("curate-and-version"):  # doctest: +SKIP
    ...     ...
    curate-and-version: peak resident memory 0.61 GB
"""

from __future__ import annotations

import contextlib
import resource
import sys
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


@contextlib.contextmanager
def peak_memory(step: str) -> Iterator[None]:
    reset = _reset_peak()
    try:
        yield
    finally:
        scope = "" if reset else " (the process's peak so far)"
        print(f"{step}: peak resident memory {_peak_bytes(reset) / 2**30:.2f} GB{scope}")
