"""deploy/kuberay.yaml agrees with the code: the ingress runs a command `audiosearch serve` accepts (the real
parser), the index volume is mounted where --index points on every pod, the image is built from a Dockerfile
target with extras pyproject defines, the probes hit routes the real app answers, and the Service, HPA and Ray
head address name what the file defines."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from audiosearch.app.cli import COMMANDS
from audiosearch.app.cli_args import build_parser
from audiosearch.app.main import create_app
from audiosearch.app.settings import Settings
from tests.conftest import REPO

MANIFEST = REPO / "deploy" / "kuberay.yaml"


@pytest.fixture(scope="module")
def docs() -> dict[str, dict]:
    found = {d["kind"]: d for d in yaml.safe_load_all(MANIFEST.read_text()) if d}
    assert set(found) == {"PersistentVolumeClaim", "RayCluster", "Deployment", "Service", "HorizontalPodAutoscaler"}
    return found


def pods(docs: dict[str, dict]) -> dict[str, dict]:
    """Every pod template: the Ray head, each worker group, the ingress."""
    ray = docs["RayCluster"]["spec"]
    out = {"head": ray["headGroupSpec"]["template"]["spec"], "ingress": docs["Deployment"]["spec"]["template"]["spec"]}
    out |= {g["groupName"]: g["template"]["spec"] for g in ray["workerGroupSpecs"]}
    return out


def ingress(docs: dict[str, dict]) -> dict:
    return docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]


def startup(docs: dict[str, dict]) -> tuple[list[str], list[str]]:
    """The ingress's `sh -c` script as its two commands: `ray start ...` and `audiosearch serve ...`."""
    container = ingress(docs)
    assert container["command"] == ["sh", "-c"] and len(container["args"]) == 1
    first, second = (shlex.split(part) for part in container["args"][0].split("&&"))
    assert second[:2] == ["exec", "audiosearch"], second
    return first, second[2:]


def test_the_ingress_runs_a_serve_command_the_cli_accepts(docs) -> None:
    ray_start, argv = startup(docs)
    args = build_parser(COMMANDS).parse_args(argv)  # the real parser: an unknown or misspelt flag exits here
    assert (args.command, args.ray, args.host) == ("serve", "auto", "0.0.0.0")
    assert args.replicas >= 1 and args.shards >= 1
    port = {p["name"]: p["containerPort"] for p in ingress(docs)["ports"]}
    assert args.port == port["http"]
    # the node it joins the cluster as: the RayCluster's head service (KubeRay names it <name>-head-svc), the
    # head's GCS port, and no CPUs (no shard actor is placed beside the ingress)
    head = docs["RayCluster"]["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    gcs = next(p["containerPort"] for p in head["ports"] if p["name"] == "gcs-server")
    assert ray_start[:2] == ["ray", "start"]
    assert f"--address={docs['RayCluster']['metadata']['name']}-head-svc:{gcs}" in ray_start
    assert "--num-cpus=0" in ray_start
    env = {e["name"]: e.get("value") for e in ingress(docs)["env"]}
    assert env["AUDIOSEARCH_THREADS"] == ingress(docs)["resources"]["requests"]["cpu"]  # pools sized to the request


def test_the_index_is_one_read_write_many_volume_at_the_index_path_on_every_pod(docs) -> None:
    claim = docs["PersistentVolumeClaim"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    index = str(build_parser(COMMANDS).parse_args(startup(docs)[1]).index)
    for name, spec in pods(docs).items():
        volume = next(
            v["name"] for v in spec["volumes"] if v["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
        )
        mounts = [m["mountPath"] for c in spec["containers"] for m in c["volumeMounts"] if m["name"] == volume]
        assert mounts == [index], (name, mounts)


def test_every_pod_runs_the_image_a_dockerfile_target_builds_with_ray(docs) -> None:
    stages = set(re.findall(r"^FROM \S+ AS (\S+)$", (REPO / "Dockerfile").read_text(), re.M))
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for kind in ("RayCluster", "Deployment"):
        build = shlex.split(docs[kind]["metadata"]["annotations"]["audiosearch/build"])
        assert build[:2] == ["docker", "build"] and build[-1] == "."
        target, tag = build[build.index("--target") + 1], build[build.index("-t") + 1]
        chosen = build[build.index("--build-arg") + 1].removeprefix("EXTRAS=").split(",")
        assert target in stages and set(chosen) <= set(extras) and "ray" in chosen, (target, chosen)
        images = {c["image"] for spec in pods(docs).values() for c in spec["containers"]}
        assert images == {tag}


def test_the_probes_hit_routes_the_app_answers(docs) -> None:
    client = TestClient(create_app(Settings(index_dir=Path("/nonexistent"))))  # no lifespan: nothing loads
    container = ingress(docs)
    probes = {k: container[k]["httpGet"] for k in ("startupProbe", "livenessProbe", "readinessProbe")}
    for kind, probe in probes.items():
        assert probe["port"] == "http", kind
        status = client.get(probe["path"]).status_code
        assert status == (503 if kind == "readinessProbe" else 200), (kind, probe["path"], status)  # loading: 503
    assert probes["readinessProbe"]["path"] == "/readyz" and probes["livenessProbe"]["path"] == "/healthz"


def test_the_ray_pods_probe_their_dashboard_agent_port(docs) -> None:
    ray = docs["RayCluster"]["spec"]
    for group in [ray["headGroupSpec"], *ray["workerGroupSpecs"]]:
        port = group["rayStartParams"]["dashboard-agent-listen-port"]
        container = group["template"]["spec"]["containers"][0]
        for kind in ("readinessProbe", "livenessProbe"):
            command = container[kind]["exec"]["command"]
            assert command[:2] == ["python", "-c"] and f"127.0.0.1:{port}/api/local_raylet_healthz" in command[2]
            compile(command[2], kind, "exec")  # the probe's script is Python
    assert ray["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"


def test_every_ray_process_and_the_ingress_share_one_auth_token(docs) -> None:
    for name, spec in pods(docs).items():
        (container,) = spec["containers"]
        env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
        assert env["RAY_AUTH_MODE"] == "token", name
        assert env["RAY_AUTH_TOKEN"] == {"secretKeyRef": {"name": "audiosearch-ray-auth", "key": "auth_token"}}, name
        assert env["RAY_USAGE_STATS_ENABLED"] == "0", name  # nothing reports home
    assert "kubectl create secret generic audiosearch-ray-auth --from-literal=auth_token=" in MANIFEST.read_text()


def test_the_service_and_the_autoscaler_point_at_the_ingress(docs) -> None:
    deployment, service, hpa = docs["Deployment"], docs["Service"], docs["HorizontalPodAutoscaler"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == labels == service["spec"]["selector"]
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert 2 <= hpa["spec"]["minReplicas"] <= deployment["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and 0 < metric["resource"]["target"]["averageUtilization"] < 100
    assert "cpu" in ingress(docs)["resources"]["requests"]  # a CPU utilization target needs a request
