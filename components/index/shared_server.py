"""The shared local Weaviate server of one RAGOPS_HOME.

Without RAGOPS_WEAVIATE_URL every ragops process of one RAGOPS_HOME uses one local server
(`shared_weaviate`): `ragops serve`, `ragops deploy` and its flow runs, and a `ragops run` in
another terminal read and write the same data path, and two servers on one data path would
corrupt it. The first user starts it (components/index/server.py), the last one stops it.

    >>> with shared_weaviate(Settings()) as address:  # doctest: +SKIP
    ...     client = connect(Settings(**address.connection()))
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import psutil

from components.index.server import (READY_TIMEOUT_S, ServerAddress, WeaviateServer, WeaviateServerError, is_ready,
                                     start_weaviate_server, stop_weaviate_server)
from components.settings import Settings, file_lock, open_private, private_dir


# Servers this process started through shared_weaviate, by pid: stopped through their Popen so
# the child is reaped (a zombie would still look alive to os.kill(pid, 0)).
_STARTED_HERE: dict[int, WeaviateServer] = {}


def _pid_alive(pid: int) -> bool:
    """Running (a zombie, exited but not yet reaped by its parent, counts as gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True


def _started_at(pid: int) -> float:
    """When `pid` started: with the pid, what tells a server from a later process that reused its pid."""
    return psutil.Process(pid).create_time()


def _wait_gone(pid: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def _is_server_of(address: ServerAddress) -> bool:
    """The process the record names is still that server: the same pid started at the recorded
    time (a pid is reused, a start time with it is not) and alive."""
    with contextlib.suppress(psutil.Error):
        return _pid_alive(address.pid) and abs(_started_at(address.pid) - address.started) < 0.01
    return False


def _advertised(record: Path) -> ServerAddress | None:
    """The server the record names, once it is ready; None (and the record removed) if its process
    is gone. A live server that is not ready yet (starting, or slow on a loaded machine) is waited
    for, never replaced: a second server on the same data path would corrupt it."""
    address = _read_address(record)
    if address is None:
        _refuse_legacy(record)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while address is not None and _is_server_of(address):
        if is_ready(address, address.pid):
            return address
        if time.monotonic() > deadline:
            raise WeaviateServerError(
                f"the Weaviate server {record} names (pid {address.pid}, {address.url}) runs but was not ready after "
                f"{READY_TIMEOUT_S} s; wait for it, or stop it (kill {address.pid}) and retry")
        time.sleep(0.5)
    record.unlink(missing_ok=True)
    return None


def _read_address(record: Path) -> ServerAddress | None:
    """The address the record names, whether or not that server still runs (None: no readable record)."""
    try:
        return ServerAddress(**json.loads(record.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _refuse_legacy(record: Path) -> None:
    """A record written by a ragops before API keys and start times names a server this one cannot
    tell from a stranger nor authenticate to; a second server on its data path would corrupt it."""
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        pid = int(json.loads(record.read_text())["pid"])
        if _pid_alive(pid):
            raise WeaviateServerError(f"{record} names a Weaviate server (pid {pid}) started by an older ragops, "
                                      f"which ragops cannot authenticate to; stop it (kill {pid}) and retry")


def _write_address(record: Path, address: ServerAddress) -> None:
    """Atomically (a reader never sees half a record), readable by this user only (it holds the key)."""
    partial = record.with_suffix(f".{os.getpid()}.tmp")
    with open_private(partial, truncate=True) as fh:
        fh.write(json.dumps(asdict(address)))
    partial.replace(record)


def _stop(address: ServerAddress) -> None:
    started = _STARTED_HERE.pop(address.pid, None)
    if started is not None:
        stop_weaviate_server(started)
        return
    if not _is_server_of(address):
        return  # gone, or the pid now belongs to another process: never signal that one
    with contextlib.suppress(ProcessLookupError):
        os.kill(address.pid, signal.SIGTERM)
    _wait_gone(address.pid)
    if _is_server_of(address):
        with contextlib.suppress(ProcessLookupError):
            os.kill(address.pid, signal.SIGKILL)


def stop_advertised(home: Path) -> None:
    """SIGKILL the local server a home's record names, if that very process still runs (tests that
    replace a home's data after a killed ragops process left its server up)."""
    address = _read_address(home / "weaviate-server.json")
    if address is not None and _is_server_of(address):
        os.kill(address.pid, signal.SIGKILL)
        _wait_gone(address.pid)


@contextlib.contextmanager
def shared_weaviate(settings: Settings, log_path: Path | None = None) -> Iterator[ServerAddress]:
    """The local Weaviate server of settings.home, started if no ragops process runs one yet.

    The running server is advertised in <home>/weaviate-server.json. Every user holds a shared
    lock on <home>/weaviate-users.lock while it uses the server; a user leaving who can take that
    lock exclusively is the last one and stops the server. Starting and stopping happen under
    <home>/weaviate-start.lock, so a user arriving never meets a server being stopped. A user
    killed with SIGKILL leaves the server running and advertised: the next user takes it over."""
    home = private_dir(settings.weaviate_data_path.parent)
    record, start_lock = home / "weaviate-server.json", home / "weaviate-start.lock"
    users = open_private(home / "weaviate-users.lock")
    try:
        with file_lock(start_lock):
            address = _advertised(record)
            if address is None:
                server = start_weaviate_server(settings, settings.weaviate_data_path, log_path)
                _STARTED_HERE[server.process.pid] = server
                address = ServerAddress(server.process.pid, server.http_port, server.grpc_port, server.api_key,
                                        _started_at(server.process.pid))
                _write_address(record, address)
            fcntl.flock(users, fcntl.LOCK_SH)
        try:
            yield address
        finally:
            with file_lock(start_lock):
                try:
                    fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    pass  # other users remain; the last of them stops it
                else:
                    # The last user stops the server it used and the one advertised now: if its server
                    # died while in use, another user of the home (a retried step, say) started a
                    # replacement, which nobody would stop otherwise.
                    advertised = _read_address(record)
                    record.unlink(missing_ok=True)
                    _stop(address)
                    if advertised is not None and advertised.pid != address.pid:
                        _stop(advertised)
    finally:
        users.close()
