"""What ragops needs from the infra files beyond what the schemas can say.

A schema accepts a Weaviate server with BlockMax WAND on, a cluster told to wait for 3 Raft voters
while it runs 5, or a password typed into a manifest. These rules reject them, on the parsed
files, so a broken deployment fails here instead of on a cluster. infra/check_infra.py runs them
on objects that passed the schema checks (so they can rely on the shapes the schemas guarantee);
each rule returns Problems naming the file, the object and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.config import Settings
from components.index.server import SERVER_ENVIRONMENT

# The settings ragops' own Weaviate servers get (components/index/server.py); LOG_LEVEL is left
# to the operator. The values come from there, so the two cannot drift apart.
WEAVIATE_REQUIRED = {key: SERVER_ENVIRONMENT[key] for key in ("DISABLE_TELEMETRY", "ENABLE_MODULES", "USE_INVERTED_SEARCHABLE")}
# ragops always sends RAGOPS_WEAVIATE_API_KEY to an external server; anonymous access stays off.
WEAVIATE_AUTH = {"AUTHENTICATION_APIKEY_ENABLED": "true", "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED": "false"}
WEAVIATE_IMAGE = "semitechnologies/weaviate"
MIN_WEAVIATE_NODES = 3

SECRET_NAME = re.compile(r"PASSWORD|SECRET|API_KEY|ALLOWED_KEYS|ACCESS_KEY|TOKEN|CREDENTIAL")
URI_PASSWORD = re.compile(r"://[^/\s:@]+:([^@\s]*)@")
# ${NAME}, ${NAME:?message} or ${NAME?message}: the value comes from the environment, no default.
COMPOSE_FROM_ENV = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?\?[^}]*)?\}")
PLACEHOLDER_SECRET = "change-me"


@dataclass(frozen=True)
class Problem:
    path: Path
    where: str
    message: str

    def __str__(self) -> str:
        shown = self.path.relative_to(Path.cwd()) if self.path.is_relative_to(Path.cwd()) else self.path
        return f"{shown}: {self.where}: {self.message}"


def known_settings_variables() -> set[str]:
    """The RAGOPS_* names Settings reads; anything else with the prefix is a typo ragops ignores."""
    prefix = Settings.model_config["env_prefix"]
    return {f"{prefix}{name}".upper() for name in Settings.model_fields}


def as_text(value: Any) -> str | None:
    """Environment values as the container sees them (YAML true → "true")."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def compose_environment(service: Mapping[str, Any]) -> dict[str, str | None]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in map(str, environment))
    if isinstance(environment, dict):
        return {str(key): as_text(value) for key, value in environment.items()}
    return {}


def container_environment(container: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {item["name"]: item for item in container.get("env") or [] if isinstance(item, dict) and "name" in item}


def pod_containers(manifest: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Containers of a workload, a Job or a bare pod spec (anything else: none)."""
    spec = manifest.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or spec
    containers = pod.get("containers") if isinstance(pod, dict) else None
    return [c for c in containers or [] if isinstance(c, dict)]


def _settings_names(path: Path, where: str, names: Iterator[str] | list[str]) -> Iterator[Problem]:
    known = known_settings_variables()
    prefix = Settings.model_config["env_prefix"].upper()
    for name in names:
        if name.startswith(prefix) and name not in known:
            yield Problem(path, where, f"{name} is not a ragops setting (components/config.py Settings reads {sorted(known)})")


def _weaviate_settings(path: Path, where: str, value_of: Mapping[str, str | None]) -> Iterator[Problem]:
    for key, wanted in {**WEAVIATE_REQUIRED, **WEAVIATE_AUTH}.items():
        if value_of.get(key) != wanted:
            yield Problem(path, where, f"Weaviate needs {key}={wanted!r} (see components/index/server.py "
                                       f"SERVER_ENVIRONMENT and API-key auth), got {value_of.get(key)!r}")


def compose_rules(path: Path, compose: Mapping[str, Any]) -> Iterator[Problem]:
    """Weaviate settings, ragops setting names and no literal secrets, per compose service."""
    for name, service in (compose.get("services") or {}).items():
        where = f"services.{name}"
        environment = compose_environment(service)
        if WEAVIATE_IMAGE in str(service.get("image", "")):
            yield from _weaviate_settings(path, where, environment)
        yield from _settings_names(path, where, list(environment))
        for key, value in environment.items():
            if value is None:
                continue
            literal_secret = SECRET_NAME.search(key) and not COMPOSE_FROM_ENV.fullmatch(value)
            password = URI_PASSWORD.search(value)
            if literal_secret or (password and not COMPOSE_FROM_ENV.fullmatch(password.group(1))):
                yield Problem(path, f"{where}.environment.{key}",
                              "a literal secret; write ${NAME:?message} and put NAME in infra/compose/.env")


def env_example_rules(path: Path, text: str, required: set[str]) -> Iterator[Problem]:
    """The .env template lists every variable compose requires, with placeholder secrets only."""
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.lstrip().startswith("#"))
    for name in sorted(required - set(values)):
        yield Problem(path, name, "required by docker-compose.yaml but missing here")
    for name, value in values.items():
        if SECRET_NAME.search(name) and not value.startswith(PLACEHOLDER_SECRET):
            yield Problem(path, name, f"must be an obvious placeholder starting with {PLACEHOLDER_SECRET!r}")


def _container_secrets(path: Path, where: str, container: Mapping[str, Any]) -> Iterator[Problem]:
    for key, item in container_environment(container).items():
        value = as_text(item.get("value"))
        if (SECRET_NAME.search(key) and value is not None) or (value and URI_PASSWORD.search(value)):
            yield Problem(path, f"{where} env {key}", "a literal secret; use valueFrom.secretKeyRef (or envFrom a Secret)")


def kubernetes_rules(path: Path, manifest: Mapping[str, Any], example: bool) -> Iterator[Problem]:
    """Secrets by reference only, ragops setting names, and the Weaviate cluster's consistency."""
    kind = manifest.get("kind")
    where = f"{kind}/{(manifest.get('metadata') or {}).get('name')}"
    if kind == "Secret":
        values = {**(manifest.get("stringData") or {}), **(manifest.get("data") or {})}
        if not example:
            yield Problem(path, where, "a Secret in an applied manifest commits its values; create it with "
                                       "`kubectl create secret` and keep only an *.example.yaml here")
        for key, value in values.items():
            if PLACEHOLDER_SECRET not in str(value):
                yield Problem(path, f"{where} {key}", f"example values must be placeholders containing {PLACEHOLDER_SECRET!r}")
    if kind == "ConfigMap":
        data = manifest.get("data") or {}
        yield from _settings_names(path, where, list(data))
        for key, value in data.items():
            if SECRET_NAME.search(key) or URI_PASSWORD.search(str(value)):
                yield Problem(path, f"{where} {key}", "a secret in a ConfigMap; move it to a Secret")
    for container in pod_containers(manifest):
        cwhere = f"{where} container {container.get('name')}"
        yield from _container_secrets(path, cwhere, container)
        yield from _settings_names(path, cwhere, list(container_environment(container)))
        if WEAVIATE_IMAGE in str(container.get("image", "")):
            env = container_environment(container)
            yield from _weaviate_settings(path, cwhere, {k: as_text(v.get("value")) for k, v in env.items()})
            if kind == "StatefulSet":
                yield from _weaviate_cluster(path, where, manifest, env)


def _weaviate_cluster(path: Path, where: str, statefulset: Mapping[str, Any], env: Mapping[str, Mapping]) -> Iterator[Problem]:
    """Replicas, Raft voters and node names must agree, or the cluster never bootstraps."""
    replicas = (statefulset.get("spec") or {}).get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool):
        return  # the schema check reports the type
    name = (statefulset.get("metadata") or {}).get("name", "")
    if replicas < MIN_WEAVIATE_NODES:
        yield Problem(path, where, f"spec.replicas is {replicas}; a replicated Weaviate cluster needs >= {MIN_WEAVIATE_NODES}")
    value = {key: as_text(item.get("value")) for key, item in env.items()}
    if value.get("RAFT_BOOTSTRAP_EXPECT") != str(replicas):
        yield Problem(path, where, f"RAFT_BOOTSTRAP_EXPECT must equal spec.replicas ({replicas}), "
                                   f"got {value.get('RAFT_BOOTSTRAP_EXPECT')!r}")
    pods = [f"{name}-{i}" for i in range(replicas)]
    if (value.get("RAFT_JOIN") or "").split(",") != pods:
        yield Problem(path, where, f"RAFT_JOIN must list the pods {','.join(pods)}, got {value.get('RAFT_JOIN')!r}")
    hostname = ((env.get("CLUSTER_HOSTNAME") or {}).get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath")
    if hostname != "metadata.name":
        yield Problem(path, where, "CLUSTER_HOSTNAME must come from the pod name (valueFrom.fieldRef metadata.name): "
                                   "RAFT_JOIN names nodes by it")
    factor = value.get("REPLICATION_MINIMUM_FACTOR")
    if factor is not None and (not factor.isdigit() or int(factor) > replicas):
        yield Problem(path, where, f"REPLICATION_MINIMUM_FACTOR {factor!r} must be a number <= spec.replicas ({replicas})")


def gpu_rules(path: Path, job: Mapping[str, Any]) -> Iterator[Problem]:
    """Flow-run pods of the Kubernetes pool go to a GPU node and hold a GPU."""
    pod = job["spec"]["template"]["spec"]
    for container in pod_containers(job):
        gpus = ((container.get("resources") or {}).get("limits") or {}).get("nvidia.com/gpu")
        if not str(gpus).isdigit() or int(gpus) < 1:
            yield Problem(path, "job_manifest", f"container {container.get('name')} must request "
                                                f"resources.limits nvidia.com/gpu >= 1, got {gpus!r}")
    if not any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations") or []):
        yield Problem(path, "job_manifest", "needs a toleration for the nvidia.com/gpu taint of GPU nodes")
    if not pod.get("nodeSelector"):
        yield Problem(path, "job_manifest", "needs a nodeSelector for the GPU node pool")
