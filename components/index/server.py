"""A standalone Weaviate server from the provisioned binary: started on free loopback ports with
an API key, ready when it says so, stopped cleanly or killed. The shared local server of one
RAGOPS_HOME is started through it (components/index/shared_server.py), and so are the servers of
server mode and the tests.

A standalone server outlives the process that started it, so several processes (a worker,
`ragops serve`, a test killing a build) share one index:

    >>> with weaviate_server(Settings(), Path("/tmp/wv")) as server:  # doctest: +SKIP
    ...     os.environ["RAGOPS_WEAVIATE_URL"] = server.url
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from components.settings import Settings


# Settings of every Weaviate server ragops starts (embedded or standalone). Weaviate 1.35.2's
# BlockMax WAND BM25 ranks wrongly on this catalog ("Lumen Laptop 13 Lite" put two "Kestrel Laptop
# 13" documents first and the exact document nowhere in the top 3); the classic BM25 path ranks it
# first. Collection configs cannot switch it off (the server overrides usingBlockMaxWAND), only this
# variable can; set it on external servers too (infra/).
#
# RAFT_TIMEOUTS_MULTIPLIER=1: the servers ragops starts are one-node clusters, which elect themselves
# once Raft's heartbeat timeout (1 s x the multiplier, 5 by default) has passed; the multiplier
# tolerates network delay between nodes, and a single node has none. Measured on 2 shared cores:
# ready 6 to 10 s after start with the default, 2.2 to 2.8 s with 1 (fresh or existing data), and a
# `ragops run` starts it up to four times. Never set it on a multi-node cluster.
SERVER_ENVIRONMENT = {"DISABLE_TELEMETRY": "true", "ENABLE_MODULES": "", "USE_INVERTED_SEARCHABLE": "false",
                      "LOG_LEVEL": "warning", "RAFT_TIMEOUTS_MULTIPLIER": "1"}

# Nobody but the ragops processes of this machine's user may reach a server ragops starts. Weaviate
# 1.35.2 binds REST to --host, gossip and Raft to CLUSTER_BIND_ADDR, and the profiling port (which
# also serves /debug/* handlers) only when it is not disabled; but the client gRPC port and the
# cluster data API always listen on every interface (`net.Listen(":port")`, no setting changes
# it). So anonymous access is off: each start gets its own random API key (clients send it; the
# shared server's record, readable by this user only, hands it to the other ragops processes) and
# random basic-auth credentials for the cluster data API, which no client needs.
# tests/security/test_local_server.py checks the listening sockets of a started server.
# The disk usage at which the server marks its shards read-only (Weaviate's default too);
# components/index/disk.py stops an index build there.
DISK_READONLY_PERCENT = 90
LOOPBACK_ENVIRONMENT = {"CLUSTER_BIND_ADDR": "127.0.0.1", "GO_PROFILING_DISABLE": "true",
                        "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED": "false", "AUTHENTICATION_APIKEY_ENABLED": "true",
                        "AUTHENTICATION_APIKEY_USERS": "ragops"}


# weaviate-client's embedded mode gives a server 30 s and only waits for the port to open; a
# loaded 2-core CI machine once needed longer (WeaviateStartUpError right after a run's own
# server stopped), so ragops starts the binary itself and waits for readiness.
READY_TIMEOUT_S = 120
START_ATTEMPTS = 3


class WeaviateServerError(RuntimeError):
    """The server binary is missing or did not become ready."""


class _Loopback:
    """URLs and environment of a server on loopback, from its `http_port`, `grpc_port` and the
    `api_key` its clients send."""

    http_port: int
    grpc_port: int
    api_key: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    def env(self) -> dict[str, str]:
        """Environment that points ragops at this server."""
        return {"RAGOPS_WEAVIATE_URL": self.url, "RAGOPS_WEAVIATE_GRPC_URL": self.grpc_url,
                "RAGOPS_WEAVIATE_API_KEY": self.api_key}

    def connection(self) -> dict[str, str]:
        """The Settings fields that point ragops at this server: `Settings(**server.connection())`."""
        return {"weaviate_url": self.url, "weaviate_grpc_url": self.grpc_url, "weaviate_api_key": self.api_key}


@dataclass(frozen=True)
class ServerAddress(_Loopback):
    """Where a running local server listens (the process may belong to another ragops process)."""

    pid: int
    http_port: int
    grpc_port: int
    api_key: str = field(repr=False)
    started: float = 0.0  # the process's start time (psutil), which tells it from a later process with its pid


@dataclass
class WeaviateServer(_Loopback):
    process: subprocess.Popen
    http_port: int
    grpc_port: int
    api_key: str = field(repr=False)


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def gossip_port(taken: set[int]) -> int:
    """A free port whose next three are free too (and none of them in `taken`): the server derives
    its data port (gossip + 1) from it, and Raft's two ports are laid out after that."""
    for _ in range(100):
        gossip = free_ports(1)[0]
        block = range(gossip, gossip + 4)
        if taken.isdisjoint(block) and all(_is_free(port) for port in block[1:]):
            return gossip
    raise WeaviateServerError("found no block of four free loopback ports for Weaviate's cluster ports")


def binary_of(settings: Settings) -> Path:
    found = sorted(settings.weaviate_binary_dir.glob(f"weaviate-v{settings.weaviate_version}-*"))
    if not found:
        raise WeaviateServerError(f"no Weaviate {settings.weaviate_version} binary in {settings.weaviate_binary_dir}; "
                                  f"run `make setup` (infra/weaviate/provision.py)")
    return found[0]


def _log_tail(log_path: Path | None, offset: int = 0, lines: int = 15) -> str:
    """The last lines this start wrote to the log (from byte `offset` on)."""
    if log_path is None or not log_path.exists():
        return ""
    with log_path.open("rb") as fh:
        fh.seek(offset)
        tail = fh.read().decode("utf-8", errors="replace").splitlines()[-lines:]
    return f"; the last lines of {log_path}:\n" + "\n".join(tail) if tail else f"; {log_path} is empty"


def _listens_on(pid: int, port: int) -> bool:
    """The process `pid` itself holds the listening socket of `port`: a 200 from the port proves
    nothing when another program took it."""
    with contextlib.suppress(psutil.Error):
        return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port
                   for c in psutil.Process(pid).net_connections(kind="tcp"))
    return False


def is_ready(server: _Loopback, pid: int) -> bool:
    """/v1/.well-known/ready answers 200 (the schema and shards are loaded, not just the port open)
    from a port the process `pid` itself listens on."""
    with contextlib.suppress(OSError):
        with urllib.request.urlopen(f"{server.url}/v1/.well-known/ready", timeout=5) as response:
            return response.status == 200 and _listens_on(pid, server.http_port)
    return False


def wait_ready(server: WeaviateServer, timeout_s: float = READY_TIMEOUT_S, log_path: Path | None = None,
               log_offset: int = 0) -> None:
    """Until the server just started is ready, or raise if it exits first or takes too long."""
    deadline = time.monotonic() + timeout_s
    process = server.process
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise WeaviateServerError(f"Weaviate exited with code {process.returncode} before it was ready"
                                      + _log_tail(log_path, log_offset))
        if is_ready(server, process.pid):
            return
        time.sleep(0.2)
    raise WeaviateServerError(f"Weaviate at {server.url} was not ready after {timeout_s:.0f} s"
                              + _log_tail(log_path, log_offset))


def start_weaviate_server(settings: Settings, data_path: Path, log_path: Path | None = None,
                          environment: dict[str, str] | None = None, api_key: str | None = None) -> WeaviateServer:
    """Start the server on free loopback ports with its data in `data_path`; returns when ready.
    Clients authenticate with `api_key` (a random one by default; see LOOPBACK_ENVIRONMENT);
    `environment` adds or overrides server settings. Ports are free when picked but another
    process can take one before the server binds it (seen with several servers starting in one test
    run): a start that fails on a taken port is retried on new ports."""
    api_key = api_key or secrets.token_urlsafe(32)
    for _ in range(START_ATTEMPTS - 1):
        try:
            return _start_once(settings, data_path, log_path, environment or {}, api_key)
        except WeaviateServerError as exc:
            if "address already in use" not in str(exc):
                raise
    return _start_once(settings, data_path, log_path, environment or {}, api_key)


def node_environment(data_path: Path, grpc: int, gossip: int, api_key: str, cluster_auth: tuple[str, str],
                     environment: dict[str, str], name: str = "ragops", join: tuple[str, str] | None = None,
                     voters: int = 1) -> dict[str, str]:
    """The environment of one node: its data folder, gRPC port and cluster ports (gossip; data,
    Raft and Raft RPC on the next three), the API key clients send, the cluster data API's
    credentials (the same on every node of a cluster), `environment` on top. `join`: the gossip
    addresses and the Raft members ("name:raft port", ...) of a cluster of `voters` nodes; a
    single server joins itself."""
    data_path.mkdir(parents=True, exist_ok=True)
    gossip_join, raft_join = join or ("", name)
    return {**os.environ, "PERSISTENCE_DATA_PATH": str(data_path), "GRPC_PORT": str(grpc),
            **SERVER_ENVIRONMENT, **LOOPBACK_ENVIRONMENT, "AUTHENTICATION_APIKEY_ALLOWED_KEYS": api_key,
            "CLUSTER_BASIC_AUTH_USERNAME": cluster_auth[0], "CLUSTER_BASIC_AUTH_PASSWORD": cluster_auth[1],
            "DISK_USE_READONLY_PERCENTAGE": str(DISK_READONLY_PERCENT), **environment,
            # on one machine: each node's own Raft ports (RPC = Raft + 1), found by name
            "CLUSTER_HOSTNAME": name, "CLUSTER_IN_LOCALHOST": "true", "CLUSTER_ADVERTISE_ADDR": "127.0.0.1",
            "CLUSTER_GOSSIP_BIND_PORT": str(gossip), "CLUSTER_DATA_BIND_PORT": str(gossip + 1),
            "RAFT_PORT": str(gossip + 2), "RAFT_INTERNAL_RPC_PORT": str(gossip + 3), "RAFT_JOIN": raft_join,
            "RAFT_BOOTSTRAP_EXPECT": str(voters), **({"CLUSTER_JOIN": gossip_join} if gossip_join else {})}


def spawn(settings: Settings, http: int, env: dict[str, str], log_path: Path | None) -> subprocess.Popen:
    """The server binary on `http`, in its own session, its output appended to `log_path`."""
    with open(log_path or os.devnull, "ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen([str(binary_of(settings)), "--host", "127.0.0.1", "--port", str(http), "--scheme", "http"],
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def cluster_credentials() -> tuple[str, str]:
    """Random credentials of the cluster data API, which no client needs."""
    return secrets.token_hex(8), secrets.token_urlsafe(32)


def _start_once(settings: Settings, data_path: Path, log_path: Path | None,
                environment: dict[str, str], api_key: str) -> WeaviateServer:
    http, grpc = free_ports(2)
    gossip = gossip_port({http, grpc})
    env = node_environment(data_path, grpc, gossip, api_key, cluster_credentials(), environment)
    start = log_path.stat().st_size if log_path and log_path.exists() else 0
    server = WeaviateServer(spawn(settings, http, env, log_path), http, grpc, api_key)
    try:
        wait_ready(server, log_path=log_path, log_offset=start)
    except WeaviateServerError:
        stop_weaviate_server(server)
        raise
    return server


def stop_weaviate_server(server: WeaviateServer, kill: bool = False) -> None:
    """SIGTERM (a clean shutdown that flushes to disk) or SIGKILL (a crash, for fault tests)."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@contextlib.contextmanager
def weaviate_server(settings: Settings, data_path: Path, log_path: Path | None = None,
                    environment: dict[str, str] | None = None, api_key: str | None = None) -> Iterator[WeaviateServer]:
    server = start_weaviate_server(settings, data_path, log_path, environment, api_key)
    try:
        yield server
    finally:
        stop_weaviate_server(server)
