"""Each step's peak resident memory (components/memory.py), measured from the step's own start."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from components.memory import peak_memory

pytestmark = pytest.mark.unit


def _resident_gb() -> float:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 2**20


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="the per-step peak is Linux's VmHWM")
def test_a_steps_peak_counts_what_it_allocated_not_what_came_before(capsys):
    before = np.ones(400 * 2**20 // 8)  # 400 MB, freed before the step: not the step's peak
    del before
    start = _resident_gb()
    with peak_memory("build-index-version"):
        during = np.ones(200 * 2**20 // 8)  # 200 MB touched within the step
        del during
    printed = re.fullmatch(r"build-index-version: \d+\.\d s, peak resident memory (\d+\.\d\d) GB\n",
                           capsys.readouterr().out)
    assert printed, "one line naming the step, its time and its peak"
    assert start + 0.18 <= float(printed.group(1)) < start + 0.35
