"""deploy/: the image, compose file, Kubernetes manifests and dashboard, checked by parsing.

These tests read the files and check what must hold for them to work with this code base
(settings that exist, the user, the volume, the probes, the topics, the metric names the code
defines), and validate the manifests against Kubernetes' own schemas and the compose file
against the Compose Specification's. The image itself is built and run by tests/deploy.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from processor.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
STATE_DIR = "/var/lib/ncd"
UID = 10001


# ----------------------------------------------------------------------------- helpers


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile: continuations joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        keyword, _, args = whole.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions


def stages(instructions: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """The instructions of each build stage (each starting with its FROM)."""
    result: list[list[tuple[str, str]]] = []
    for keyword, args in instructions:
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, args))
    return result


def setting_of(env_name: str) -> str:
    """The Settings field of an NCD_* environment variable (fails if there is none)."""
    assert env_name.startswith("NCD_"), env_name
    field = env_name[len("NCD_") :].lower()
    assert field in Settings.model_fields, f"{env_name} is not a setting"
    return field


def settings_from_env(env: dict[str, Any]) -> Settings:
    """Validate NCD_* variables as the worker would (fails on an unknown or bad value)."""
    values = {setting_of(k): str(v) for k, v in env.items() if k.startswith("NCD_")}
    return Settings(**values)


def k8s_documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def k8s(kind: str) -> dict[str, Any]:
    found = [d for d in k8s_documents() if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def walk_env_names(node: Any) -> Iterator[str]:
    """Every NCD_* name used as an env var name or ConfigMap key anywhere in a document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str) and key.startswith("NCD_"):
                yield key
            if key == "name" and isinstance(value, str) and value.startswith("NCD_"):
                yield value
            yield from walk_env_names(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk_env_names(item)


def metric_names() -> set[str]:
    """Series names the code exposes (from the metrics module; else the agreed names)."""
    try:
        from processor.observability.metrics import Metrics
    except ImportError:
        return _agreed_metric_names()
    names: set[str] = set()
    for family in Metrics().registry.collect():
        names.update(_series(family.name, family.type))
    return names


def _series(name: str, kind: str) -> set[str]:
    if kind == "counter":
        return {name + "_total", name + "_created"}
    if kind == "histogram":
        return {name + suffix for suffix in ("_bucket", "_sum", "_count", "_created")}
    return {name}


def _agreed_metric_names() -> set[str]:  # pragma: no cover - only before metrics.py exists
    text = Path("/tmp/shared_names.md").read_text()
    names: set[str] = set()
    for name in re.findall(r"`(ncd_[a-z_]+)", text):
        if name.endswith("_total"):
            names.add(name)
        elif name.endswith("_seconds"):
            names.update(_series(name, "histogram"))
        else:
            names.add(name)
    return names


# ----------------------------------------------------------------------------- Dockerfile


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return dockerfile_instructions((DEPLOY / "Dockerfile").read_text())


def test_dockerfile_is_multi_stage_on_python_slim(dockerfile: list[tuple[str, str]]) -> None:
    """The image builds in one stage and runs from a fresh python:3.11-slim stage."""
    built = stages(dockerfile)
    assert len(built) >= 2
    args = dict(a.split("=", 1) for k, a in dockerfile if k == "ARG" and "=" in a)
    bases = [s[0][1].split()[0] for s in built]
    resolved = [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], b) for b in bases]
    assert all(base == "python:3.11-slim" for base in resolved)
    runtime = built[-1]
    assert any(k == "COPY" and a.startswith("--from=") for k, a in runtime)


def test_dockerfile_runs_as_the_non_root_user(dockerfile: list[tuple[str, str]]) -> None:
    """The last USER of the runtime stage is uid 10001, set before the entrypoint."""
    runtime = stages(dockerfile)[-1]
    users = [i for i, (k, _) in enumerate(runtime) if k == "USER"]
    assert users
    user = runtime[users[-1]][1].split(":")[0]
    assert user == str(UID)
    entry = [i for i, (k, _) in enumerate(runtime) if k == "ENTRYPOINT"]
    assert entry and users[-1] < entry[0]
    run_lines = " ".join(a for k, a in runtime if k == "RUN")
    assert f"--uid {UID}" in run_lines
    assert f"chown {UID}:{UID} {STATE_DIR}" in run_lines


def test_dockerfile_keeps_state_on_a_volume(dockerfile: list[tuple[str, str]]) -> None:
    """State lives on a volume at /var/lib/ncd, which is NCD_STATE_DIR."""
    runtime = stages(dockerfile)[-1]
    volumes = [json.loads(a) for k, a in runtime if k == "VOLUME"]
    assert [STATE_DIR] in volumes
    env = " ".join(a for k, a in runtime if k == "ENV")
    assert f"NCD_STATE_DIR={STATE_DIR}" in env.split()
    for token in env.split():
        if token.startswith("NCD_"):
            setting_of(token.split("=", 1)[0])


def test_dockerfile_entrypoint_is_the_console_script(dockerfile: list[tuple[str, str]]) -> None:
    """ENTRYPOINT is the ncd-processor script pyproject.toml installs; CMD runs the worker."""
    runtime = stages(dockerfile)[-1]
    entrypoints = [json.loads(a) for k, a in runtime if k == "ENTRYPOINT"]
    cmds = [json.loads(a) for k, a in runtime if k == "CMD"]
    assert entrypoints[-1] == ["ncd-processor"]
    assert cmds[-1] == ["run"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "ncd-processor" in project["scripts"]


def test_dockerfile_healthcheck_probes_livez(dockerfile: list[tuple[str, str]]) -> None:
    """The HEALTHCHECK asks /livez on the HTTP port with python (no curl in the image)."""
    checks = [a for k, a in stages(dockerfile)[-1] if k == "HEALTHCHECK"]
    assert len(checks) == 1
    command = json.loads(checks[0].split("CMD", 1)[1])
    assert command[0] == "python"
    assert "/livez" in command[-1]
    assert "NCD_HTTP_PORT" in command[-1]
    exposed = [a for k, a in stages(dockerfile)[-1] if k == "EXPOSE"]
    assert exposed == [str(Settings.model_fields["http_port"].default)]


def test_image_and_manifests_listen_on_every_address(
    dockerfile: list[tuple[str, str]], compose: dict[str, Any]
) -> None:
    """The image, the ConfigMap and the compose worker set NCD_HTTP_HOST=0.0.0.0 themselves,
    whatever the code's default, so probes and scrapes from outside the container connect."""
    env = " ".join(a for k, a in stages(dockerfile)[-1] if k == "ENV").split()
    assert "NCD_HTTP_HOST=0.0.0.0" in env
    assert _config()["NCD_HTTP_HOST"] == "0.0.0.0"
    assert compose["services"]["worker"]["environment"]["NCD_HTTP_HOST"] == "0.0.0.0"


def test_dockerfile_copies_only_what_dockerignore_keeps(
    dockerfile: list[tuple[str, str]],
) -> None:
    """Every file the build copies from the context exists and is not in .dockerignore."""
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    sources = []
    for keyword, args in dockerfile:
        if keyword == "COPY" and not args.startswith("--from="):
            sources.extend(shlex.split(args)[:-1])
    assert {"pyproject.toml", "README.md", "processor"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), source
        assert source not in ignored, source
    assert {".git", ".venv", "state", "tests"} <= ignored


# ----------------------------------------------------------------------------- compose


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def test_compose_kafka_is_apache_kafka_in_kraft_mode(compose: dict[str, Any]) -> None:
    """The broker is the official apache/kafka image as a combined KRaft broker+controller."""
    services = compose["services"]
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@")
    assert not any("zookeeper" in str(s.get("image", "")) for s in services.values())
    # One broker: internal topics must not ask for more replicas than exist.
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"


def test_compose_topic_setup_creates_every_worker_topic(compose: dict[str, Any]) -> None:
    """The one-shot service creates the worker's topics with its partitions and compaction."""
    services = compose["services"]
    worker_settings = settings_from_env(services["worker"]["environment"])
    script = services["topics"]["command"][0]
    created = {}
    for line in script.splitlines():
        parts = line.split()
        if parts[:1] == ["create"]:
            created[parts[1]] = (int(parts[2]), "cleanup.policy=compact" in parts[3:])
    expected = {
        spec.name: (spec.partitions, spec.compacted) for spec in worker_settings.topic_specs()
    }
    assert created == expected
    assert worker_settings.create_topics is False
    depends = services["worker"]["depends_on"]["topics"]["condition"]
    assert depends == "service_completed_successfully"


def test_compose_worker_keeps_state_on_a_named_volume(compose: dict[str, Any]) -> None:
    """The worker is built from deploy/Dockerfile and mounts a named volume at its state dir."""
    worker = compose["services"]["worker"]
    build = worker["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    settings = settings_from_env(worker["environment"])
    assert str(settings.state_dir) == STATE_DIR
    mounts = dict(v.split(":", 1) for v in worker["volumes"])
    assert STATE_DIR in mounts.values()
    volume = next(name for name, path in mounts.items() if path == STATE_DIR)
    assert volume in compose["volumes"]
    assert settings.bootstrap_servers.split(":")[0] == "kafka"


def test_compose_prometheus_scrapes_the_worker(compose: dict[str, Any]) -> None:
    """Prometheus mounts deploy/prometheus/prometheus.yml, which scrapes worker:HTTP_PORT."""
    services = compose["services"]
    mount = services["prometheus"]["volumes"][0].split(":")
    assert (DEPLOY / mount[0]).resolve() == DEPLOY / "prometheus" / "prometheus.yml"
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = config["scrape_configs"]
    port = settings_from_env(services["worker"]["environment"]).http_port
    targets = [t for job in jobs for sc in job["static_configs"] for t in sc["targets"]]
    assert f"worker:{port}" in targets
    assert all(job.get("metrics_path", "/metrics") == "/metrics" for job in jobs)


def _compose_schema_errors(path: Path) -> str:
    """check-jsonschema's report on ``path`` against the Compose Specification ("" if valid)."""
    done = subprocess.run(
        [Path(sys.executable).parent / "check-jsonschema", "--builtin-schema",
         "vendor.compose-spec", str(path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return "" if done.returncode == 0 else done.stdout + done.stderr


def test_compose_file_follows_the_compose_specification(tmp_path: Path) -> None:
    """compose.yaml validates against the Compose Specification's schema; a typo would not."""
    assert _compose_schema_errors(DEPLOY / "compose.yaml") == ""
    broken = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    broken["services"]["worker"]["restrat"] = "always"
    (tmp_path / "compose.yaml").write_text(yaml.safe_dump(broken))
    assert "'restrat' was unexpected" in _compose_schema_errors(tmp_path / "compose.yaml")


def test_compose_env_vars_are_settings(compose: dict[str, Any]) -> None:
    """Every NCD_* variable in compose.yaml is a real setting with a valid value."""
    for service in compose["services"].values():
        env = service.get("environment", {})
        settings_from_env(env)
        for name in walk_env_names(env):
            setting_of(name)


# ----------------------------------------------------------------------------- Kubernetes


def _container() -> dict[str, Any]:
    containers = k8s("StatefulSet")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _config() -> dict[str, str]:
    data: dict[str, str] = k8s("ConfigMap")["data"]
    return data


def test_k8s_env_vars_are_settings() -> None:
    """Every NCD_* name in the manifests is a Settings field; the ConfigMap's values validate."""
    names = [name for doc in k8s_documents() for name in walk_env_names(doc)]
    assert len(names) > 10
    for name in names:
        setting_of(name)
    settings_from_env(_config())


def test_k8s_statefulset_mounts_a_claim_at_the_state_dir() -> None:
    """A volumeClaimTemplate is mounted at NCD_STATE_DIR of the ConfigMap."""
    sts = k8s("StatefulSet")["spec"]
    claims = {c["metadata"]["name"]: c for c in sts["volumeClaimTemplates"]}
    mounts = {m["mountPath"]: m["name"] for m in _container()["volumeMounts"]}
    state_dir = _config()["NCD_STATE_DIR"]
    assert state_dir == STATE_DIR
    assert mounts[state_dir] in claims
    claim = claims[mounts[state_dir]]["spec"]
    assert claim["accessModes"] == ["ReadWriteOnce"]
    assert claim["resources"]["requests"]["storage"]


def test_k8s_probes_hit_health_endpoints_on_the_configured_port() -> None:
    """Liveness asks /livez and readiness /readyz, on the container port NCD_HTTP_PORT names."""
    container = _container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    port = int(_config()["NCD_HTTP_PORT"])

    def target(probe: dict[str, Any]) -> tuple[str, int]:
        get = probe["httpGet"]
        return get["path"], ports.get(get["port"], get["port"])

    assert target(container["livenessProbe"]) == ("/livez", port)
    assert target(container["readinessProbe"]) == ("/readyz", port)
    if "startupProbe" in container:
        assert target(container["startupProbe"]) == ("/livez", port)
    annotations = k8s("StatefulSet")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)


def test_k8s_pod_runs_as_non_root() -> None:
    """The pod runs as uid 10001 with runAsNonRoot and no privilege escalation."""
    pod = k8s("StatefulSet")["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == UID
    assert pod["fsGroup"] == UID
    container = _container()["securityContext"]
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"]["drop"] == ["ALL"]


def test_k8s_resources_are_set() -> None:
    """The worker asks for and is limited in CPU and memory."""
    resources = _container()["resources"]
    for section in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[section])


def test_k8s_instance_id_is_the_pod_name_and_password_a_secret_file() -> None:
    """NCD_INSTANCE_ID comes from the pod name; the SASL password from a file of the Secret."""
    env = {e["name"]: e for e in _container()["env"]}
    assert env["NCD_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert "NCD_SASL_PASSWORD" not in env, "a password in the environment shows in describe"
    assert "NCD_SASL_PASSWORD" not in _config()
    password_file = Path(env["NCD_SASL_PASSWORD_FILE"]["value"])
    mounts = {m["name"]: m for m in _container()["volumeMounts"]}
    volumes = {v["name"]: v for v in k8s("StatefulSet")["spec"]["template"]["spec"]["volumes"]}
    secret = k8s("Secret")
    (mount,) = [m for m in mounts.values() if Path(m["mountPath"]) == password_file.parent]
    volume = volumes[mount["name"]]["secret"]
    assert volume["secretName"] == secret["metadata"]["name"]
    assert volume["defaultMode"] & 0o007 == 0, "the password file is readable by others"
    items = {item["path"]: item["key"] for item in volume["items"]}
    assert items[password_file.name] in secret["stringData"]
    froms = [f["configMapRef"]["name"] for f in _container()["envFrom"]]
    assert froms == [k8s("ConfigMap")["metadata"]["name"]]


def test_k8s_selectors_agree() -> None:
    """The headless Service, the PDB and the StatefulSet select the StatefulSet's pods."""
    sts = k8s("StatefulSet")
    labels = sts["spec"]["template"]["metadata"]["labels"]
    service = k8s("Service")
    pdb = k8s("PodDisruptionBudget")
    assert service["spec"]["clusterIP"] == "None"
    assert sts["spec"]["serviceName"] == service["metadata"]["name"]
    for selector in (
        service["spec"]["selector"],
        pdb["spec"]["selector"]["matchLabels"],
        sts["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= labels.items()
    assert pdb["apiVersion"] == "policy/v1"
    assert "maxUnavailable" in pdb["spec"] or "minAvailable" in pdb["spec"]


def test_k8s_replicas_do_not_exceed_partitions() -> None:
    """More workers than partitions of ncd.aggregations would leave some idle."""
    replicas = k8s("StatefulSet")["spec"]["replicas"]
    assert 1 <= replicas <= int(_config()["NCD_PARTITIONS"])


def test_k8s_manifests_validate_strictly_against_kubernetes_schemas() -> None:
    """Every manifest validates against the newest Kubernetes release kubernetes-validate
    bundles, strictly (an unknown field fails), and a misspelt field is caught."""
    version = kubernetes_validate.latest_version()
    docs = k8s_documents()
    resources = [d for d in docs if d["kind"] != "Kustomization"]
    assert {d["kind"] for d in resources} == {
        "ConfigMap",
        "Secret",
        "Service",
        "StatefulSet",
        "PodDisruptionBudget",
    }
    for doc in resources:
        kubernetes_validate.validate(doc, version, strict=True)
    broken = copy.deepcopy(k8s("StatefulSet"))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(broken, version, strict=True)


def test_k8s_kustomization_lists_every_manifest() -> None:
    """kubectl apply -k deploy/k8s applies every manifest in the directory."""
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    manifests = {p.name for p in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests


# ----------------------------------------------------------------------------- Grafana


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "ncd-processor.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            exprs.append(query["query"])
    return exprs


def test_dashboard_uses_only_metrics_the_code_defines() -> None:
    """Every ncd_* series in the dashboard's queries is one the metrics module exposes."""
    known = metric_names()
    used = {name for expr in _dashboard_exprs() for name in re.findall(r"\bncd_\w+", expr)}
    assert used
    assert used <= known, sorted(used - known)


def test_dashboard_shows_every_issue_metric() -> None:
    """Records by verdict, events by type, dead letters, guard trips, lag, latency, state,
    restore and readiness each have a query."""
    text = "\n".join(_dashboard_exprs())
    for needle in (
        "by (verdict) (rate(ncd_records_total",
        "by (type) (rate(ncd_events_total",
        "ncd_dead_letters_total",
        "ncd_delete_guard_trips_total",
        "by (partition) (ncd_consumer_lag",
        "histogram_quantile(0.5, sum by (le) (rate(ncd_batch_duration_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(ncd_batch_duration_seconds_bucket",
        "ncd_state_keys",
        "ncd_restore_remaining",
        "ncd_ready",
    ):
        assert needle in text, needle
