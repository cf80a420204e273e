"""The documents watcher: a burst of file changes is reported once, with all of them."""

import threading
import time

import pytest

from components.data.watch import Changes, diff, snapshot, watch_folder

pytestmark = pytest.mark.unit


def test_diff_names_added_modified_and_removed(tmp_path):
    (tmp_path / "a.md").write_text("a")
    (tmp_path / "b.md").write_text("b")
    before = snapshot(tmp_path)
    (tmp_path / "a.md").write_text("a, longer")
    (tmp_path / "b.md").unlink()
    (tmp_path / "c.md").write_text("c")
    (tmp_path / "ignored.tmp").write_text("x")
    assert diff(before, snapshot(tmp_path)) == Changes(added=["c.md"], modified=["a.md"], removed=["b.md"])
    assert not diff(before, before)


def test_a_burst_is_reported_once_and_a_later_change_again(tmp_path):
    for i in range(10):
        (tmp_path / f"d{i}.md").write_text("v1")
    reports: list[Changes] = []
    stop = threading.Event()
    watcher = threading.Thread(target=watch_folder, args=(tmp_path, reports.append, 0.1, 0.5, stop))
    watcher.start()
    try:
        time.sleep(0.3)
        for i in range(10):  # ten edits, 0.1 s apart: one burst
            (tmp_path / f"d{i}.md").write_text(f"v2 of {i}")
            time.sleep(0.1)
        deadline = time.monotonic() + 10
        while not reports and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        assert len(reports) == 1 and reports[0].modified == [f"d{i}.md" for i in range(10)]
        (tmp_path / "d3.md").unlink()
        deadline = time.monotonic() + 10
        while len(reports) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert reports[1] == Changes(added=[], modified=[], removed=["d3.md"])
    finally:
        stop.set()
        watcher.join()
