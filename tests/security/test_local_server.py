"""The local Weaviate server a ragops home runs is for this user's ragops processes only.

Run-time checks on a real server started the way every ragops command starts it (`shared_weaviate`):
its listening sockets, what an anonymous client gets on each, the modes of the home and of the
files that hold its key and locks, and a record whose pid now belongs to another process.
"""

from __future__ import annotations

import http.server
import json
import stat
import subprocess
import threading
import time

import grpc
import httpx
import psutil
import pytest
from weaviate.proto.v1.v6300.v1 import search_get_pb2, weaviate_pb2_grpc

from components.index.shared_server import shared_weaviate
from components.index.store import connect_weaviate
from components.settings import Settings

pytestmark = pytest.mark.security


def _listening(pid: int) -> dict[int, str]:
    """{port: bound address} of the TCP sockets `pid` listens on."""
    return {c.laddr.port: c.laddr.ip for c in psutil.Process(pid).net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN}


def _grpc_search(port: int, key: str | None = None) -> str:
    """What one gRPC search of the Probe collection on the client API port gets: "ok", or the error
    (Weaviate 1.35.2 refuses a missing or wrong key with UNKNOWN "... unauthorized: invalid api key")."""
    metadata = (("authorization", f"Bearer {key}"),) if key else ()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            weaviate_pb2_grpc.WeaviateStub(channel).Search(search_get_pb2.SearchRequest(collection="Probe"),
                                                           metadata=metadata, timeout=10)
        except grpc.RpcError as exc:
            return f"{exc.code()}: {exc.details()}"
    return "ok"


def test_local_server_answers_only_loopback_or_its_key(tmp_path):
    settings = Settings(home=tmp_path / "home")
    with shared_weaviate(settings) as server:
        sockets = _listening(server.pid)
        udp = {c.laddr.ip for c in psutil.Process(server.pid).net_connections(kind="udp")}
        exposed = {port for port, ip in sockets.items() if ip != "127.0.0.1"}
        # REST, gossip and Raft are on loopback; no profiling port (it serves /debug/* handlers).
        assert sockets.get(server.http_port) == "127.0.0.1"
        assert udp <= {"127.0.0.1"}, udp
        assert len(sockets) == 6, sockets  # REST, gRPC, gossip, data API, Raft, Raft RPC
        # Weaviate binds the client gRPC port and the cluster data API on every interface whatever
        # it is told: both must refuse anyone without the credentials only ragops holds.
        data_api = exposed - {server.grpc_port}
        assert exposed == {server.grpc_port} | data_api and len(data_api) == 1, sockets
        with connect_weaviate(settings) as client:  # ragops itself gets in
            client.collections.create("Probe")
        assert _grpc_search(server.grpc_port, server.api_key) == "ok"
        for key in (None, "wrong"):
            assert "unauthorized" in _grpc_search(server.grpc_port, key), key
        data_port = data_api.pop()
        for path in ("/indices/", "/nodes/status", "/cluster/users/db/"):
            assert httpx.get(f"http://127.0.0.1:{data_port}{path}", timeout=10).status_code == 401, path
        assert httpx.get(f"{server.url}/v1/schema", timeout=10).status_code == 401

        home = settings.home
        modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in
                 (home, home / "weaviate-server.json", home / "weaviate-start.lock", home / "weaviate-users.lock")}
        assert modes == {"home": 0o700, "weaviate-server.json": 0o600, "weaviate-start.lock": 0o600,
                         "weaviate-users.lock": 0o600}, {k: oct(v) for k, v in modes.items()}


class _Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_record_whose_pid_was_reused_is_neither_trusted_nor_signalled(tmp_path):
    """The server a record names is gone; its pid now runs `tail -f <home>/weaviate.log` ("weaviate"
    in its command line) and its port answers 200 to anything. ragops starts a server of its own
    and never signals the stranger."""
    settings = Settings(home=tmp_path / "home")
    settings.home.mkdir(mode=0o700)
    (settings.home / "weaviate.log").touch()
    stranger = subprocess.Popen(["tail", "-f", str(settings.home / "weaviate.log")])
    squatter = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ready)
    threading.Thread(target=squatter.serve_forever, daemon=True).start()
    try:
        port = squatter.server_address[1]
        started = psutil.Process(stranger.pid).create_time()
        (settings.home / "weaviate-server.json").write_text(json.dumps(
            {"pid": stranger.pid, "http_port": port, "grpc_port": port, "api_key": "old", "started": started - 60}))
        with connect_weaviate(settings) as client:
            assert client.is_ready()
            advertised = json.loads((settings.home / "weaviate-server.json").read_text())
            assert advertised["pid"] != stranger.pid and advertised["http_port"] != port
        time.sleep(0.5)
        assert stranger.poll() is None, "ragops signalled a process that only reused the server's pid"
    finally:
        squatter.shutdown()
        stranger.kill()
