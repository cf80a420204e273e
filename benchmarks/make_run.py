"""`make run` as a new user runs it: on a fresh clone of this commit, its wall time, each step's time
and peak resident memory, the gates and the ending it printed, whether `git status` stayed clean,
and a second `make run` with nothing changed.

    .venv/bin/python benchmarks/make_run.py [--work DIR]

The clone shares the caches under ~/.cache/ragops (uv's packages, the Weaviate binary, the models),
as a second project of the same user would: its venv comes from the uv cache. Run it alone on the
machine. Takes about 15 minutes on 2 cores; the run's output streams to stderr and to
`<work>/make-run.log`.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_support import emit

ROOT = Path(__file__).resolve().parents[1]
# Prefect prints a step's line inside its own log line (`... Task run 'train-router-cc8' - train-router: 16.2 s, ...`).
STEP = re.compile(r"(?<![\w-])(?P<step>[\w-]+): (?P<seconds>[\d.]+) s, peak resident memory (?P<gb>[\d.]+) GB")
GATE = re.compile(r"gate: (?P<metric>\S+) (?P<value>-?[\d.]+) \(n=(?P<n>\d+)\) (?P<op>\S+) (?P<threshold>\S+)")
# The line each ending prints, most specific first: the summary table says `version N → champion`
# in a run that changed nothing too.
ENDINGS = {"nothing changed": "nothing changed since", "held": "no new champion", "awaiting approval": "awaits approval",
           "champion": "→ champion"}


def timed_make_run(clone: Path, log: Path) -> tuple[float, str]:
    """`make run` in `clone`, its output streamed to stderr and `log`: (seconds, output)."""
    tic = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen(["make", "run"], cwd=clone, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, env={**os.environ, "COLUMNS": "200"})
        for line in process.stdout:
            out.write(line)
            sys.stderr.write(line)
        process.wait()
    if process.returncode != 0:
        sys.exit(f"make run exited with {process.returncode}; its output: {log}")
    return time.perf_counter() - tic, log.read_text()


def ending(output: str) -> str:
    return next((name for name, marker in ENDINGS.items() if marker in output), "none of the three")


def summary(output: str) -> dict:
    """The figures a run printed: each step's time and peak, every gate, the ending, the sample answer."""
    tail = output[output.rfind("  gate: "):] if "  gate: " in output else ""
    return {
        "steps": {m["step"]: {"seconds": float(m["seconds"]), "peak_gb": float(m["gb"])} for m in STEP.finditer(output)},
        "gates": {m["metric"]: {"value": float(m["value"]), "n": int(m["n"]), "gate": f"{m['op']} {m['threshold']}"}
                  for m in GATE.finditer(output)},
        "ending": ending(output),
        "sample": [line for line in tail.splitlines() if line.startswith(("Q: ", "A: ", "citations:"))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="where the clone goes (default: a temporary folder)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="ragops-make-run-"))
    clone = work / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    first_seconds, first = timed_make_run(clone, work / "make-run.log")
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True,
                            check=True).stdout.splitlines()
    again_seconds, again = timed_make_run(clone, work / "make-run-again.log")
    emit("make_run", {"clone": str(clone), "first_run": {"seconds": round(first_seconds, 1), **summary(first)},
                      "git_status_after": status, "git_status_clean": not status,
                      "second_run": {"seconds": round(again_seconds, 1), "ending": ending(again)}})


if __name__ == "__main__":
    main()
