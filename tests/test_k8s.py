"""The Kubernetes manifests: every kustomize variant renders, every object validates offline against the API
schemas of the oldest supported release (1.29, native sidecars) and the newest one bundled, and the properties a
platform engineer relies on hold in each variant: startup ordering, probes on the health listener, hardening, a
grace period covering the drain, no service links, the agent port reachable only through the gateway."""

from __future__ import annotations

import base64
import functools
import inspect
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from aiohttp import web
from kubernetes_validate.utils import latest_version

from gateway.app import ADMIN_SHUTDOWN_SECONDS
from gateway.config import load_config
from gateway.policies.outbox import CLOSE_SECONDS
from tests.conftest import gateway_config, replying

K8S = Path(__file__).resolve().parent.parent / "k8s"
VARIANTS = ("base", *sorted(f"overlays/{p.name}" for p in (K8S / "overlays").iterdir() if p.is_dir()))
NATIVE = tuple(v for v in VARIANTS if v != "overlays/legacy-sidecar")
VERSIONS = ("1.29", latest_version())
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "PodMonitor")}
"""Kinds whose CRD schema kubernetes-validate does not ship: skipped by name, never by accident."""
GATEWAY, AGENT = "agent-gateway", "planner"
Obj = dict[str, Any]


@functools.cache
def render(variant: str) -> list[Obj]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the kustomize variants cannot be rendered here")
    done = subprocess.run([kubectl, "kustomize", str(K8S / variant)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return [obj for obj in yaml.safe_load_all(done.stdout) if obj]


def one(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def pod_spec(objects: list[Obj], name: str = AGENT) -> Obj:
    spec: Obj = one(objects, "Deployment", name)["spec"]["template"]["spec"]
    return spec


def containers(spec: Obj) -> Iterator[Obj]:
    yield from spec.get("initContainers", ())
    yield from spec["containers"]


def container(spec: Obj, name: str) -> Obj:
    return next(c for c in containers(spec) if c["name"] == name)


def port_number(c: Obj, port: str | int) -> int:
    return port if isinstance(port, int) else next(p["containerPort"] for p in c["ports"] if p["name"] == port)


def env_value(c: Obj, name: str) -> Any:
    return next(e.get("value", e.get("valueFrom")) for e in c.get("env", ()) if e["name"] == name)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_validates_offline(variant: str, version: str) -> None:
    skipped = set()
    for obj in render(variant):
        if (obj["apiVersion"], obj["kind"]) in CUSTOM_KINDS:
            skipped.add((obj["apiVersion"], obj["kind"]))
            continue
        kubernetes_validate.validate(obj, version, strict=True)
    assert skipped <= CUSTOM_KINDS


def test_the_variants_under_test_are_every_overlay() -> None:
    assert set(VARIANTS) == {
        "base",
        "overlays/legacy-sidecar",
        "overlays/monitoring",
        "overlays/otel",
        "overlays/redis",
    }


@pytest.mark.parametrize("variant", NATIVE)
def test_the_gateway_is_a_native_sidecar_started_before_the_agent(variant: str) -> None:
    spec = pod_spec(render(variant))
    assert [(c["name"], c.get("restartPolicy")) for c in spec["initContainers"]] == [(GATEWAY, "Always")]
    assert [c["name"] for c in spec["containers"]] == [AGENT]


def test_legacy_sidecar_is_a_plain_container_listed_first() -> None:
    spec = pod_spec(render("overlays/legacy-sidecar"))
    assert "initContainers" not in spec
    assert [c["name"] for c in spec["containers"]] == [GATEWAY, AGENT]
    assert "restartPolicy" not in spec["containers"][0]
    native = container(pod_spec(render("base")), GATEWAY)
    assert spec["containers"][0] == {k: v for k, v in native.items() if k != "restartPolicy"}


@pytest.mark.parametrize("variant", VARIANTS)
def test_probes_ask_the_health_listener(variant: str) -> None:
    gateway = container(pod_spec(render(variant)), GATEWAY)
    health_port = int(env_value(gateway, "AGENT_GATEWAY_HEALTH__PORT"))
    probes = {kind: gateway[f"{kind}Probe"]["httpGet"] for kind in ("startup", "readiness", "liveness")}
    assert {kind: probe["path"] for kind, probe in probes.items()} == {
        "startup": "/healthz",  # the health listener binds last: answering means started
        "readiness": "/readyz",
        "liveness": "/healthz",
    }
    assert {port_number(gateway, probe["port"]) for probe in probes.values()} == {health_port}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_pod_is_hardened_and_gets_no_service_links(variant: str) -> None:
    for workload in (o for o in render(variant) if o["kind"] in ("Deployment", "StatefulSet")):
        spec = workload["spec"]["template"]["spec"]
        assert spec["enableServiceLinks"] is False
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in containers(spec):
            assert c["securityContext"] == {
                "runAsNonRoot": True,
                "readOnlyRootFilesystem": True,
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"},
            }, c["name"]
            assert c["resources"]["requests"], c["name"]
            assert c["resources"]["limits"]["memory"], c["name"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_grace_period_covers_the_pre_stop_pause_and_the_drain(variant: str) -> None:
    """The gateway's drain is aiohttp's ``shutdown_timeout`` (the data runners keep the default): in-flight
    requests get that long after SIGTERM, once the admin listener (closed first) has given its own requests
    ``ADMIN_SHUTDOWN_SECONDS``; then webhook attempts in flight get ``CLOSE_SECONDS``. The pod's grace period must
    cover the preStop pause plus all three."""
    drain = inspect.signature(web.BaseRunner.__init__).parameters["shutdown_timeout"].default
    spec = pod_spec(render(variant))
    command = container(spec, GATEWAY)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    assert spec["terminationGracePeriodSeconds"] >= int(command[1]) + ADMIN_SHUTDOWN_SECONDS + drain + CLOSE_SECONDS


async def test_the_gateway_runners_keep_the_drain_the_manifests_assume(make_gateway: Any) -> None:
    gateway = await make_gateway(gateway_config([], health={"host": "127.0.0.1", "port": 0}))
    drain = inspect.signature(web.BaseRunner.__init__).parameters["shutdown_timeout"].default
    runners = (gateway.data_runner, gateway.health_runner)
    assert {runner._shutdown_timeout for runner in runners if runner is not None} == {drain}
    assert gateway.admin_runner is not None
    assert gateway.admin_runner._shutdown_timeout == ADMIN_SHUTDOWN_SECONDS


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_agent_port_is_reachable_only_through_the_gateway(variant: str) -> None:
    objects = render(variant)
    spec = pod_spec(objects)
    labels = one(objects, "Deployment", AGENT)["spec"]["template"]["metadata"]["labels"]
    gateway, agent = container(spec, GATEWAY), container(spec, AGENT)
    policy = one(objects, "NetworkPolicy", "planner-ingress")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["policyTypes"] == ["Ingress"]
    allowed = {port["port"] for rule in policy["ingress"] for port in rule["ports"]}
    assert allowed == {port_number(gateway, "gateway"), port_number(gateway, "health")}
    assert port_number(agent, "agent") not in allowed
    service = one(objects, "Service", AGENT)["spec"]
    assert service["selector"].items() <= labels.items()
    assert [port_number(gateway, p["targetPort"]) for p in service["ports"]] == [port_number(gateway, "gateway")]


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_disruption_budget_covers_the_pods(variant: str) -> None:
    objects = render(variant)
    budget = one(objects, "PodDisruptionBudget", AGENT)["spec"]
    labels = one(objects, "Deployment", AGENT)["spec"]["template"]["metadata"]["labels"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    replicas = one(objects, "Deployment", AGENT)["spec"]["replicas"]
    if replicas > 1:
        assert budget == {**budget, "minAvailable": 1}
    else:  # a budget of one replica that must stay up would block every node drain
        assert budget.get("maxUnavailable") == 1


def secret_value(objects: list[Obj], ref: Obj) -> str:
    secret = one(objects, "Secret", ref["secretKeyRef"]["name"])
    return base64.b64decode(secret["data"][ref["secretKeyRef"]["key"]]).decode()


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_admin_token_comes_from_a_secret_and_admin_stays_on_loopback(variant: str, tmp_path: Path) -> None:
    objects = render(variant)
    spec = pod_spec(objects)
    gateway = container(spec, GATEWAY)
    token = env_value(gateway, "AGENT_GATEWAY_ADMIN_TOKEN")
    assert set(token) == {"secretKeyRef"}
    assert secret_value(objects, token)
    config = load_config(settings_file(objects, spec, tmp_path), environ=pod_env(objects, gateway))
    assert config.admin.host == "127.0.0.1"
    assert config.health.host == "0.0.0.0"
    assert (config.egress.host, config.egress.agent) == ("127.0.0.1", "planner")  # named by the kubelet
    mounts = {m["name"]: m["mountPath"] for m in gateway["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert [str(d) for d in config.contract_dirs] == [mounts["contracts"]]
    assert one(objects, "ConfigMap", volumes["contracts"]["configMap"]["name"])["data"]
    assert config.store.path.startswith(mounts["state"] + "/")  # the only writable path (read-only root fs)


def settings_file(objects: list[Obj], spec: Obj, directory: Path) -> Path:
    """The gateway.yaml the sidecar reads (from the ConfigMap its config volume names), written to ``directory``."""
    gateway = container(spec, GATEWAY)
    volumes = {v["name"]: v for v in spec["volumes"]}
    mount = next(m for m in gateway["volumeMounts"] if gateway["args"][1].startswith(m["mountPath"] + "/"))
    config_map = one(objects, "ConfigMap", volumes[mount["name"]]["configMap"]["name"])
    name = gateway["args"][1].removeprefix(mount["mountPath"] + "/")
    path = directory / name
    path.write_text(config_map["data"][name])
    return path


def literal_env(c: Obj) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c.get("env", ()) if "value" in e}


def pod_env(objects: list[Obj], c: Obj) -> dict[str, str]:
    """The literal values plus what the kubelet fills in from the pod's own labels (the Downward API)."""
    labels = one(objects, "Deployment", AGENT)["spec"]["template"]["metadata"]["labels"]
    downward = {
        e["name"]: labels[path.removeprefix("metadata.labels['").removesuffix("']")]
        for e in c.get("env", ())
        if (path := e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath", "")).startswith("metadata.labels[")
    }
    return {**literal_env(c), **downward}


def test_redis_overlay_shares_one_store_between_replicas(tmp_path: Path) -> None:
    objects = render("overlays/redis")
    spec = pod_spec(objects)
    assert one(objects, "Deployment", AGENT)["spec"]["replicas"] > 1
    config = load_config(settings_file(objects, spec, tmp_path), environ=pod_env(objects, container(spec, GATEWAY)))
    assert config.store.backend == "redis"
    host, port = config.store.url.removeprefix("redis://").split("/")[0].split(":")
    service = one(objects, "Service", host)["spec"]
    redis = one(objects, "StatefulSet", host)["spec"]
    assert service["selector"].items() <= redis["template"]["metadata"]["labels"].items()
    assert [p["port"] for p in service["ports"]] == [int(port)]
    policy = one(objects, "NetworkPolicy", f"{host}-ingress")["spec"]
    peers = [peer["podSelector"]["matchLabels"] for rule in policy["ingress"] for peer in rule["from"]]
    assert peers == [one(objects, "Deployment", AGENT)["spec"]["selector"]["matchLabels"]]


def test_otel_overlay_exports_to_a_collector() -> None:
    gateway = container(pod_spec(render("overlays/otel")), GATEWAY)
    env = literal_env(gateway)
    assert env["OTEL_TRACES_EXPORTER"] == "otlp"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http://otel-collector.")
    assert "k8s.pod.name=$(POD_NAME)" in env["OTEL_RESOURCE_ATTRIBUTES"]  # expanded by the kubelet
    assert env_value(gateway, "POD_NAME") == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_monitoring_overlay_scrapes_the_health_port() -> None:
    objects = render("overlays/monitoring")
    monitor = one(objects, "PodMonitor")["spec"]
    labels = one(objects, "Deployment", AGENT)["spec"]["template"]["metadata"]["labels"]
    assert monitor["selector"]["matchLabels"].items() <= labels.items()
    assert monitor["podMetricsEndpoints"] == [{"port": "health", "path": "/metrics", "interval": "30s"}]
    assert "PodMonitor" not in {o["kind"] for o in render("base")}  # the CRD may be absent: opt-in only


def kubelet_volume(config_map: Obj, directory: Path) -> Path:
    """A ConfigMap as the kubelet mounts it: files in a timestamped directory, ``..data`` pointing at it, and one
    symlink per key through ``..data`` (what makes its updates atomic)."""
    directory.mkdir()
    payload = directory / "..2026_01_01_00_00_00.000000001"
    payload.mkdir()
    (directory / "..data").symlink_to(payload.name)
    for name, text in config_map["data"].items():
        (payload / name).write_text(text)
        (directory / name).symlink_to(f"..data/{name}")
    return directory


async def test_the_rendered_sidecar_enforces_the_configmap_contracts(
    make_gateway: Any, make_upstream: Any, http: Any, tmp_path: Path
) -> None:
    """The base's own gateway.yaml, environment and contracts ConfigMap (mounted the kubelet's way) start a
    gateway that routes to the agent, refuses what breaks the contract and is ready."""
    objects = render("base")
    spec = pod_spec(objects)
    gateway_container = container(spec, GATEWAY)
    agent = await make_upstream(replying(b'{"result": "1. design"}'))
    volumes = {v["name"]: v for v in spec["volumes"]}
    contracts = kubelet_volume(one(objects, "ConfigMap", volumes["contracts"]["configMap"]["name"]), tmp_path / "c")
    environ = pod_env(objects, gateway_container)
    environ["AGENT_GATEWAY_ADMIN_TOKEN"] = secret_value(
        objects, env_value(gateway_container, "AGENT_GATEWAY_ADMIN_TOKEN")
    )
    local = {"host": "127.0.0.1", "port": 0}  # the pod's ports, made free ones on this machine's loopback
    config = load_config(
        settings_file(objects, spec, tmp_path),
        environ=environ,
        overrides={
            "listen": local, "admin": {"port": 0}, "health": {**local, "agent_url": f"{agent.url}/healthz"},
            "egress": {"port": 0},
            "routes": [{"name": "planner", "upstream": agent.url, "default": True}],
            "contract_dirs": [str(contracts)], "store": {"path": str(tmp_path / "gateway.db")},
        },
    )  # fmt: skip
    gateway = await make_gateway(config)

    async with http.get(f"{gateway.health_url}/readyz") as answer:
        assert answer.status == 200, await answer.text()
    async with http.post(f"{gateway.data_url}/plan", json={"goal": "", "steps": ["design"]}) as answer:
        problem = await answer.json(content_type=None)
        assert (answer.status, problem["contract"]) == (422, "planner.plan")
    async with http.post(f"{gateway.data_url}/plan", json={"goal": "ship", "steps": ["design"]}) as answer:
        assert (answer.status, await answer.json()) == (200, {"result": "1. design"})
    assert [seen.path for seen in agent.seen] == ["/healthz", "/plan"]
