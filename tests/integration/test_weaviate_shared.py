"""The local Weaviate server of one RAGOPS_HOME is shared by every ragops process using it: the
first starts it, later ones reuse it, the last one stops it, and a killed owner's server is
taken over. Real processes, real servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from components.index.shared_server import _pid_alive, shared_weaviate
from components.index.store import connect_weaviate
from components.settings import Settings

pytestmark = pytest.mark.integration

# SIGINT is restored explicitly: a shell starting the test run in the background makes its
# children ignore SIGINT, and this holder must leave cleanly on it.
HOLDER = textwrap.dedent("""
    import signal, sys, time
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from pathlib import Path
    from components.settings import Settings
    from components.index.shared_server import shared_weaviate
    with shared_weaviate(Settings(home=Path(sys.argv[1]))) as address:
        print(address.pid, flush=True)
        time.sleep(float(sys.argv[2]))
""")


def _holder(home, seconds: float) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(home), str(seconds)], stdout=subprocess.PIPE,
                               text=True, cwd=os.getcwd())
    return process, int(process.stdout.readline())


def test_users_of_one_home_share_one_server_and_the_last_stops_it(tmp_path):
    settings = Settings(home=tmp_path / "home")
    other, pid = _holder(settings.home, 600)  # another ragops process started the server
    try:
        with connect_weaviate(settings) as client:  # this one reuses it instead of starting a second
            assert client.is_ready()
            record = json.loads((settings.home / "weaviate-server.json").read_text())
            assert record["pid"] == pid
            with shared_weaviate(settings) as nested:
                assert nested.pid == pid
            other.send_signal(signal.SIGINT)  # the starter leaves first, cleanly: the server stays for us
            other.wait(timeout=60)
            assert _pid_alive(pid) and client.is_ready()
        deadline = time.monotonic() + 60
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _pid_alive(pid), "the last user left the server running"
        assert not (settings.home / "weaviate-server.json").exists()
    finally:
        other.kill()


def test_a_killed_owners_server_is_taken_over_and_stopped(tmp_path):
    settings = Settings(home=tmp_path / "home")
    owner, pid = _holder(settings.home, 600)
    owner.kill()  # SIGKILL: no clean-up, the server keeps running and stays advertised
    owner.wait(timeout=60)
    assert _pid_alive(pid)
    with shared_weaviate(settings) as address:
        assert address.pid == pid
    deadline = time.monotonic() + 60
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _pid_alive(pid)
    with shared_weaviate(settings) as fresh:  # the record is gone: a new server starts
        assert fresh.pid != pid and _pid_alive(fresh.pid)
