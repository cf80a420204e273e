"""The scale-out infra files (infra/compose, infra/k8s) against infra/check_infra.py.

No Docker engine or cluster is needed: the shipped files must pass the Compose Specification and
Kubernetes schemas and ragops' own rules, and deliberately broken copies must fail, naming the
file and the problem. The properties ragops depends on are also asserted directly on the files.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from infra.check_infra import check_all, render_job_manifest
from infra.infra_rules import K8S_REFERENCES, SECRET_PATH_NAME

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "infra" / "compose" / "docker-compose.yaml"
K8S = ROOT / "infra" / "k8s"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|API_KEY|ALLOWED_KEYS|ACCESS_KEY|TOKEN")


@pytest.fixture()
def infra(tmp_path) -> Path:
    """A copy of infra/compose and infra/k8s at the same depth, so compose's `../..` build context
    resolves inside tmp_path."""
    for part in ("compose", "k8s"):
        shutil.copytree(ROOT / "infra" / part, tmp_path / "infra" / part)
    return tmp_path / "infra"


def problems_in(infra: Path):
    return check_all(infra / "compose" / "docker-compose.yaml", infra / "k8s")[0]


def edit_yaml(path: Path, change: Callable[[list], None]) -> None:
    documents = list(yaml.safe_load_all(path.read_text()))
    change(documents)
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))


def of_kind(documents: list, kind: str) -> dict:
    return next(d for d in documents if d["kind"] == kind)


def weaviate_env(documents: list) -> list:
    return of_kind(documents, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]["env"]


def set_env(env: list, name: str, value: str) -> None:
    next(item for item in env if item["name"] == name)["value"] = value


def compose_service(name: str, change: Callable[[dict], None]) -> Callable[[list], None]:
    return lambda docs: change(docs[0]["services"][name])


def service_env(name: str, **values: str) -> Callable[[list], None]:
    return compose_service(name, lambda service: service["environment"].update(values))


def pod_spec_of(documents: list, kind: str) -> dict:
    return of_kind(documents, kind)["spec"]["template"]["spec"]


def relabel_pods(workload: dict) -> None:
    workload["spec"]["template"]["metadata"]["labels"] = {"app.kubernetes.io/name": "other"}


def edit_template(infra: Path, change: Callable[[dict], None]) -> None:
    path = infra / "k8s" / "work-pool-job-template.json"
    template = json.loads(path.read_text())
    change(template)
    path.write_text(json.dumps(template))


def job_pod(template: dict) -> dict:
    return template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]


def test_shipped_files_pass():
    problems, summary = check_all()
    assert problems == [], "\n".join(map(str, problems))
    assert "Kubernetes 1.31" in summary


def test_cli_exit_codes(infra):
    ok = subprocess.run([sys.executable, str(ROOT / "infra" / "check_infra.py")], capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("infra: ok")

    edit_yaml(infra / "compose" / "docker-compose.yaml", compose_service("weaviate", lambda s: s.update(restart_policy="always")))
    broken = subprocess.run([sys.executable, str(ROOT / "infra" / "check_infra.py"), "--compose",
                             str(infra / "compose" / "docker-compose.yaml"), "--k8s", str(infra / "k8s")],
                            capture_output=True, text=True, cwd=ROOT)
    assert broken.returncode == 1
    assert "docker-compose.yaml: services.weaviate: unknown key(s) 'restart_policy'" in broken.stdout


YAML_BREAKS = {
    "compose unknown key": ("compose/docker-compose.yaml",
                            compose_service("weaviate", lambda s: s.update(restart_policy="always")),
                            "services.weaviate", "unknown key(s) 'restart_policy'"),
    "compose wrong type": ("compose/docker-compose.yaml",
                           compose_service("ragops-serve", lambda s: s.update(command=8080)),
                           "services.ragops-serve.command", "8080 has the wrong type"),
    "compose unknown dependency": ("compose/docker-compose.yaml",
                                   compose_service("mlflow", lambda s: s["depends_on"].update(redis=s["depends_on"]["postgres"])),
                                   "services.mlflow.depends_on", "no service named 'redis'"),
    "compose BlockMax WAND": ("compose/docker-compose.yaml",
                              service_env("weaviate", USE_INVERTED_SEARCHABLE="true"),
                              "services.weaviate", "USE_INVERTED_SEARCHABLE='false'"),
    "compose literal secret": ("compose/docker-compose.yaml",
                               service_env("postgres", POSTGRES_PASSWORD="hunter2hunter2"),
                               "services.postgres.environment.POSTGRES_PASSWORD", "a literal secret"),
    "compose password in a URI": ("compose/docker-compose.yaml",
                                  service_env("mlflow", MLFLOW_BACKEND_STORE_URI="postgresql+psycopg2://ragops:hunter2@postgres:5432/mlflow"),
                                  "services.mlflow.environment.MLFLOW_BACKEND_STORE_URI", "a literal secret"),
    "compose misspelt ragops setting": ("compose/docker-compose.yaml",
                                        service_env("prefect-worker", RAGOPS_WEAVIATE_ULR="x"),
                                        "services.prefect-worker", "RAGOPS_WEAVIATE_ULR is not a ragops setting"),
    "statefulset replicas as text": ("k8s/weaviate.yaml",
                                     lambda docs: of_kind(docs, "StatefulSet")["spec"].update(replicas="three"),
                                     "StatefulSet/weaviate", "spec.replicas: 'three' is not of type 'integer'"),
    "deployment without selector": ("k8s/ragops-serve.yaml",
                                    lambda docs: of_kind(docs, "Deployment")["spec"].pop("selector"),
                                    "Deployment/ragops-serve", "spec: 'selector' is a required property"),
    "unknown field (strict)": ("k8s/mlflow.yaml",
                               lambda docs: pod_spec_of(docs, "Deployment").update(nodeSelektor={}),
                               "Deployment/mlflow", "'nodeSelektor' was unexpected"),
    "selector not matching the pods": ("k8s/mlflow.yaml", lambda docs: relabel_pods(of_kind(docs, "Deployment")),
                                       "Deployment/mlflow", "does not match the pod template labels"),
    "weaviate k8s BlockMax WAND": ("k8s/weaviate.yaml",
                                   lambda docs: set_env(weaviate_env(docs), "USE_INVERTED_SEARCHABLE", "true"),
                                   "StatefulSet/weaviate container weaviate", "USE_INVERTED_SEARCHABLE='false'"),
    "raft voters not the replicas": ("k8s/weaviate.yaml",
                                     lambda docs: of_kind(docs, "StatefulSet")["spec"].update(replicas=5),
                                     "StatefulSet/weaviate", "RAFT_BOOTSTRAP_EXPECT must equal spec.replicas (5)"),
    "a single weaviate node": ("k8s/weaviate.yaml",
                               lambda docs: of_kind(docs, "StatefulSet")["spec"].update(replicas=1),
                               "StatefulSet/weaviate", "needs >= 3"),
    "k8s literal secret": ("k8s/ragops-serve.yaml",
                           lambda docs: pod_spec_of(docs, "Deployment")["containers"][0].update(
                               env=[{"name": "RAGOPS_WEAVIATE_API_KEY", "value": "s3cr3t-key"}]),
                           "Deployment/ragops-serve container ragops-serve env RAGOPS_WEAVIATE_API_KEY", "a literal secret"),
    "privilege escalation": ("k8s/ragops-serve.yaml",
                             lambda docs: pod_spec_of(docs, "Deployment")["containers"][0]["securityContext"].update(
                                 allowPrivilegeEscalation=True),
                             "Deployment/ragops-serve container ragops-serve",
                             "securityContext.allowPrivilegeEscalation must be false"),
    "a root container": ("k8s/mlflow.yaml", lambda docs: pod_spec_of(docs, "Deployment").pop("securityContext"),
                         "Deployment/mlflow container mlflow", "must run as non-root"),
    "capabilities kept": ("k8s/weaviate.yaml",
                          lambda docs: pod_spec_of(docs, "StatefulSet")["containers"][0]["securityContext"].pop("capabilities"),
                          "StatefulSet/weaviate container weaviate", "capabilities.drop must include ALL"),
    "a ragops secret as a variable": ("k8s/ragops-serve.yaml",
                                      lambda docs: pod_spec_of(docs, "Deployment")["containers"][0].update(env=[
                                          {"name": "RAGOPS_WEAVIATE_API_KEY", "valueFrom": {"secretKeyRef": {
                                              "name": "ragops-serve-secrets", "key": "RAGOPS_WEAVIATE_API_KEY"}}}]),
                                      "Deployment/ragops-serve container ragops-serve", "secrets as environment variables"),
    "weaviate profiling port on": ("k8s/weaviate.yaml",
                                   lambda docs: set_env(weaviate_env(docs), "GO_PROFILING_DISABLE", "false"),
                                   "StatefulSet/weaviate container weaviate", "GO_PROFILING_DISABLE must be 'true'"),
    "weaviate cluster API without auth": (
        "k8s/weaviate.yaml",
        lambda docs: weaviate_env(docs).remove(next(e for e in weaviate_env(docs) if e["name"] == "CLUSTER_BASIC_AUTH_PASSWORD")),
        "StatefulSet/weaviate container weaviate", "CLUSTER_BASIC_AUTH_PASSWORD must come from a Secret"),
    "no default-deny network policy": ("k8s/network-policy.yaml", lambda docs: docs.pop(0),
                                       "NetworkPolicy", "no default-deny ingress policy"),
    "weaviate cluster ports open to serving": (
        "k8s/network-policy.yaml",
        lambda docs: next(d for d in docs if d["metadata"]["name"] == "weaviate-cluster")["spec"]["ingress"][0]["from"]
        .append({"podSelector": {"matchLabels": {"app.kubernetes.io/name": "ragops-serve"}}}),
        "NetworkPolicy/weaviate-cluster", "opens Weaviate's cluster ports"),
    "serving holds the flow runs' key": (
        "k8s/ragops-serve.yaml",
        lambda docs: next(v for v in pod_spec_of(docs, "Deployment")["volumes"] if "secret" in v)["secret"].update(
            secretName="ragops-secrets"),
        "Deployment/ragops-serve", "serving gets a read-only Weaviate key"),
    "real value in the secret example": ("k8s/secret.example.yaml",
                                         lambda docs: docs[0]["stringData"].update(AWS_SECRET_ACCESS_KEY="wJalrXUtnFEMI"),
                                         "Secret/ragops-secrets AWS_SECRET_ACCESS_KEY", "must be placeholders"),
}


@pytest.mark.parametrize("case", list(YAML_BREAKS))
def test_broken_yaml_copy_fails(infra, case):
    relative, change, where, message = YAML_BREAKS[case]
    edit_yaml(infra / relative, change)
    problems = problems_in(infra)
    assert any(p.path == infra / relative and p.where == where and message in p.message for p in problems), \
        f"expected {relative}: {where}: ...{message}... in\n" + "\n".join(map(str, problems))


TEMPLATE_BREAKS = {
    "no GPU": (lambda t: job_pod(t)["containers"][0]["resources"]["limits"].pop("nvidia.com/gpu"),
               "job_manifest", "nvidia.com/gpu >= 1"),
    "no GPU toleration": (lambda t: job_pod(t).pop("tolerations"), "job_manifest", "toleration"),
    "misspelt placeholder": (lambda t: job_pod(t).update(nodeSelector="{{ node_selektor }}"),
                             "job_configuration", "{{ node_selektor }} names no variable"),
    "rendered Job off-schema": (lambda t: t["job_configuration"]["job_manifest"]["spec"].update(backoffLimit="{{ image }}"),
                                "job_manifest", "spec.backoffLimit"),
    "without the worker's pod fields": (lambda t: job_pod(t).pop("parallelism"),
                                        "job_manifest", "requires spec.template.spec.parallelism"),
    "without variables": (lambda t: t.pop("variables"), "file", "job_configuration and variables"),
    "RAGOPS_HOME not persistent": (lambda t: next(v for v in job_pod(t)["volumes"] if v["name"] == "ragops-home").update(
                                       {"emptyDir": {}}) or next(v for v in job_pod(t)["volumes"]
                                                                 if v["name"] == "ragops-home").pop("persistentVolumeClaim"),
                                   "job_manifest", "RAGOPS_HOME (/var/lib/ragops) must be a PersistentVolumeClaim"),
    "writable root filesystem": (lambda t: job_pod(t)["containers"][0]["securityContext"].update(readOnlyRootFilesystem=False),
                                 "Job/ragops-flow-run- container prefect-job", "readOnlyRootFilesystem must be true"),
}


@pytest.mark.parametrize("case", list(TEMPLATE_BREAKS))
def test_broken_job_template_fails(infra, case):
    change, where, message = TEMPLATE_BREAKS[case]
    edit_template(infra, change)
    problems = problems_in(infra)
    assert any(p.path.name == "work-pool-job-template.json" and p.where == where and message in p.message
               for p in problems), "\n".join(map(str, problems))


def test_unreadable_files_fail(infra):
    (infra / "k8s" / "work-pool-job-template.json").write_text('{"job_configuration": ')
    (infra / "compose" / ".env.example").write_text("WEAVIATE_API_KEY=change-me\n")
    problems = [str(p) for p in problems_in(infra)]
    assert any("work-pool-job-template.json: file: cannot be read as JSON" in p for p in problems)
    assert any(".env.example: POSTGRES_PASSWORD: required by docker-compose.yaml" in p for p in problems)


# The properties ragops depends on, read straight from the shipped files.

def compose_file() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def k8s_documents() -> list[tuple[Path, dict]]:
    return [(path, doc) for path in sorted(K8S.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_every_weaviate_uses_the_classic_bm25_scorer():
    definitions = [service["environment"] for service in compose_file()["services"].values()
                   if "semitechnologies/weaviate" in service.get("image", "")]
    for _, doc in k8s_documents():
        for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            if "semitechnologies/weaviate" in container["image"]:
                definitions.append({e["name"]: e.get("value") for e in container["env"]})
    assert len(definitions) == 2
    for env in definitions:
        assert env["USE_INVERTED_SEARCHABLE"] == "false"
        assert env["DISABLE_TELEMETRY"] == "true" and env["ENABLE_MODULES"] == ""


def test_weaviate_cluster_bootstraps_all_replicas():
    statefulset = next(doc for _, doc in k8s_documents() if doc["kind"] == "StatefulSet")
    replicas = statefulset["spec"]["replicas"]
    env = {e["name"]: e.get("value") for e in statefulset["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert replicas >= 3
    assert int(env["RAFT_BOOTSTRAP_EXPECT"]) == replicas
    assert env["RAFT_JOIN"].split(",") == [f"weaviate-{i}" for i in range(replicas)]


def test_no_literal_secrets():
    for name, service in compose_file()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                assert re.fullmatch(r"\$\{\w+(:?\?[^}]*)?\}", str(value)), f"compose {name}.{key} = {value!r}"
    for path, doc in k8s_documents():
        if doc["kind"] == "Secret":
            assert path.name.endswith(".example.yaml")
            assert all("change-me" in v for v in doc["stringData"].values())
        for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            from_secrets = {i["name"] for i in container.get("env", []) if "secretKeyRef" in i.get("valueFrom", {})}
            for item in container.get("env", []):
                if SECRET_NAME.search(item["name"]) and not SECRET_PATH_NAME.search(item["name"]):
                    references = set(re.findall(r"\$\((\w+)\)", str(item.get("value", ""))))
                    assert item["name"] in from_secrets or (references and references <= from_secrets
                                                            and K8S_REFERENCES.fullmatch(item["value"])), \
                        f"{path.name} {item['name']}"
    for line in (COMPOSE.parent / ".env.example").read_text().splitlines():
        if "=" in line and not line.startswith("#") and SECRET_NAME.search(line.split("=")[0]):
            assert line.split("=", 1)[1].startswith("change-me"), line


def test_job_template_requests_a_gpu():
    template = json.loads((K8S / "work-pool-job-template.json").read_text())
    job = render_job_manifest(template)
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] >= 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"]
