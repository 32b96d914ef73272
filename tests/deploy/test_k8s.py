"""deploy/k8s/, checked without a cluster: the manifests parse and refer to each other, the probes hit
real routes of the app, the grace period covers the shutdown, and ConfigMap + Secret are the
server's real, complete production configuration."""

from __future__ import annotations

import subprocess
from typing import Any

import aiohttp
import pytest

from config.settings import ConfigError, load_settings, read_dotenv
from server.app import SIO, create_app
from tests.deploy.files import (
    ENV_NAME,
    K8S,
    ROOT,
    example_env_names,
    k8s_docs,
    k8s_object,
    settings_read_by_code,
)
from tests.support.apps import RunningApp

SECRET_EXAMPLE = K8S / "secret.env.example"
# What an operator writes into secret.env for the blank (required) entries.
FILLED = {
    "PAIRLY_JWT_SECRET": "jwt-secret-for-the-k8s-test-0123456789abcdef",
    "PAIRLY_METRICS_TOKEN": "metrics-token-for-the-k8s-test",
    "PAIRLY_TURN_SECRET": "turn-secret-for-the-k8s-test",
}


def container() -> dict[str, Any]:
    (server,) = k8s_object("Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(server)


def pod_labels() -> dict[str, str]:
    return dict(k8s_object("Deployment")["spec"]["template"]["metadata"]["labels"])


def config_data() -> dict[str, str]:
    return {k: str(v) for k, v in k8s_object("ConfigMap")["data"].items()}


def secret_example() -> dict[str, str]:
    return read_dotenv(SECRET_EXAMPLE)


def production_env() -> dict[str, str]:
    return {**config_data(), **secret_example(), **FILLED, "PAIRLY_NODE_ID": "pairly-abc12"}


def named_port(name_or_number: str | int) -> int:
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    if isinstance(name_or_number, int):
        assert name_or_number in ports.values()
        return name_or_number
    return int(ports[name_or_number])


def test_manifests_parse_and_the_kustomization_lists_them_all() -> None:
    docs = k8s_docs()
    (kustomization,) = docs.pop("kustomization.yaml")
    assert set(kustomization["resources"]) == set(docs)
    for name, objects in docs.items():
        for obj in objects:
            assert obj.get("apiVersion") and obj.get("kind") and obj["metadata"].get("name"), name
    # The Secret is generated from a file the operator writes and git ignores; its example is committed.
    (generator,) = kustomization["secretGenerator"]
    assert generator["envs"] == ["secret.env"] and SECRET_EXAMPLE.is_file()
    ignored = subprocess.run(["git", "check-ignore", "-q", str(K8S / "secret.env")], cwd=ROOT, check=False)
    assert ignored.returncode == 0, "deploy/k8s/secret.env must be git-ignored"
    env_from = container()["envFrom"]
    assert {"configMapRef": {"name": k8s_object("ConfigMap")["metadata"]["name"]}} in env_from
    assert {"secretRef": {"name": generator["name"]}} in env_from


def test_env_names_are_valid_documented_settings_the_server_reads() -> None:
    documented, read = example_env_names(), settings_read_by_code()
    names = set(config_data()) | set(secret_example()) | {e["name"] for e in container().get("env", [])}
    for var in names:
        assert ENV_NAME.match(var), f"{var!r} is not a valid environment variable name"
        assert var in documented, f"{var} is not in config/example.env"
        assert var in read, f"{var} is not read by the server"
    # Secrets stay out of the ConfigMap.
    assert not [var for var in config_data() if any(w in var for w in ("SECRET", "TOKEN", "PASSWORD"))]
    assert not {"MONGO_URL", "REDIS_URL"} & set(config_data()), "store URLs carry credentials: secret.env"


def test_each_pod_is_its_own_node() -> None:
    env = {e["name"]: e for e in container()["env"]}
    assert env["PAIRLY_NODE_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_configmap_and_secret_are_a_complete_production_configuration() -> None:
    settings = load_settings(production_env())
    assert settings.is_production and settings.mongo_url and settings.redis_url
    assert settings.port == named_port("http")
    # Feature modules validate their own variables when the app is built (TURN, payments, push...).
    create_app(settings)


@pytest.mark.parametrize("var", sorted(FILLED))
def test_the_secret_example_ships_no_usable_secret(var: str) -> None:
    assert secret_example()[var] == ""
    env = {**production_env(), var: ""}
    with pytest.raises(ConfigError) as refused:
        create_app(load_settings(env))
    assert refused.value.var == var


async def test_probes_point_at_real_routes(app_server: RunningApp) -> None:
    server = container()
    probes = {kind: server[kind]["httpGet"] for kind in ("readinessProbe", "livenessProbe", "startupProbe")}
    assert probes["readinessProbe"]["path"] == "/readyz" and probes["livenessProbe"]["path"] == "/healthz"
    async with aiohttp.ClientSession() as http:
        for kind, probe in probes.items():
            assert named_port(probe["port"]) == int(config_data()["PAIRLY_PORT"]), kind
            async with http.get(app_server.url + probe["path"]) as resp:
                assert resp.status == 200, f"{kind}: {probe['path']} answered {resp.status}"


def test_grace_period_covers_prestop_and_the_shutdown_timeout() -> None:
    spec = k8s_object("Deployment")["spec"]["template"]["spec"]
    command = container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = float(command[1])
    shutdown = float(config_data()["PAIRLY_SHUTDOWN_TIMEOUT_S"])
    # Kubernetes counts the preStop hook inside the grace period; leave a margin before SIGKILL.
    assert spec["terminationGracePeriodSeconds"] >= pre_stop + shutdown + 2


def test_rollouts_and_disruptions_take_one_pod_at_a_time() -> None:
    deployment = k8s_object("Deployment")["spec"]
    assert deployment["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pdb = k8s_object("PodDisruptionBudget")["spec"]
    assert pdb["maxUnavailable"] == 1 and pdb["selector"]["matchLabels"].items() <= pod_labels().items()
    assert deployment["selector"]["matchLabels"].items() <= pod_labels().items()


def test_service_and_ingress_reach_the_pods() -> None:
    service = k8s_object("Service")
    assert service["spec"]["selector"].items() <= pod_labels().items()
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    for port in ports.values():
        named_port(port["targetPort"])
    ingress = k8s_object("Ingress")
    paths = {}
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == service["metadata"]["name"]
            assert backend["port"]["name"] in ports
            paths[path["path"]] = path["pathType"]
    # Socket.IO and the REST API only: /metrics is per pod, scraped inside the cluster.
    assert paths == {"/socket.io": "Prefix", "/api": "Prefix"}


async def test_ingress_keeps_websockets_open_and_pins_polling_clients(app_server: RunningApp) -> None:
    notes = k8s_object("Ingress")["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    eio = app_server.app[SIO].eio
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(notes[prefix + timeout]) > eio.ping_interval + eio.ping_timeout
    assert notes[prefix + "affinity"] == "cookie"
    # balanced mode re-pins sessions when pods are added, which breaks a polling client's session.
    assert notes[prefix + "affinity-mode"] == "persistent"
    assert notes[prefix + "session-cookie-name"]


def test_hpa_scales_the_deployment_on_cpu_and_scales_in_slowly() -> None:
    hpa = k8s_object("HorizontalPodAutoscaler")["spec"]
    deployment = k8s_object("Deployment")
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": deployment["metadata"]["name"]}
    (metric,) = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
    # Utilisation is relative to the request: without one the HPA cannot scale.
    assert container()["resources"]["requests"]["cpu"]
    assert 2 <= hpa["minReplicas"] <= deployment["spec"]["replicas"] <= hpa["maxReplicas"]
    # Scale-in drops sockets (clients reconnect elsewhere): slowly, one pod at a time.
    down = hpa["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] >= 300
    assert down["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": down["policies"][0]["periodSeconds"]}]


def test_startup_probe_waits_for_the_store_connect_timeout() -> None:
    probe = container()["startupProbe"]
    # Start-up may wait this long for MongoDB/Redis before exiting with an error; killing it sooner
    # would hide that error behind a liveness restart.
    budget = probe["periodSeconds"] * probe["failureThreshold"]
    assert budget >= float(config_data()["PAIRLY_STORE_CONNECT_TIMEOUT_S"])
