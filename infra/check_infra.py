"""Check the scale-out infra files offline, before anything is built or applied.

There is no Docker engine or cluster on the build machines, so the files are checked against the
published schemas that ship inside two pinned packages (nothing is downloaded at run time):
- infra/compose/docker-compose.yaml against the Compose Specification JSON schema (vendored by
  check-jsonschema), plus what `docker compose up` would reject first: unknown depends_on
  targets, undeclared volumes, missing build files, variables .env.example does not list;
- every manifest under infra/k8s against the Kubernetes OpenAPI schemas of KUBERNETES_VERSION
  (kubernetes-validate), strict: an unknown field is an error, as `kubectl apply` reports it;
- the Prefect work-pool base job template: its placeholders, and its Job once rendered with the
  template's own defaults (the worker fills the per-run values), against the same schemas;
- ragops' own needs (infra/infra_rules.py): Weaviate settings, cluster consistency, GPU, secrets.

Schema sources (both packages Apache-2.0, pinned in pyproject.toml): check-jsonschema's
builtin_schemas/vendor/compose-spec.json, copied from compose-spec/compose-spec with its Apache-2.0
licence beside it; kubernetes-validate's kubernetes-json-schema/v<version>-local-strict, JSON
schemas generated from the Kubernetes OpenAPI (Apache-2.0) for Kubernetes 1.25 to 1.37.

    .venv/bin/python infra/check_infra.py        # exit 0, or 1 with one line per problem
    .venv/bin/python infra/check_infra.py --compose /tmp/copy.yaml --k8s /tmp/k8s --kubernetes-version 1.33
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate.utils as k8s_schemas
import yaml
from check_jsonschema.builtin_schemas import get_builtin_schema
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from infra.infra_rules import (  # noqa: E402
    Problem,
    compose_rules,
    env_example_rules,
    gpu_rules,
    kubernetes_rules,
    namespace_rules,
    pod_containers,
)

KUBERNETES_VERSION = "1.31"
COMPOSE_PATH = ROOT / "infra" / "compose" / "docker-compose.yaml"
K8S_DIR = ROOT / "infra" / "k8s"
JOB_TEMPLATE_NAME = "work-pool-job-template.json"
# ${NAME} with no default (plain, :? or ?); $$ is an escaped dollar for the container's shell.
COMPOSE_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?+][^}]*)?\}")
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"}
# Per-run values the worker always fills before creating the Job; env, labels and command it also
# converts to manifest form itself, so they are left unset (dropped) here.
RUN_VALUES = {"name": "ragops-flow-run"}
# prefect-kubernetes 0.8 requires these under the *pod* spec (its base manifest,
# prefect_kubernetes/worker.py `_get_base_job_manifest`) and rejects a template without them. A
# pod spec has no such fields (the API server drops them, with a warning, when the worker creates
# the Job), so they are checked here and removed before the strict schema check.
PREFECT_POD_FIELDS = {"parallelism": 1, "completions": 1}


def dotted(parts: Any) -> str:
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
    return text or "(top level)"


def load_yaml(path: Path, all_documents: bool = False) -> tuple[Any, list[Problem]]:
    try:
        text = path.read_text()
        return (list(yaml.safe_load_all(text)) if all_documents else yaml.safe_load(text)), []
    except (OSError, yaml.YAMLError) as exc:
        return None, [Problem(path, "file", f"cannot be read as YAML: {exc}")]


def known_properties(node: Any, root: dict) -> tuple[set[str], list[str]]:
    """Property names and patterns a (sub)schema defines, through local $refs and allOf/anyOf/oneOf."""
    if not isinstance(node, dict):
        return set(), []
    names, patterns = set(node.get("properties", {})), list(node.get("patternProperties", {}))
    children = [node[k] for k in ("allOf", "anyOf", "oneOf") if k in node]
    if "$ref" in node and node["$ref"].startswith("#/"):
        target = root
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        children.append([target])
    for child in (c for group in children for c in group):
        more_names, more_patterns = known_properties(child, root)
        names |= more_names
        patterns += more_patterns
    return names, patterns


def compose_error_message(error: jsonschema.ValidationError, schema: dict) -> tuple[Any, str] | None:
    """(instance path, message) of a schema error, or None for an echo of another error."""
    if error.validator == "unevaluatedProperties":
        # A key is "unevaluated" also when the branch that defines it failed for another reason,
        # which is reported on its own: name only the keys no branch defines.
        names, patterns = known_properties(error.schema, schema)
        unknown = [k for k in error.instance if k not in names and not any(re.search(p, k) for p in patterns)]
        return (error.absolute_path, f"unknown key(s) {', '.join(map(repr, unknown))}") if unknown else None
    deeper = [e for e in error.context if e.path]
    if deeper:  # oneOf/anyOf: the alternative that got furthest says what is wrong
        return compose_error_message(jsonschema.exceptions.best_match(deeper), schema)
    types = sorted({json.dumps(e.validator_value) for e in error.context if e.validator == "type"})
    if types:
        return error.absolute_path, f"{error.instance!r} has the wrong type, expected {' or '.join(types)}"
    return error.absolute_path, error.message


def compose_schema_problems(path: Path, compose: Any) -> Iterator[Problem]:
    schema = get_builtin_schema("vendor.compose-spec")
    validator = jsonschema.validators.validator_for(schema)(schema, format_checker=jsonschema.FormatChecker())
    for error in validator.iter_errors(compose):
        found = compose_error_message(error, schema)
        if found:
            yield Problem(path, dotted(found[0]), f"{found[1]} (Compose Specification)")


def compose_reference_problems(path: Path, compose: dict) -> Iterator[Problem]:
    """References the schema cannot see, resolved the way compose does (relative to the file)."""
    services = compose.get("services") or {}
    volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        depends = service.get("depends_on") or []
        for target in depends if isinstance(depends, list) else list(depends):
            if target not in services:
                yield Problem(path, f"services.{name}.depends_on", f"no service named {target!r}")
        for mount in service.get("volumes") or []:
            source = mount.split(":", 1)[0] if isinstance(mount, str) else mount.get("source", "")
            if source.startswith((".", "/", "~")):
                if source.startswith(".") and not (path.parent / source).exists():
                    yield Problem(path, f"services.{name}.volumes", f"bind source {source!r} does not exist")
            elif source and source not in volumes:
                yield Problem(path, f"services.{name}.volumes", f"volume {source!r} is not declared under top-level volumes")
        build = service.get("build")
        if isinstance(build, dict):
            context = path.parent / build.get("context", ".")
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            for needed in (context, dockerfile):
                if not needed.exists():
                    yield Problem(path, f"services.{name}.build", f"{needed} does not exist")


def required_compose_variables(node: Any) -> set[str]:
    """Variables compose interpolates without a default, in the parsed file (comments are not read)."""
    if isinstance(node, dict):
        return set().union(*map(required_compose_variables, [*node.keys(), *node.values()]))
    if isinstance(node, list):
        return set().union(*map(required_compose_variables, node))
    matches = COMPOSE_VARIABLE.finditer(node.replace("$$", "")) if isinstance(node, str) else []
    return {m.group(1) for m in matches if not (m.group(2) or "").lstrip(":").startswith("-")}


def check_compose(path: Path, env_example: Path) -> list[Problem]:
    compose, problems = load_yaml(path)
    if problems:
        return problems
    if not isinstance(compose, dict):
        return [Problem(path, "file", "must be a mapping with a services key")]
    problems += compose_schema_problems(path, compose)
    if not problems:  # the checks below read the shapes the schema guarantees
        problems += compose_reference_problems(path, compose)
        problems += compose_rules(path, compose)
    if not env_example.exists():
        return [*problems, Problem(env_example, "file", "missing: the template of the secrets compose reads")]
    problems += env_example_rules(env_example, env_example.read_text(), required_compose_variables(compose))
    return problems


def kubernetes_schema_problems(path: Path, manifest: dict, kubernetes_version: str, where: str) -> Iterator[Problem]:
    if not manifest.get("apiVersion") or not manifest.get("kind"):
        yield Problem(path, where, "a manifest needs apiVersion and kind")
        return
    try:
        k8s_schemas.validate(manifest, kubernetes_version, strict=True)
    except k8s_schemas.ValidationError as exc:
        yield Problem(path, where, f"{dotted(exc.path)}: {exc.message} (Kubernetes {exc.version} schema)")
        return
    except (k8s_schemas.SchemaNotFoundError, k8s_schemas.InvalidSchemaError) as exc:
        yield Problem(path, where, exc.message)
        return
    # The API server also rejects a workload whose selector does not select its own pods.
    if manifest["kind"] in WORKLOADS:
        spec = manifest.get("spec") or {}
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if any(labels.get(key) != value for key, value in selector.items()):
            yield Problem(path, where, f"spec.selector.matchLabels {selector} does not match the pod template labels {labels}")


def kustomization_problems(path: Path, kustomization: dict, manifests: list[Path]) -> Iterator[Problem]:
    listed = set()
    for entry in kustomization.get("resources") or []:
        target = (path.parent / entry).resolve()
        listed.add(target)
        if not target.exists():
            yield Problem(path, "resources", f"{entry} does not exist")
    for manifest in manifests:
        if manifest.resolve() not in listed and not manifest.name.endswith(".example.yaml"):
            yield Problem(path, "resources", f"{manifest.name} is not listed, so `kubectl apply -k` skips it")


def check_kubernetes(k8s_dir: Path, kubernetes_version: str) -> tuple[list[Problem], list[tuple[Path, dict]]]:
    """Every YAML manifest under k8s_dir; returns the problems and the objects checked."""
    files = sorted(p for p in k8s_dir.rglob("*") if p.suffix in (".yaml", ".yml"))
    kustomizations = [p for p in files if p.stem == "kustomization"]
    manifests = [p for p in files if p.stem != "kustomization"]
    problems, objects = [], []
    for path in kustomizations:
        kustomization, load_problems = load_yaml(path)
        problems += load_problems or kustomization_problems(path, kustomization or {}, manifests)
    for path in manifests:
        documents, load_problems = load_yaml(path, all_documents=True)
        problems += load_problems
        for index, manifest in enumerate(d for d in documents or [] if d is not None):
            if not isinstance(manifest, dict):
                problems.append(Problem(path, f"document {index}", "is not a mapping"))
                continue
            objects.append((path, manifest))
            where = f"{manifest.get('kind')}/{(manifest.get('metadata') or {}).get('name')}"
            # ragops' rules read the shapes the schema guarantees: only on a valid object.
            problems += (list(kubernetes_schema_problems(path, manifest, kubernetes_version, where))
                         or kubernetes_rules(path, manifest, example=path.name.endswith(".example.yaml")))
    return problems, objects


def render_job_manifest(template: dict) -> dict:
    """The template's Job as the worker starts from it: placeholders replaced by the variables'
    defaults and the per-run name, unset ones dropped (Prefect's own renderer)."""
    # Imported here: importing prefect loads its settings and creates its home directory, which
    # only the job-template check needs.
    from prefect.utilities.templating import apply_values

    properties = template["variables"].get("properties", {})
    values = {name: spec["default"] for name, spec in properties.items() if spec.get("default") is not None}
    return apply_values(template["job_configuration"], {**values, **RUN_VALUES}, remove_notset=True)["job_manifest"]


def job_template_structure_problems(path: Path, template: Any) -> Iterator[Problem]:
    from prefect.utilities.templating import find_placeholders

    if not isinstance(template, dict) or not all(isinstance(template.get(k), dict) for k in ("job_configuration", "variables")):
        yield Problem(path, "file", "a base job template needs the objects job_configuration and variables")
        return
    variables = template["variables"]
    try:
        jsonschema.validators.validator_for(variables).check_schema(variables)
    except jsonschema.SchemaError as exc:
        yield Problem(path, f"variables.{dotted(exc.path)}", f"not a valid JSON schema: {exc.message}")
        return
    properties = variables.get("properties", {})
    defaults = {name: spec["default"] for name, spec in properties.items() if "default" in spec}
    for error in jsonschema.validators.validator_for(variables)(variables).iter_errors(defaults):
        yield Problem(path, f"variables.properties.{dotted(error.absolute_path)}", f"default: {error.message}")
    for placeholder in find_placeholders(template["job_configuration"]):
        if placeholder.name.split(".")[0] not in properties:
            yield Problem(path, "job_configuration", f"placeholder {placeholder.full_match} names no variable, "
                                                     "so Prefect would silently drop the field")
    if not isinstance(template["job_configuration"].get("job_manifest"), dict):
        yield Problem(path, "job_configuration", "needs a job_manifest (a batch/v1 Job)")


def check_job_template(path: Path, kubernetes_version: str) -> tuple[list[Problem], dict | None]:
    """The problems of the template, and its rendered Job (None when it cannot be rendered)."""
    try:
        template = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return [Problem(path, "file", f"cannot be read as JSON: {exc}")], None
    problems = list(job_template_structure_problems(path, template))
    if problems:
        return problems, None
    job = render_job_manifest(template)
    where = "job_manifest"
    if job.get("apiVersion") != "batch/v1" or job.get("kind") != "Job":
        return [Problem(path, where, "must be apiVersion batch/v1, kind Job")], None
    pod = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = pod_containers(job)
    if not containers or containers[0].get("name") != "prefect-job" or pod.get("restartPolicy") != "Never":
        problems.append(Problem(path, where, "the worker needs its first container named prefect-job and restartPolicy Never"))
    for field, value in PREFECT_POD_FIELDS.items():
        if pod.get(field) != value:
            problems.append(Problem(path, where, f"the worker requires spec.template.spec.{field}: {value}"))
    checked = copy.deepcopy(job)
    for field in PREFECT_POD_FIELDS:
        checked["spec"]["template"]["spec"].pop(field, None)
    schema_problems = list(kubernetes_schema_problems(path, checked, kubernetes_version, where))
    problems += schema_problems or [*kubernetes_rules(path, checked, example=False), *gpu_rules(path, checked)]
    return problems, None if schema_problems else checked


def check_all(compose: Path = COMPOSE_PATH, k8s_dir: Path = K8S_DIR, job_template: Path | None = None,
              env_example: Path | None = None, kubernetes_version: str = KUBERNETES_VERSION) -> tuple[list[Problem], str]:
    """All checks; returns the problems and a one-line account of what was checked."""
    k8s_problems, objects = check_kubernetes(k8s_dir, kubernetes_version)
    job_path = job_template or k8s_dir / JOB_TEMPLATE_NAME
    job_problems, job = check_job_template(job_path, kubernetes_version)
    problems = [*check_compose(compose, env_example or compose.parent / ".env.example"), *k8s_problems, *job_problems,
                *namespace_rules(objects, job_path, job)]
    problems = list(dict.fromkeys(problems))  # one wrong value can fail several branches of a schema alike
    summary = (f"{compose.name} (Compose Specification, check-jsonschema {version('check-jsonschema')}); "
               f"{len(objects)} Kubernetes objects in {k8s_dir.name}/ and the work-pool job template "
               f"(Kubernetes {kubernetes_version} schemas, kubernetes-validate {version('kubernetes-validate')})")
    return problems, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compose", type=Path, default=COMPOSE_PATH)
    parser.add_argument("--env-example", type=Path, help="default: .env.example beside the compose file")
    parser.add_argument("--k8s", type=Path, default=K8S_DIR, help="directory of manifests (recursive)")
    parser.add_argument("--job-template", type=Path, help=f"default: {JOB_TEMPLATE_NAME} in the --k8s directory")
    parser.add_argument("--kubernetes-version", default=KUBERNETES_VERSION)
    args = parser.parse_args(argv)
    try:
        problems, summary = check_all(args.compose, args.k8s, args.job_template, args.env_example, args.kubernetes_version)
    except k8s_schemas.VersionNotSupportedError:
        print(f"kubernetes-validate {version('kubernetes-validate')} has no schemas for Kubernetes "
              f"{args.kubernetes_version}; choose one of {sorted(set(k8s_schemas.all_versions()), key=Version)}", file=sys.stderr)
        return 2
    for problem in problems:
        print(problem)
    if problems:
        print(f"infra: {len(problems)} problem(s); checked {summary}", file=sys.stderr)
        return 1
    print(f"infra: ok; checked {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
