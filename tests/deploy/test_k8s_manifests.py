"""deploy/k8s: every overlay renders (real kustomize), every object validates against pinned Kubernetes schemas
offline, and the invariants an operator relies on hold (docs/deployment.md, "Kubernetes").

Schemas: kubernetes-validate (pinned in pyproject.toml) carries the JSON schemas of each Kubernetes release; objects
are checked in strict mode (an unknown field is an error) against the oldest and newest pinned releases below. The
ServiceMonitor is a custom resource that no offline package carries: it is checked against SERVICE_MONITOR_SCHEMA, a
subset of the prometheus-operator CRD written for the fields used here (strict too).
"""

from __future__ import annotations

import copy
import json
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
from callsd.app.config import SECRET_KEYS, Config, ConfigError, load_config
from callsd.app.rtcd_config import load_rtcd_config
from k8s_support import (
    OPERATOR_SECRETS,
    OVERLAYS,
    ROOT,
    PodView,
    deployed,
    find,
    kustomize_version,
    one,
    operator_overlay,
    render,
    render_directory,
    secret_values,
    workloads,
)

SCHEMA_VERSIONS = ("1.30.0", "1.37.0")
RTCD_GRACE_SECONDS = 18000  # the reference's 5 hours

_SECRET_REF = {"type": "object", "additionalProperties": False, "required": ["name", "key"],
               "properties": {"name": {"type": "string"}, "key": {"type": "string"}}}
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object", "additionalProperties": False, "required": ["selector", "endpoints"],
            "properties": {
                "selector": {"type": "object", "additionalProperties": False,
                             "properties": {"matchLabels": {"type": "object",
                                                            "additionalProperties": {"type": "string"}}}},
                "endpoints": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "additionalProperties": False,
                    "properties": {
                        "port": {"type": "string"},
                        "path": {"type": "string"},
                        "interval": {"type": "string", "pattern": r"^([0-9]+(ms|s|m|h))+$"},
                        "basicAuth": {"type": "object", "additionalProperties": False,
                                      "properties": {"username": _SECRET_REF, "password": _SECRET_REF}},
                    }}},
            }},
    },
}


def _validate(obj: dict[str, Any], version: str) -> None:
    if obj["kind"] == "ServiceMonitor":
        jsonschema.validate(obj, SERVICE_MONITOR_SCHEMA)
    else:
        kubernetes_validate.validate(obj, version, strict=True)


def _pod_views(objects: list[dict[str, Any]]) -> list[PodView]:
    return [PodView.of(objects, w["kind"], w["metadata"]["name"]) for w in workloads(objects)]


def _serve(objects: list[dict[str, Any]]) -> PodView:
    return PodView.of(objects, "StatefulSet", "callsd-serve")


def _rtcd(objects: list[dict[str, Any]]) -> PodView:
    return PodView.of(objects, "DaemonSet", "callsd-rtcd")


def _serve_config(serve: PodView, directory: Path) -> Config:
    """serve's configuration as the pod would load it: its mounted file and its environment."""
    path = directory / "serve.toml"
    path.write_text(serve.config_file("serve")[1])
    return load_config(path, serve.env("serve"))


def test_the_renderer_is_kustomize_v4_or_newer() -> None:
    version = kustomize_version()
    assert re.match(r"^v([4-9]|[1-9][0-9])\.", version), (
        f"kubectl's kustomize is {version!r}: deploy/k8s uses components and labels (kustomize v4+); Debian's "
        "kubernetes-client 1.20 is too old")


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_the_pinned_schemas(overlay: str, version: str) -> None:
    objects = render(overlay)
    assert {o["kind"] for o in objects} >= {"Namespace", "StatefulSet", "Service", "ConfigMap", "Secret",
                                           "ServiceMonitor"}
    for obj in objects:
        _validate(obj, version)


def test_the_validation_is_not_vacuous() -> None:
    """A misspelled field, a wrong type and a misspelled ServiceMonitor key are each refused."""
    serve = one(render("integrated"), "StatefulSet", "callsd-serve")
    typo = copy.deepcopy(serve)
    typo["spec"]["template"]["spec"]["terminationGracePeriod"] = 30
    wrong_type = copy.deepcopy(serve)
    wrong_type["spec"]["replicas"] = "one"
    for bad in (typo, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            _validate(bad, SCHEMA_VERSIONS[-1])
    monitor = copy.deepcopy(one(render("rtcd"), "ServiceMonitor", "callsd-rtcd"))
    monitor["spec"]["endpoints"][0]["prot"] = "api"
    with pytest.raises(jsonschema.ValidationError):
        _validate(monitor, SCHEMA_VERSIONS[-1])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_probes_and_resources(overlay: str) -> None:
    for pod in _pod_views(render(overlay)):
        for container in pod.spec["containers"]:
            where = f"{overlay}: {pod.workload['metadata']['name']}/{container['name']}"
            assert "readinessProbe" in container and "livenessProbe" in container, where
            # Readiness is /healthz (503 while draining: out of the Service); liveness must not fail during a
            # drain, so it never asks /healthz.
            assert container["readinessProbe"]["httpGet"]["path"] == "/healthz", where
            assert container["livenessProbe"]["httpGet"]["path"] == "/version", where
        for container in pod.spec["containers"] + pod.spec.get("initContainers", []):
            resources = container.get("resources", {})
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(part, {})), f"{overlay}: {container['name']} {part}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_service_is_exposed_outside_the_cluster_and_8045_stays_internal(overlay: str) -> None:
    objects = render(overlay)
    for service in find(objects, "Service"):
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", service["metadata"]["name"]
        if any(p["port"] == 8045 for p in service["spec"]["ports"]):
            assert service["spec"].get("clusterIP") == "None", "the rtcd API is only behind headless Services"
    for pod in _pod_views(objects):
        for container in pod.spec["containers"]:
            for port in container.get("ports", []):
                if port["containerPort"] == 8045:
                    assert "hostPort" not in port, "the rtcd API is never a declared host port"


def test_rtcd_daemonset_has_the_reference_shape() -> None:
    objects = render("rtcd")
    rtcd = _rtcd(objects)
    spec = rtcd.spec
    assert spec["terminationGracePeriodSeconds"] == RTCD_GRACE_SECONDS
    strategy = rtcd.workload["spec"]["updateStrategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    # Dedicated nodes: the node selector's label is also the taint the pods tolerate.
    [(label, value)] = spec["nodeSelector"].items()
    assert {"key": label, "operator": "Equal", "value": value, "effect": "NoSchedule"} in spec["tolerations"]
    ports = {(p["containerPort"], p["protocol"]): p for p in rtcd.container("rtcd")["ports"]}
    assert ports[(8443, "UDP")]["hostPort"] == 8443 and ports[(8443, "TCP")]["hostPort"] == 8443
    assert ports[(8045, "TCP")]["name"] == "api"
    # With host networking the API binds the pod's address (the node's internal one), never a wildcard.
    env = rtcd.container("rtcd")["env"]
    assert {"name": "CALLSD_API_LISTEN", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}} in env
    path, text = rtcd.config_file("rtcd")
    assert "listen" not in tomllib.loads(text).get("api", {}), "api.listen comes from the pod's address only"


@pytest.mark.parametrize("overlay", ("integrated", "cluster"))
def test_serve_with_its_own_media_plane_takes_udp_8443_on_the_node(overlay: str, tmp_path: Path) -> None:
    serve = _serve(deployed(overlay))
    ports = {(p["containerPort"], p["protocol"]): p for p in serve.container("serve")["ports"]}
    assert ports[(8443, "UDP")]["hostPort"] == 8443 and ports[(8443, "TCP")]["hostPort"] == 8443
    config = _serve_config(serve, tmp_path)
    assert (config.rtc.ice_port_udp, config.rtc.ice_port_tcp, config.rtc.ice_address_udp) == (8443, 8443, "0.0.0.0")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_rendered_configurations_load_with_the_pods_environment(overlay: str, tmp_path: Path) -> None:
    """What callsd itself would say at start: every config file + env of every pod passes its own checks."""
    objects = deployed(overlay)
    serve = _serve(objects)
    config = _serve_config(serve, tmp_path)
    assert config.auth.mode == "token" and config.http.listen == "0.0.0.0"
    assert config.http.max_connections_per_address == 0, "behind a proxy every client has the proxy's address"
    # The grace period covers serve's drain: SIGTERM is never turned into SIGKILL mid-drain.
    assert serve.spec["terminationGracePeriodSeconds"] > config.shutdown.drain_timeout
    if overlay == "cluster":
        assert config.cluster.enabled and config.cluster.node_id == "callsd-serve-0"
        assert config.cluster.advertise == "10.1.2.3:8080"
    if overlay == "rtcd":
        rtcd = _rtcd(objects)
        path = tmp_path / "rtcd.toml"
        path.write_text(rtcd.config_file("rtcd")[1])
        rtcd_config = load_rtcd_config(path, rtcd.env("rtcd"))
        assert (rtcd_config.api.port, rtcd_config.rtc.ice_port_udp) == (8045, 8443)
        assert rtcd_config.api.listen == "10.1.2.3"
        # The rtcd exits on its own after its drain, before the kubelet's SIGKILL.
        assert rtcd_config.api.drain_timeout < rtcd.spec["terminationGracePeriodSeconds"]


def _volume_at(pod: PodView, container: str, path: str) -> str:
    """The volume mounted (writable) at ``path`` in the container; fails when the path is on no mount."""
    for mount in pod.container(container).get("volumeMounts", []):
        if mount["mountPath"].rstrip("/") == path.rstrip("/"):
            assert not mount.get("readOnly"), f"{container}: {path} is read-only"
            return str(mount["name"])
    raise AssertionError(f"{container}: {path} is on no volume (the root filesystem is read-only)")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_data_directory_is_a_writable_volume(overlay: str, tmp_path: Path) -> None:
    """The pods run with a read-only root filesystem: the data directory must be a volume, and the rtcd's init
    container must write the credential store where the rtcd reads it. The environment names it explicitly, so
    the image's own CALLSD_* defaults cannot move it."""
    objects = deployed(overlay)
    serve = _serve(objects)
    assert serve.env("serve")["CALLSD_STORE_DATA_DIR"] == _serve_config(serve, tmp_path).store.data_dir
    _volume_at(serve, "serve", _serve_config(serve, tmp_path).store.data_dir)
    if overlay == "rtcd":
        rtcd = _rtcd(objects)
        path = tmp_path / "rtcd.toml"
        path.write_text(rtcd.config_file("rtcd")[1])
        data_dir = load_rtcd_config(path, rtcd.env("rtcd")).store.data_dir
        assert rtcd.env("rtcd")["CALLSD_STORE_DATA_DIR"] == data_dir
        init_dir = rtcd.env("register-serve-client")["CALLSD_STORE_DATA_DIR"]
        assert _volume_at(rtcd, "rtcd", data_dir) == _volume_at(rtcd, "register-serve-client", init_dir)


def test_serve_finds_the_rtcd_hosts_by_the_headless_services_name(tmp_path: Path) -> None:
    objects = deployed("rtcd")
    serve = _serve(objects)
    config = _serve_config(serve, tmp_path)
    url = urlsplit(config.rtc.rtcd_url)
    headless = one(objects, "Service", "callsd-rtcd")
    namespace = headless["metadata"]["namespace"]
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"].get("publishNotReadyAddresses") is False
    assert url.hostname in {"callsd-rtcd", f"callsd-rtcd.{namespace}.svc", f"callsd-rtcd.{namespace}.svc.cluster.local"}
    assert url.port == headless["spec"]["ports"][0]["port"] == 8045
    selector = headless["spec"]["selector"]
    assert selector.items() <= _rtcd(objects).workload["spec"]["template"]["metadata"]["labels"].items()
    # serve logs in as the client the rtcd pods register, from the same Secret keys.
    register_env = _rtcd(objects).env("register-serve-client")
    serve_env = serve.env("serve")
    assert serve_env["CALLSD_RTC_RTCD_CLIENT_ID"] == register_env["RTCD_CLIENT_ID"] == config.rtc.rtcd_client_id
    assert serve_env["CALLSD_RTC_RTCD_AUTH_KEY"] == register_env["RTCD_AUTH_KEY"] == config.rtc.rtcd_auth_key


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_committed_placeholder_secrets_are_refused(overlay: str, tmp_path: Path) -> None:
    """Applied as committed, nothing starts: callsd refuses the placeholders (too short), naming what to set."""
    objects = render(overlay)
    with pytest.raises(ConfigError) as refused:
        _serve_config(_serve(objects), tmp_path)
    wanted = {"integrated": "auth.secret", "rtcd": "rtc.rtcd_auth_key", "cluster": "cluster.secret"}[overlay]
    assert wanted in str(refused.value) and "auth.secret" in str(refused.value)


# Each secret serve needs in a mode -> the key of the Secret callsd-secrets it must come from.
_SECRETS_BY_OVERLAY = {
    "integrated": {"auth.secret": "AUTH_SECRET", "rtc.turn_static_auth_secret": "TURN_STATIC_AUTH_SECRET"},
    "rtcd": {"auth.secret": "AUTH_SECRET", "rtc.turn_static_auth_secret": "TURN_STATIC_AUTH_SECRET",
             "rtc.rtcd_auth_key": "RTCD_AUTH_KEY"},
    "cluster": {"auth.secret": "AUTH_SECRET", "rtc.turn_static_auth_secret": "TURN_STATIC_AUTH_SECRET",
                "cluster.secret": "CLUSTER_SECRET"},
}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_turn_secret_and_the_rtcd_key_reach_serve_from_the_secret(overlay: str, tmp_path: Path) -> None:
    """What an operator puts in the Secret is what serve's loaded configuration holds (the TURN REST secret, the
    rtcd auth key, ...), through an environment variable that names the Secret, never through a ConfigMap."""
    objects = deployed(overlay)
    serve = _serve(objects)
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in serve.container("serve")["env"]
            if "secretKeyRef" in e.get("valueFrom", {})}
    loaded = _serve_config(serve, tmp_path).as_dict(mask_secrets=False)
    for key, secret_key in _SECRETS_BY_OVERLAY[overlay].items():
        section, name = key.split(".")
        assert refs[f"CALLSD_{section.upper()}_{name.upper()}"] == {"name": "callsd-secrets", "key": secret_key}, key
        assert loaded[section][name] == OPERATOR_SECRETS[secret_key], key


_SECRETISH_KEY = re.compile(r"secret|passw|token|credential|auth_key|private|api_key", re.IGNORECASE)
_URL_WITH_PASSWORD = re.compile(r"[a-z]+://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE)


def _keys(data: Any, prefix: str = "") -> list[str]:
    if isinstance(data, dict):
        return [k for key, value in data.items() for k in [f"{prefix}{key}", *_keys(value, f"{prefix}{key}.")]]
    if isinstance(data, list):
        return [k for value in data for k in _keys(value, prefix)]
    return []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_configmap_holds_a_secret(overlay: str) -> None:
    objects = render(overlay)
    secrets = [v for s in find(objects, "Secret") for v in secret_values(objects, s["metadata"]["name"]).values()
               if len(v) >= 8]
    assert secrets, "the Secret's values are known to the check"
    for config_map in find(objects, "ConfigMap"):
        for name, text in config_map["data"].items():
            where = f"ConfigMap {config_map['metadata']['name']}/{name}"
            parsed = tomllib.loads(text) if name.endswith(".toml") else json.loads(text)
            keys = _keys(parsed)
            assert not SECRET_KEYS & set(keys), where
            assert not [k for k in keys if _SECRETISH_KEY.search(k.rsplit(".", 1)[-1])], where
            assert not _URL_WITH_PASSWORD.search(text), where
            assert not [v for v in secrets if v in text], where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_image_is_the_one_make_image_builds(overlay: str) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for pod in _pod_views(render(overlay)):
        for container in pod.spec["containers"] + pod.spec.get("initContainers", []):
            assert container["image"] == f"localhost/callsd:{version}", container["name"]
            assert container["imagePullPolicy"] == "IfNotPresent"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_dashboards_configmap_is_deploy_grafana(overlay: str) -> None:
    dashboards = one(render(overlay), "ConfigMap", "callsd-grafana-dashboards")
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    files = {p.name: p.read_text() for p in (ROOT / "deploy" / "grafana").glob("*.json")}
    assert files and dashboards["data"] == files


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prometheus_finds_every_serve_pod(overlay: str, tmp_path: Path) -> None:
    objects = deployed(overlay)
    serve = _serve(objects)
    annotations = serve.workload["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    port = int(annotations["prometheus.io/port"])
    config = _serve_config(serve, tmp_path)
    metrics_port = config.metrics.address[1] if config.metrics.address else config.http.port
    assert port == metrics_port
    [monitor] = [m for m in find(objects, "ServiceMonitor") if m["metadata"]["name"] == "callsd-serve"]
    [service] = [s for s in find(objects, "Service")
                 if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
    [endpoint] = monitor["spec"]["endpoints"]
    [service_port] = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
    container_ports = {p["name"]: p["containerPort"] for p in serve.container("serve")["ports"]}
    assert container_ports[service_port["targetPort"]] == metrics_port
    assert service["spec"]["publishNotReadyAddresses"] is True, "a draining pod is still scraped"


def test_the_rtcd_monitor_scrapes_with_the_serve_clients_credentials() -> None:
    objects = render("rtcd")
    monitor = one(objects, "ServiceMonitor", "callsd-rtcd")
    [endpoint] = monitor["spec"]["endpoints"]
    auth = endpoint["basicAuth"]
    serve_env = _serve(objects).container("serve")["env"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in serve_env if "valueFrom" in e}
    assert auth["username"] == refs["CALLSD_RTC_RTCD_CLIENT_ID"]
    assert auth["password"] == refs["CALLSD_RTC_RTCD_AUTH_KEY"]
    [service] = [s for s in find(objects, "Service")
                 if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
    assert service["spec"]["publishNotReadyAddresses"] is True, "a draining rtcd (hours) is still scraped"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_ingress_component_puts_tls_in_front_of_serves_http_port(overlay: str, tmp_path: Path) -> None:
    """As docs/deployment.md tells an operator: an overlay of their own with components/ingress (then common)."""
    objects = render_directory(operator_overlay(tmp_path, overlay, ["ingress", "common"]))
    for obj in objects:
        _validate(obj, SCHEMA_VERSIONS[-1])
    ingress = one(objects, "Ingress", "callsd")
    service = one(objects, "Service", "callsd-serve")
    assert ingress["metadata"]["namespace"] == service["metadata"]["namespace"]
    [rule] = ingress["spec"]["rules"]
    [path] = rule["http"]["paths"]
    backend = path["backend"]["service"]
    assert backend["name"] == "callsd-serve" and backend["port"]["name"] == "http"
    [service_port] = [p for p in service["spec"]["ports"] if p["name"] == "http"]
    assert service_port["port"] == 8080
    assert rule["host"] in ingress["spec"]["tls"][0]["hosts"]
    allowed = tomllib.loads(_serve(objects).config_file("serve")[1])["http"]["allowed_hosts"]
    assert not allowed or rule["host"] in allowed, "the Ingress's name must be one serve answers to"
