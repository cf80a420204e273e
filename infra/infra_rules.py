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

from components.index.server import SERVER_ENVIRONMENT
from components.settings import PROCESS_VARIABLES, Settings

# The settings ragops' own Weaviate servers get (components/index/server.py); LOG_LEVEL is left
# to the operator. The values come from there, so the two cannot drift apart.
WEAVIATE_REQUIRED = {key: SERVER_ENVIRONMENT[key] for key in ("DISABLE_TELEMETRY", "ENABLE_MODULES", "USE_INVERTED_SEARCHABLE")}
# ragops always sends RAGOPS_WEAVIATE_API_KEY to an external server; anonymous access stays off.
WEAVIATE_AUTH = {"AUTHENTICATION_APIKEY_ENABLED": "true", "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED": "false"}
WEAVIATE_IMAGE = "semitechnologies/weaviate"
MIN_WEAVIATE_NODES = 3

SECRET_NAME = re.compile(r"PASSWORD|SECRET|API_KEY|ALLOWED_KEYS|ACCESS_KEY|TOKEN|CREDENTIAL")
# Names of where a secret is (RAGOPS_SECRETS_DIR, AWS_SHARED_CREDENTIALS_FILE), not of a secret.
SECRET_PATH_NAME = re.compile(r"_(DIR|FILE)$")
# A Kubernetes env value made only of $(NAME) references to variables defined above it.
K8S_REFERENCES = re.compile(r"\$\([A-Za-z_][A-Za-z0-9_]*\)(,\$\([A-Za-z_][A-Za-z0-9_]*\))*")
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


def names_a_secret(key: str) -> bool:
    """A variable or key name that holds a secret (not one naming where a secret is)."""
    return bool(SECRET_NAME.search(key)) and not SECRET_PATH_NAME.search(key)


def known_settings_variables() -> set[str]:
    """The RAGOPS_* names Settings reads; anything else with the prefix is a typo ragops ignores."""
    prefix = Settings.model_config["env_prefix"]
    return {f"{prefix}{name}".upper() for name in Settings.model_fields} | set(PROCESS_VARIABLES)


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
            yield Problem(path, where, f"{name} is not a ragops setting (components/settings.py Settings reads {sorted(known)})")


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
        if (names_a_secret(key) and value is not None and not K8S_REFERENCES.fullmatch(value)) or (value and URI_PASSWORD.search(value)):
            yield Problem(path, f"{where} env {key}", "a literal secret; use valueFrom.secretKeyRef (or envFrom a Secret)")


def kubernetes_rules(path: Path, manifest: Mapping[str, Any], example: bool) -> Iterator[Problem]:
    """Secrets by reference only, ragops setting names, and the Weaviate cluster's consistency."""
    kind = manifest.get("kind")
    metadata = manifest.get("metadata") or {}
    where = f"{kind}/{metadata.get('name') or metadata.get('generateName')}"
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
            if names_a_secret(key) or URI_PASSWORD.search(str(value)):
                yield Problem(path, f"{where} {key}", "a secret in a ConfigMap; move it to a Secret")
    if pod_containers(manifest):
        yield from hardening_rules(path, where, manifest)
    for container in pod_containers(manifest):
        cwhere = f"{where} container {container.get('name')}"
        yield from _container_secrets(path, cwhere, container)
        yield from _settings_names(path, cwhere, list(container_environment(container)))
        if WEAVIATE_IMAGE in str(container.get("image", "")):
            env = container_environment(container)
            yield from _weaviate_settings(path, cwhere, {k: as_text(v.get("value")) for k, v in env.items()})
            yield from weaviate_exposure_rules(path, cwhere, env)
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


# Every container ragops ships runs like this (issue 27, item 10); a pod that needs to write gets
# an emptyDir or a volume for it.
CONTAINER_HARDENING = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True}
RAGOPS_IMAGE = "/ragops:"
# Weaviate's cluster-internal ports (gossip, data API, Raft, Raft RPC) in infra/k8s/weaviate.yaml.
WEAVIATE_CLUSTER_PORTS = {7100, 7101, 8300, 8301}


def pod_spec(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = manifest.get("spec") or {}
    return (spec.get("template") or {}).get("spec") or {}


def pod_labels(manifest: Mapping[str, Any]) -> Mapping[str, str]:
    return (((manifest.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}


def hardening_rules(path: Path, where: str, manifest: Mapping[str, Any]) -> Iterator[Problem]:
    """Non-root, read-only root filesystem, no privilege escalation, every capability dropped; and
    a ragops container takes no secret as an environment variable (RAGOPS_SECRETS_DIR files)."""
    pod = pod_spec(manifest)
    pod_non_root = (pod.get("securityContext") or {}).get("runAsNonRoot") is True
    for container in pod_containers(manifest):
        cwhere = f"{where} container {container.get('name')}"
        context = container.get("securityContext") or {}
        for key, wanted in CONTAINER_HARDENING.items():
            if context.get(key) is not wanted:
                yield Problem(path, cwhere, f"securityContext.{key} must be {str(wanted).lower()}")
        if "ALL" not in ((context.get("capabilities") or {}).get("drop") or []):
            yield Problem(path, cwhere, "securityContext.capabilities.drop must include ALL")
        if context.get("privileged") is True:
            yield Problem(path, cwhere, "must not be privileged")
        if not (pod_non_root or context.get("runAsNonRoot") is True):
            yield Problem(path, cwhere, "must run as non-root (securityContext.runAsNonRoot: true on the pod or container)")
        if RAGOPS_IMAGE in str(container.get("image", "")):
            from_secret = [item["name"] for item in container_environment(container).values()
                           if "secretKeyRef" in (item.get("valueFrom") or {})]
            from_secret += [f"envFrom {source['secretRef'].get('name')}" for source in container.get("envFrom") or []
                            if isinstance(source, dict) and "secretRef" in source]
            if from_secret:
                yield Problem(path, cwhere, f"secrets as environment variables ({', '.join(from_secret)}); mount the "
                                            f"Secret as files at RAGOPS_SECRETS_DIR")


def weaviate_exposure_rules(path: Path, where: str, env: Mapping[str, Mapping[str, Any]]) -> Iterator[Problem]:
    """The profiling port off, the cluster data API behind basic auth, a read-only user for serving."""
    value = {key: as_text(item.get("value")) for key, item in env.items()}
    if value.get("GO_PROFILING_DISABLE") != "true":
        yield Problem(path, where, "GO_PROFILING_DISABLE must be 'true': the profiling port (6060) serves /debug/* "
                                   "handlers without auth")
    for key in ("CLUSTER_BASIC_AUTH_USERNAME", "CLUSTER_BASIC_AUTH_PASSWORD"):
        if "secretKeyRef" not in ((env.get(key) or {}).get("valueFrom") or {}):
            yield Problem(path, where, f"{key} must come from a Secret (valueFrom.secretKeyRef): without it the "
                                       f"cluster data API (7101) answers anyone")
    if not value.get("AUTHORIZATION_ADMINLIST_READONLY_USERS"):
        yield Problem(path, where, "AUTHORIZATION_ADMINLIST_READONLY_USERS must name the serving user: serving pods "
                                   "hold a read-only key, not the flow runs' admin key")


def _selects(policy: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    wanted = ((policy.get("spec") or {}).get("podSelector") or {}).get("matchLabels") or {}
    return all(labels.get(k) == v for k, v in wanted.items())


def _from_only(rule: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    sources = rule.get("from") or []
    return bool(sources) and all(set(s) == {"podSelector"} and
                                 ((s["podSelector"] or {}).get("matchLabels") or {}).items() <= labels.items()
                                 and (s["podSelector"] or {}).get("matchLabels") for s in sources)


def namespace_rules(objects: list[tuple[Path, Mapping[str, Any]]], job_path: Path, job: Mapping[str, Any] | None
                    ) -> Iterator[Problem]:
    """Rules across files: a default-deny NetworkPolicy; Weaviate's cluster ports open to its nodes
    only; the flow runs' RAGOPS_HOME on a claim that exists; serving and flow runs on different
    Secrets (different Weaviate keys)."""
    policies = [(p, m) for p, m in objects if m.get("kind") == "NetworkPolicy"]
    if not any(not ((m.get("spec") or {}).get("podSelector") or {}) and "Ingress" in (m["spec"].get("policyTypes") or [])
               and not m["spec"].get("ingress") for _, m in policies):
        where = objects[0][0] if objects else job_path
        yield Problem(where.parent / "network-policy.yaml", "NetworkPolicy",
                      "no default-deny ingress policy (podSelector {}, policyTypes [Ingress], no rules): every pod "
                      "would take traffic from anywhere")
    weaviate = next((m for _, m in objects if m.get("kind") == "StatefulSet" and
                     any(WEAVIATE_IMAGE in str(c.get("image", "")) for c in pod_containers(m))), None)
    weaviate_labels = pod_labels(weaviate) if weaviate else {}
    for path, policy in policies:
        if not weaviate_labels or not _selects(policy, weaviate_labels):
            continue
        for rule in (policy.get("spec") or {}).get("ingress") or []:
            ports = {p.get("port") for p in rule.get("ports") or []} or WEAVIATE_CLUSTER_PORTS
            if ports & WEAVIATE_CLUSTER_PORTS and not _from_only(rule, weaviate_labels):
                yield Problem(path, f"NetworkPolicy/{policy['metadata']['name']}",
                              f"opens Weaviate's cluster ports {sorted(ports & WEAVIATE_CLUSTER_PORTS)} to more than "
                              f"the Weaviate pods")
    if job is None:
        return
    config = next((m.get("data") or {} for _, m in objects if m.get("kind") == "ConfigMap"), {})
    home = config.get("RAGOPS_HOME")
    pod = pod_spec(job)
    volumes = {v.get("name"): v for v in pod.get("volumes") or []}
    mounts = {m.get("mountPath"): m.get("name") for c in pod_containers(job) for m in c.get("volumeMounts") or []}
    claim = ((volumes.get(mounts.get(home)) or {}).get("persistentVolumeClaim") or {}).get("claimName")
    claims = {m["metadata"]["name"] for _, m in objects if m.get("kind") == "PersistentVolumeClaim"}
    if not home or claim is None or claim not in claims:
        yield Problem(job_path, "job_manifest", f"RAGOPS_HOME ({home}) must be a PersistentVolumeClaim of the manifests "
                                                f"(got {claim!r}): the ledger, checkpoints and the pending-move record "
                                                f"would vanish with each Job")
    if not any(k == "RAGOPS_PROJECT" for k in config) and not any(
            "RAGOPS_PROJECT" in container_environment(c) for c in pod_containers(job)):
        yield Problem(job_path, "job_manifest", "RAGOPS_PROJECT must be set (ConfigMap or env): a flow run of a "
                                                "deployment works only on that project")
    job_secrets = {v["secret"]["secretName"] for v in volumes.values() if "secret" in v}
    for path, manifest in objects:
        if manifest.get("kind") == "Deployment" and any(RAGOPS_IMAGE in str(c.get("image", ""))
                                                          for c in pod_containers(manifest)):
            serve_secrets = {v["secret"]["secretName"] for v in pod_spec(manifest).get("volumes") or [] if "secret" in v}
            if serve_secrets & job_secrets:
                yield Problem(path, f"Deployment/{manifest['metadata']['name']}",
                              f"mounts the flow runs' Secret {sorted(serve_secrets & job_secrets)}: serving gets a "
                              f"read-only Weaviate key of its own")
