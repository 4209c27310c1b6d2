"""deploy/container/Containerfile with Docker, as docs/deployment-image.md tells an operator to use it: `docker build
-f deploy/container/Containerfile build/image` after `make image`, then `docker run` of that image.

The issue asks for a Containerfile that works with Docker and Podman; test_image.py covers buildah/podman. Here a
private Docker daemon (Debian's docker.io, scripts/system-deps.sh) runs for this module only: its own socket, data
and exec roots in a temporary directory, its own mount namespace (its overlay and netns mounts vanish with it), no
bridge, no iptables rules and no ip_forward change (containers use the host's network), so nothing of it outlives the
test or touches the machine's networking. The legacy builder builds the image (Debian's daemon has no buildx client
plugin); it is the same Containerfile instruction set either way.

What a user observes: the image Docker builds has the configuration of the one buildah builds (entrypoint, command,
user, ports, environment, volume, stop signal); it runs as uid 10001 with a read-only root filesystem; `serve`
answers /healthz; `docker stop` drains it and it exits 0.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from image_support import OUT, BuiltImage, current_image
from net_support import free_port
from process_support import terminate

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("image")]  # build/image is shared with test_image.py

REPO = Path(__file__).resolve().parents[2]
CONTAINERFILE = REPO / "deploy" / "container" / "Containerfile"
TAG = "callsd-docker-test:latest"
START_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Docker:
    """The docker client pointed at the module's private daemon."""

    env: dict[str, str]

    def __call__(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", *args], env=self.env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Docker]:
    for tool in ("dockerd", "docker", "unshare"):
        assert shutil.which(tool), f"{tool} missing: bash scripts/system-deps.sh installs docker.io"
    root = tmp_path_factory.mktemp("dockerd")
    socket = root / "docker.sock"
    log_path = root / "dockerd.log"
    namespace = f"callsd-test-{os.getpid()}"
    etc = root / "etc-docker"  # dockerd's /etc/docker in its namespace: no host daemon.json read, no key.json left
    etc.mkdir()
    # unshare without --fork execs sh, which execs dockerd: the process held here is the daemon, SIGTERM stops it
    # and its containerd
    argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
            'mkdir -p /etc/docker && mount --bind "$0" /etc/docker && exec dockerd "$@"', str(etc),
            "--host", f"unix://{socket}", "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
            "--pidfile", str(root / "dockerd.pid"), "--bridge", "none", "--iptables=false", "--ip6tables=false",
            "--ip-masq=false", "--ip-forward=false", "--storage-driver", "overlay2",
            "--exec-opt", "native.cgroupdriver=cgroupfs", "--containerd-namespace", namespace,
            "--containerd-plugins-namespace", f"{namespace}-plugins"]
    client = Docker({**os.environ, "DOCKER_HOST": f"unix://{socket}", "DOCKER_BUILDKIT": "0",
                     "DOCKER_CONFIG": str(root / "client")})
    with open(log_path, "wb") as log:
        daemon = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while client("version", "--format", "{{.Server.Version}}", timeout=30).returncode != 0:
                if daemon.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"dockerd did not start ({daemon.poll()}):\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
            yield client
        finally:
            terminate(daemon, timeout=60)


@pytest.fixture(scope="module")
def built(docker: Docker) -> dict[str, object]:
    """The image as docs/deployment-image.md builds it with Docker; its configuration as `docker inspect` shows it."""
    current_image()  # build/image/rootfs.tar of these sources (`make image` when stale)
    done = docker("build", "--quiet", "-f", str(CONTAINERFILE), "-t", TAG, str(OUT), timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    inspect = docker("image", "inspect", "--format", "{{json .Config}}", TAG)
    assert inspect.returncode == 0, inspect.stderr
    config: dict[str, object] = json.loads(inspect.stdout)
    return config


def test_docker_builds_the_image_buildah_builds(built: dict[str, object]) -> None:
    buildah: BuiltImage = current_image()
    for key in ("Entrypoint", "Cmd", "User", "ExposedPorts", "Env", "Volumes", "WorkingDir", "StopSignal"):
        assert built[key] == buildah.config[key], key
    labels = built["Labels"]
    assert isinstance(labels, dict)
    ours = {k: v for k, v in buildah.config["Labels"].items() if k.startswith("org.opencontainers.image.")}
    assert labels == ours  # buildah adds its own io.buildah.version


def test_the_docker_image_runs_as_its_user_on_a_read_only_root(docker: Docker, built: dict[str, object]) -> None:
    version = docker("run", "--rm", "--read-only", "--network", "host", TAG, "--version")
    assert (version.returncode, version.stdout.strip()) == (0, "callsd 0.1.0"), version.stderr
    who = docker("run", "--rm", "--read-only", "--network", "host", "--entrypoint", "id", TAG, "-u")
    assert (who.returncode, who.stdout.strip()) == (0, "10001"), who.stderr


def _healthy(url: str, docker: Docker, name: str) -> None:
    deadline = time.monotonic() + 90.0
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            state = docker("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
            if state == "false":
                pytest.fail(f"serve exited in Docker:\n{docker('logs', name).stderr[-3000:]}")
            time.sleep(0.3)
    pytest.fail(f"{url} did not answer within 90 s:\n{docker('logs', name).stderr[-3000:]}")


def test_serve_in_docker_answers_healthz_and_drains_on_docker_stop(docker: Docker, built: dict[str, object]) -> None:
    port = free_port()
    name = f"callsd-serve-{port}"
    env = {"CALLSD_HTTP_LISTEN": "127.0.0.1", "CALLSD_HTTP_PORT": str(port), "CALLSD_RTC_ICE_ADDRESS_UDP": "127.0.0.1",
           "CALLSD_RTC_ICE_PORT_UDP": "0", "CALLSD_RTC_ICE_PORT_TCP": "0", "CALLSD_AUTH_MODE": "open"}
    flags = [flag for key, value in env.items() for flag in ("-e", f"{key}={value}")]
    started = docker("run", "-d", "--name", name, "--read-only", "--network", "host", *flags, TAG, "serve")
    assert started.returncode == 0, started.stderr
    try:
        _healthy(f"http://127.0.0.1:{port}/healthz", docker, name)
        stopped = docker("stop", "--time", "60", name, timeout=90)  # SIGTERM (the image's StopSignal): the drain
        assert stopped.returncode == 0, stopped.stderr
        code = docker("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        assert code == "0", f"serve exited {code} on docker stop:\n{docker('logs', name).stderr[-3000:]}"
    finally:
        docker("rm", "--force", name)
