"""deploy/k8s as a pod would run it: the rendered configuration, environment, init script and probes, against a real
``callsd serve`` and a real ``callsd rtcd`` on loopback (no cluster: the kubelet's part is played by the test).

What the manifests alone cannot show and these do: the kubelet's probe requests (Host = the pod's IP) get 200 from
the real server (http.allowed_hosts answers 421 to any other host on every path but /healthz: the liveness probe
names a loopback host for that reason); a cluster node serves Prometheus on its HTTP port; the rtcd pod's init
container registers serve's client from the Secret, so that serve logs in (and links the host it finds by the
headless Service's name) and the ServiceMonitor scrapes; a rotated key replaces the old one.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from k8s_support import PodView, deployed
from process_support import terminate
from serve_support import free_port

POD_IP = "10.1.2.3"  # what the kubelet puts in Host: the pod's address


def request(port: int, method: str, path: str, *, host: str, headers: dict[str, str] | None = None,
            body: bytes = b"") -> tuple[int, bytes]:
    """One HTTP request to 127.0.0.1:port carrying ``host`` as its Host header (as a probe to the pod IP would)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True)
        conn.putheader("Host", host)
        for name, value in (headers or {}).items():
            if name.lower() != "host":
                conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def probe(port: int, spec: dict[str, Any]) -> int:
    """The kubelet's httpGet probe: GET path with Host = pod IP:port, unless the probe's httpHeaders name a Host."""
    headers = {h["name"]: h["value"] for h in spec["httpGet"].get("httpHeaders", [])}
    host = next((v for k, v in headers.items() if k.lower() == "host"), f"{POD_IP}:{port}")
    return request(port, "GET", spec["httpGet"]["path"], host=host, headers=headers)[0]


def wait_until_listening(proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if request(port, "GET", "/healthz", host="127.0.0.1")[0] == 200:
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"not healthy (exit {proc.poll()}):\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen[bytes]) -> int:
    return terminate(proc, 20)


def loopback(port: int, section: str = "HTTP") -> dict[str, str]:
    """What differs on loopback from the pod: the listener's address and port, the media ports (ephemeral)."""
    return {f"CALLSD_{section}_LISTEN": "127.0.0.1", f"CALLSD_{section}_PORT": str(port),
            "CALLSD_RTC_ICE_ADDRESS_UDP": "127.0.0.1", "CALLSD_RTC_ICE_PORT_UDP": "0", "CALLSD_RTC_ICE_PORT_TCP": "0"}


def start(args: list[str], env: dict[str, str], tmp_path: Path, log_name: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / log_name
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "callsd.app.cli", *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT, cwd=tmp_path)
    return proc, log


def test_serve_answers_the_kubelets_probes_and_prometheus(tmp_path: Path) -> None:
    serve = PodView.of(deployed("integrated"), "StatefulSet", "callsd-serve")
    container = serve.container("serve")
    config_path, text = serve.config_file("serve")
    (tmp_path / "serve.toml").write_text(text)
    http_port, metrics_port = free_port(), free_port()
    # The pod's environment, then what only differs on loopback: addresses, ports, the data volume; the media
    # override names a host that does not resolve here.
    env = {**os.environ, **serve.env("serve"), **loopback(http_port), "CALLSD_RTC_ICE_HOST_OVERRIDE": "",
           "CALLSD_STORE_DATA_DIR": str(tmp_path / "data"), "CALLSD_METRICS_LISTEN": f"127.0.0.1:{metrics_port}"}
    args = [a if a != config_path else str(tmp_path / "serve.toml") for a in container["args"]]
    proc, log = start(args, env, tmp_path, "serve.log")
    try:
        wait_until_listening(proc, http_port, log)
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert probe(http_port, container[kind]) == 200, kind
        # The reason the liveness probe names its host: the pod IP is refused on /version.
        assert request(http_port, "GET", "/version", host=f"{POD_IP}:{http_port}")[0] == 421
        status, body = request(metrics_port, "GET", "/metrics", host=f"{POD_IP}:{metrics_port}")
        assert status == 200 and b"callsd_" in body
        assert request(http_port, "GET", "/metrics", host="localhost")[0] == 404, "metrics stay off the http port"
    finally:
        assert stop(proc) == 0, log.read_text()[-3000:]


def test_a_cluster_node_answers_the_kubelets_probes_and_prometheus_on_its_http_port(tmp_path: Path,
                                                                                  pg_url: str) -> None:
    """A cluster node keeps /metrics on its HTTP port and has no allowed_hosts: Prometheus (pod IP as Host) and
    the probes all get 200 from a real node on a throwaway PostgreSQL."""
    objects = deployed("cluster")
    serve = PodView.of(objects, "StatefulSet", "callsd-serve")
    container = serve.container("serve")
    config_path, text = serve.config_file("serve")
    (tmp_path / "serve.toml").write_text(text)
    annotations = serve.workload["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "8080"  # the HTTP port, here on a free one
    port = free_port()
    env = {**os.environ, **serve.env("serve"), **loopback(port), "CALLSD_RTC_ICE_SERVERS": "",
           "CALLSD_STORE_URL": pg_url, "CALLSD_STORE_DATA_DIR": str(tmp_path / "data"),
           "CALLSD_CLUSTER_ADVERTISE": f"127.0.0.1:{port}"}
    args = [a if a != config_path else str(tmp_path / "serve.toml") for a in container["args"]]
    proc, log = start(args, env, tmp_path, "node.log")
    try:
        wait_until_listening(proc, port, log)
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert probe(port, container[kind]) == 200, kind
        status, body = request(port, "GET", annotations["prometheus.io/path"], host=f"{POD_IP}:{port}")
        assert status == 200 and b"callsd_cluster_" in body
    finally:
        assert stop(proc) == 0, log.read_text()[-3000:]


def register(pod: PodView, data_dir: Path, client_id: str, key: str) -> str:
    """Run the rtcd pod's init container script as the kubelet would, with the Secret's values."""
    init = pod.container("register-serve-client")
    env = {**pod.env("register-serve-client"), "RTCD_CLIENT_ID": client_id, "RTCD_AUTH_KEY": key,
           "CALLSD_STORE_DATA_DIR": str(data_dir),
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    done = subprocess.run(init["command"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def basic(client_id: str, key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{key}".encode()).decode()}


def test_rtcd_pod_registers_serves_client_answers_probes_and_drains(tmp_path: Path) -> None:
    objects = deployed("rtcd")
    rtcd = PodView.of(objects, "DaemonSet", "callsd-rtcd")
    secret_env = rtcd.env("register-serve-client")
    client, key = secret_env["RTCD_CLIENT_ID"], secret_env["RTCD_AUTH_KEY"]
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    assert f"client {client} registered" in register(rtcd, data_dir, client, key)

    container = rtcd.container("rtcd")
    config_path, text = rtcd.config_file("rtcd")
    (tmp_path / "rtcd.toml").write_text(text)
    port = free_port()
    env = {**os.environ, **rtcd.env("rtcd"), **loopback(port, section="API"), "CALLSD_STORE_DATA_DIR": str(data_dir)}
    args = [a if a != config_path else str(tmp_path / "rtcd.toml") for a in container["args"]]
    proc, log = start(args, env, tmp_path, "rtcd.log")
    try:
        wait_until_listening(proc, port, log)
        for kind in ("readinessProbe", "livenessProbe"):
            assert probe(port, container[kind]) == 200, kind
        # serve's login (rtc.rtcd_client_id / rtcd_auth_key from the same Secret keys)
        status, body = request(port, "POST", "/login", host=f"{POD_IP}:{port}", headers=basic(client, key))
        assert status == 200 and json.loads(body)["bearer_token"]
        # the ServiceMonitor's basicAuth
        status, body = request(port, "GET", "/metrics", host=f"{POD_IP}:{port}", headers=basic(client, key))
        assert status == 200 and b"callsd_rtcd_" in body
        # SIGTERM (the kubelet's, at the start of the 5-hour grace period) drains; with no call it ends at once.
        assert stop(proc) == 0, log.read_text()[-3000:]
    finally:
        stop(proc)


def test_the_init_script_replaces_a_rotated_key(tmp_path: Path) -> None:
    from callsd.app.rtcd_auth import ClientStore

    rtcd = PodView.of(deployed("rtcd"), "DaemonSet", "callsd-rtcd")
    client = rtcd.env("register-serve-client")["RTCD_CLIENT_ID"]
    old, new = "o" * 40, "n" * 40
    register(rtcd, tmp_path, client, old)
    register(rtcd, tmp_path, client, old)  # a pod restart with the same key: nothing changes
    register(rtcd, tmp_path, client, new)
    store = ClientStore(tmp_path)
    try:
        assert store.verify(client, new) and not store.verify(client, old)
    finally:
        store.close()


def test_serve_of_the_rtcd_overlay_links_the_rtcd_pod_by_the_services_name(tmp_path: Path) -> None:
    """End to end with the rendered rtcd overlay: the init script registers serve's client from the Secret, the rtcd
    starts from its ConfigMap, and serve, from its own ConfigMap and Secret values, resolves the headless Service's
    name (here a hosts file in serve's private mount namespace, as cluster DNS would answer) and links the host."""
    objects = deployed("rtcd")
    rtcd = PodView.of(objects, "DaemonSet", "callsd-rtcd")
    serve = PodView.of(objects, "StatefulSet", "callsd-serve")
    secret_env = rtcd.env("register-serve-client")
    data_dir = tmp_path / "rtcd-data"
    data_dir.mkdir()
    register(rtcd, data_dir, secret_env["RTCD_CLIENT_ID"], secret_env["RTCD_AUTH_KEY"])
    rtcd_path, rtcd_text = rtcd.config_file("rtcd")
    (tmp_path / "rtcd.toml").write_text(rtcd_text)
    host_address = "127.0.0.2"  # the rtcd pod's address (a node's, with host networking)
    api_port = free_port()
    rtcd_env = {**os.environ, **rtcd.env("rtcd"), **loopback(api_port, section="API"),
                "CALLSD_API_LISTEN": host_address, "CALLSD_STORE_DATA_DIR": str(data_dir)}
    rtcd_proc, rtcd_log = start([a if a != rtcd_path else str(tmp_path / "rtcd.toml") for a in
                                 rtcd.container("rtcd")["args"]], rtcd_env, tmp_path, "rtcd.log")

    serve_path, serve_text = serve.config_file("serve")
    (tmp_path / "serve.toml").write_text(serve_text)
    url = urlsplit(tomllib.loads(serve_text)["rtc"]["rtcd_url"])
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n{host_address} {url.hostname}\n")
    http_port, metrics_port = free_port(), free_port()
    # The rendered URL's name, on the test's free API port instead of 8045 (a fixed port is not ours to take).
    serve_env = {**os.environ, **serve.env("serve"), **loopback(http_port),
                 "CALLSD_RTC_RTCD_URL": f"{url.scheme}://{url.hostname}:{api_port}",
                 "CALLSD_RTC_RTCD_RESOLVE_INTERVAL": "0.5", "CALLSD_STORE_DATA_DIR": str(tmp_path / "serve-data"),
                 "CALLSD_METRICS_LISTEN": f"127.0.0.1:{metrics_port}"}
    args = [a if a != serve_path else str(tmp_path / "serve.toml") for a in serve.container("serve")["args"]]
    serve_log = tmp_path / "serve.log"
    unshare = shutil.which("unshare") or "/usr/bin/unshare"
    try:
        with open(serve_log, "w") as out:
            serve_proc = subprocess.Popen(
                [unshare, "--mount", "--propagation", "private", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"',
                 str(hosts), sys.executable, "-m", "callsd.app.cli", *args],
                env=serve_env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
        try:
            linked = f'callsd_media_host_up{{host="rtcd {host_address}:{api_port}"}} 1.0'
            deadline = time.monotonic() + 60
            text = ""
            while time.monotonic() < deadline and linked not in text:
                assert serve_proc.poll() is None, serve_log.read_text()[-3000:]
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2) as answer:
                        text = answer.read().decode()
                except OSError:
                    pass
                time.sleep(0.2)
            assert linked in text, serve_log.read_text()[-3000:] + rtcd_log.read_text()[-2000:]
        finally:
            stop(serve_proc)
    finally:
        assert stop(rtcd_proc) == 0, rtcd_log.read_text()[-3000:]

