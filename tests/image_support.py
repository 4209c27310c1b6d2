"""The container image of `make image` for tests: its build, its OCI configuration, and a runner that runs it.

    image = current_image()                 # builds with `make image` when absent or built from other sources
    runner = pick_runner(image, tmp_path)   # podman (runc) when this machine lets it run the image, else chroot
    runner.run(["--version"])               # the image's entrypoint + these arguments, its user, its env
    proc = runner.start(["serve"], env, log)

Why two runners: on these machines podman's defaults are refused: its ulimits (RLIMIT_NOFILE 1048576, RLIMIT_NPROC
4194304, also what `--ulimit host` asks) exceed what the sandbox lets a process raise to (EPERM: no
CAP_SYS_RESOURCE; NOFILE's hard limit is 20000, and podman's conmon runs with NPROC 32768), and crun refuses the
hybrid cgroup v1/v2 layout. `podman run --runtime runc --cgroup-manager cgroupfs` with explicit ulimits at or below
the current hard limits does run it (found in issue 16). Where even that fails, the image's root filesystem (the
same rootfs.tar the image's one layer holds) is run with unshare + chroot as the image's user, with the image's
entrypoint, env and working directory read from its OCI configuration: the same process, without a runtime.
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import shlex
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import pytest

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "build" / "image"
ARCHIVE = OUT / "callsd-image.oci.tar"
BUILD_TIMEOUT = 1200.0  # a cold build (debootstrap) takes ~4 min on a loaded 2-CPU machine


@dataclass(frozen=True, slots=True)
class BuiltImage:
    """What `make image` left in build/image/: the facts of image.env and the OCI configuration of the archive."""

    facts: dict[str, str]
    config: dict[str, Any]  # the OCI image configuration's "config" (Entrypoint, Cmd, User, Env, ...)
    config_digest: str  # sha256:... = podman's image id
    layer_bytes: int  # the compressed layer, as a registry stores it

    @property
    def env(self) -> dict[str, str]:
        return dict(item.split("=", 1) for item in self.config.get("Env", []))


def _facts() -> dict[str, str]:
    path = OUT / "image.env"
    if not path.exists():
        return {}
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def _source_digest() -> str:
    done = subprocess.run(["bash", "scripts/build-image.sh", "--source-digest"], cwd=REPO, capture_output=True,
                          text=True, check=True)
    return done.stdout.strip()


def read_archive(archive: Path) -> tuple[dict[str, Any], str, int]:
    """The OCI archive's image configuration, its digest and its layer's compressed size (index -> manifest)."""
    with tarfile.open(archive) as tar:
        def read(name: str) -> Any:
            member = tar.extractfile(name)
            assert member is not None, name
            return json.loads(member.read())

        def blob(digest: str) -> Any:
            return read(f"blobs/sha256/{digest.removeprefix('sha256:')}")

        manifest = blob(read("index.json")["manifests"][0]["digest"])
        config = blob(manifest["config"]["digest"])
        layers = sum(int(layer["size"]) for layer in manifest["layers"])
        return config["config"], manifest["config"]["digest"], layers


def current_image() -> BuiltImage:
    """The image built from the sources in this tree: `make image` runs when there is none or it is stale.

    Under a lock on ``build/image.lock``: two pytest-xdist workers asking at once (the docker tests and
    tests/deploy/test_image.py were seen on different workers) must not both build into build/image, where one
    rewrote rootfs.tar while `docker build` was sending it. The second waits and then finds the image current."""
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT.parent / "image.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        facts = _facts()
        if not ARCHIVE.exists() or facts.get("IMAGE_SOURCE_DIGEST") != _source_digest():
            print("image_support: building the image with `make image` (a cold build runs debootstrap: minutes)")
            built = subprocess.run(["make", "image"], cwd=REPO, capture_output=True, text=True,
                                   timeout=BUILD_TIMEOUT)
            if built.returncode != 0:
                pytest.fail(f"make image failed ({built.returncode}):\n{built.stdout[-4000:]}\n"
                            f"{built.stderr[-4000:]}")
            facts = _facts()
    config, digest, layer_bytes = read_archive(ARCHIVE)
    return BuiltImage(facts=facts, config=config, config_digest=digest, layer_bytes=layer_bytes)


class ImageRunner(Protocol):
    """Runs the image's entrypoint with arguments, as the image's user, on the host's network (loopback)."""

    name: str
    why: str

    def run(self, args: list[str], env: dict[str, str] | None = None, *, entrypoint: str = "",
            timeout: float = 120.0) -> subprocess.CompletedProcess[str]: ...

    def start(self, args: list[str], env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]: ...


def _env_flags(env: dict[str, str]) -> list[str]:
    return [flag for key, value in env.items() for flag in ("-e", f"{key}={value}")]


class PodmanRunner:
    name = "podman"

    def __init__(self, image: BuiltImage, why: str) -> None:
        self.image_id = image.config_digest.removeprefix("sha256:")
        self.why = why
        nofile = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 1 << 20)
        # --read-only: the root filesystem as Kubernetes' readOnlyRootFilesystem leaves it; only the image's volume
        # (/var/lib/callsd) and podman's tmpfs /tmp and /run are writable
        self.flags = ["--rm", "--read-only", "--network", "host", "--runtime", "runc", "--cgroup-manager", "cgroupfs",
                      "--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", "nproc=4096:4096"]

    def _argv(self, args: list[str], env: dict[str, str] | None, entrypoint: str) -> list[str]:
        extra = ["--entrypoint", entrypoint] if entrypoint else []
        return ["podman", "run", *self.flags, *_env_flags(env or {}), *extra, self.image_id, *args]

    def run(self, args: list[str], env: dict[str, str] | None = None, *, entrypoint: str = "",
            timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self._argv(args, env, entrypoint), capture_output=True, text=True, timeout=timeout)

    def start(self, args: list[str], env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
        # podman run proxies SIGTERM to the container (--sig-proxy is on by default): terminate() drains the server
        return subprocess.Popen(self._argv(args, env, ""), stdout=log, stderr=subprocess.STDOUT)


class ChrootRunner:
    """The image's rootfs in a private mount namespace (/dev and /proc mounted in it), chrooted, as the image's user.

    Without --fork the shell execs chroot, which execs env, which execs the entrypoint: the process the test holds
    is callsd itself, so SIGTERM reaches it directly, and the mounts vanish with it.
    """

    name = "chroot"

    def __init__(self, image: BuiltImage, root: Path, why: str) -> None:
        self.root = root
        self.why = why
        self.user = image.config.get("User", "10001:10001")
        self.entrypoint: list[str] = list(image.config.get("Entrypoint", []))
        self.workdir = image.config.get("WorkingDir", "/")
        self.env = image.env

    def _argv(self, args: list[str], env: dict[str, str] | None, entrypoint: str) -> list[str]:
        command = [entrypoint] if entrypoint else self.entrypoint
        environment = [f"{k}={v}" for k, v in {**self.env, **(env or {})}.items()]
        inner = (f"mount --rbind /dev {shlex.quote(str(self.root / 'dev'))} && "
                 f"mount -t proc proc {shlex.quote(str(self.root / 'proc'))} && "
                 f"exec chroot --userspec={shlex.quote(self.user)} {shlex.quote(str(self.root))} "
                 f"/usr/bin/env -i -C {shlex.quote(self.workdir)} {shlex.join(environment)} "
                 f"{shlex.join([*command, *args])}")
        return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", inner]

    def run(self, args: list[str], env: dict[str, str] | None = None, *, entrypoint: str = "",
            timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self._argv(args, env, entrypoint), capture_output=True, text=True, timeout=timeout)

    def start(self, args: list[str], env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self._argv(args, env, ""), stdout=log, stderr=subprocess.STDOUT)


def _podman_refusal(image: BuiltImage, runner: PodmanRunner) -> str:
    """Empty when podman runs the image here, else why not (its first error line)."""
    if shutil.which("podman") is None:
        return "podman is not installed (scripts/system-deps.sh installs it)"
    if subprocess.run(["podman", "image", "exists", runner.image_id]).returncode != 0:
        loaded = subprocess.run(["podman", "load", "-q", "-i", str(ARCHIVE)], capture_output=True, text=True,
                                timeout=300)
        if loaded.returncode != 0:
            return f"podman load: {loaded.stderr.strip()[:300]}"
    probe = runner.run([], entrypoint="/bin/true", timeout=120)
    return "" if probe.returncode == 0 else f"podman run: {probe.stderr.strip()[:300]}"


def pick_runner(image: BuiltImage, scratch: Path) -> ImageRunner:
    """Podman when it can run the image on this machine; otherwise the chroot runner, saying why.

    CALLSD_IMAGE_RUNNER=chroot forces the fallback (to test it on a machine where podman works).
    """
    podman = PodmanRunner(image, "podman run with runc, cgroupfs and explicit ulimits runs the image here")
    forced = os.environ.get("CALLSD_IMAGE_RUNNER", "")
    refusal = "CALLSD_IMAGE_RUNNER=chroot" if forced == "chroot" else _podman_refusal(image, podman)
    if not refusal:
        return podman
    root = scratch / "rootfs"
    root.mkdir()
    subprocess.run(["tar", "-xf", str(OUT / "rootfs.tar"), "-C", str(root)], check=True)
    return ChrootRunner(image, root, f"podman cannot run the image here ({refusal}); unshare + chroot instead")
