"""A Weaviate cluster on one machine: N `weaviate-server` processes of the provisioned binary on
loopback, one Raft cluster with the settings of infra/k8s's StatefulSet (every node a voter, every
node's gossip address to join), each node with its own data folder and the same API key. For
trying replicated index versions (params.yaml `index.replication_factor`) without Kubernetes, and
for the test that kills a node while ragops builds and serves (tests/integration/test_weaviate_cluster.py).

    >>> with weaviate_cluster(Settings(), Path("/tmp/wv-cluster"), nodes=3) as cluster:  # doctest: +SKIP
    ...     os.environ.update(cluster.nodes[0].server.env())   # ragops talks to the first node
    ...     cluster.kill(2)                             # SIGKILL, a crash
    ...     cluster.restart(2)                          # same name, data and ports: it catches up

The nodes find each other by name on loopback (Weaviate's CLUSTER_IN_LOCALHOST: a node's Raft
RPC port is its Raft port + 1); a name must not contain another (Weaviate tells voters apart by
substring), hence "ragops-a", "ragops-b", ... The cluster is ready once every node is: a node
answers ready only when the Raft cluster has all its voters.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from components.index.server import (WeaviateServer, WeaviateServerError, cluster_credentials, free_ports, gossip_port,
                                     node_environment, spawn, stop_weaviate_server, wait_ready)
from components.settings import Settings

# Raft's heartbeat and election timeouts are 1 s x this; a single server sets 1 (server.py), a
# cluster keeps Weaviate's default so that busy nodes do not trigger elections.
CLUSTER_RAFT_MULTIPLIER = "5"


@dataclass
class ClusterNode:
    name: str
    log_path: Path
    env: dict[str, str] = field(repr=False)  # what it was started with: a restart reuses it
    server: WeaviateServer


@dataclass
class WeaviateCluster:
    settings: Settings
    nodes: list[ClusterNode]

    def kill(self, i: int) -> None:
        """SIGKILL node `i` (a crashed machine); its data folder stays."""
        stop_weaviate_server(self.nodes[i].server, kill=True)

    def restart(self, i: int) -> None:
        """Node `i` again, with its name, data and ports; returns once it is ready (back in the cluster)."""
        node = self.nodes[i]
        node.server = WeaviateServer(spawn(self.settings, node.server.http_port, node.env, node.log_path),
                                     node.server.http_port, node.server.grpc_port, node.server.api_key)
        wait_ready(node.server, log_path=node.log_path)

    def stop(self) -> None:
        for node in self.nodes:
            stop_weaviate_server(node.server)


def start_weaviate_cluster(settings: Settings, root: Path, nodes: int = 3,
                           environment: dict[str, str] | None = None) -> WeaviateCluster:
    """`nodes` servers with data and logs under `root`; returns when every node is ready.
    `environment` adds server settings on every node."""
    names = [f"ragops-{chr(ord('a') + i)}" for i in range(nodes)]
    taken: set[int] = set()
    ports = []
    for _ in names:
        http, grpc = free_ports(2)
        gossip = gossip_port(taken | {http, grpc})
        taken |= {http, grpc, *range(gossip, gossip + 4)}
        ports.append((http, grpc, gossip))
    join = (",".join(f"127.0.0.1:{gossip}" for _, _, gossip in ports),
            ",".join(f"{name}:{gossip + 2}" for name, (_, _, gossip) in zip(names, ports)))
    api_key, auth = secrets.token_urlsafe(32), cluster_credentials()
    extra = {"RAFT_TIMEOUTS_MULTIPLIER": CLUSTER_RAFT_MULTIPLIER, **(environment or {})}
    started: list[ClusterNode] = []
    root.mkdir(parents=True, exist_ok=True)
    try:
        for name, (http, grpc, gossip) in zip(names, ports):
            env = node_environment(root / name, grpc, gossip, api_key, auth, extra, name, join, voters=nodes)
            log_path = root / f"{name}.log"
            server = WeaviateServer(spawn(settings, http, env, log_path), http, grpc, api_key)
            started.append(ClusterNode(name, log_path, env, server))
        for node in started:  # a node is ready only once all voters have joined: start them all first
            wait_ready(node.server, log_path=node.log_path)
    except (WeaviateServerError, OSError, subprocess.SubprocessError):
        for node in started:
            stop_weaviate_server(node.server)
        raise
    return WeaviateCluster(settings, started)


@contextlib.contextmanager
def weaviate_cluster(settings: Settings, root: Path, nodes: int = 3,
                     environment: dict[str, str] | None = None) -> Iterator[WeaviateCluster]:
    cluster = start_weaviate_cluster(settings, root, nodes, environment)
    try:
        yield cluster
    finally:
        cluster.stop()
