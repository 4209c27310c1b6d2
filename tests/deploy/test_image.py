"""The container image (`make image`, deploy/container/Containerfile) as an operator would use it. Slow: it builds the
image when build/image/ holds none built from this tree's sources (a cold build runs debootstrap: 4-6 minutes on
a loaded 2-CPU machine; warm, 2-4), then runs it (25-50 s).

Runner: `podman run` (runc, cgroupfs, host network, explicit ulimits at or below this machine's hard limits) when
podman can run the image here; on these machines it can, where podman's defaults cannot (its default ulimits and
`--ulimit host` are refused with EPERM, crun refuses the hybrid cgroups; tests/image_support.py says why). Where even
that fails the image's rootfs runs under unshare + chroot as the image's user, with its env and entrypoint; the test
output names the runner used and why.

What a user observes: `callsd --version` from the entrypoint, the native fast path importable against the image's
libsrtp2, `serve` answering /healthz and carrying a short load test (2 calls x 2 users) with zero loss, `rtcd`
answering /healthz on its API port, the default (listening on 0.0.0.0 in open mode) refused with the reason; and the
contents: non-root numeric user, the wheel in a venv, no compiler, no pip, no headers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from image_support import OUT, BuiltImage, ImageRunner, current_image, pick_runner
from net_support import free_port

# One worker builds and runs the image (make test runs pytest-xdist): two builds at once would share build/image.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("image")]

UID = 10001


@pytest.fixture(scope="module")
def image() -> BuiltImage:
    return current_image()


@pytest.fixture(scope="module")
def runner(image: BuiltImage, tmp_path_factory: pytest.TempPathFactory) -> ImageRunner:
    chosen = pick_runner(image, tmp_path_factory.mktemp("image-runner"))
    print(f"\nimage runner: {chosen.name}: {chosen.why}")
    return chosen


@pytest.fixture(scope="module")
def rootfs_members() -> dict[str, tarfile.TarInfo]:
    with tarfile.open(OUT / "rootfs.tar") as tar:
        return {m.name.removeprefix("./"): m for m in tar.getmembers()}


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the server in the image exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            time.sleep(0.2)
    pytest.fail(f"{url}/healthz did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.terminate()  # SIGTERM: the drain, with nothing left to drain
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


@pytest.fixture
def served(runner: ImageRunner, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`serve` in the image on loopback ephemeral ports, open mode (loopback only), its data dir the image's own."""
    port = free_port()
    env = {"CALLSD_HTTP_LISTEN": "127.0.0.1", "CALLSD_HTTP_PORT": str(port), "CALLSD_RTC_ICE_ADDRESS_UDP": "127.0.0.1",
           "CALLSD_RTC_ICE_PORT_UDP": "0", "CALLSD_RTC_ICE_PORT_TCP": "0", "CALLSD_AUTH_MODE": "open",
           "CALLSD_HTTP_MAX_CONNECTIONS_PER_ADDRESS": "0"}
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = runner.start(["serve"], env, log)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(url, proc, log_path)
            yield url, log_path
        finally:
            code = _stop(proc)
    assert code == 0, f"serve in the image exited {code} on SIGTERM:\n{log_path.read_text()[-3000:]}"


def test_the_image_configuration_is_what_operators_expect(image: BuiltImage) -> None:
    config = image.config
    assert config["Entrypoint"] == ["callsd"] and config["Cmd"] == ["serve"]
    assert config["User"] == f"{UID}:{UID}"  # numeric: Kubernetes' runAsNonRoot can check it
    assert set(config["ExposedPorts"]) == {"8080/tcp", "8443/udp", "8443/tcp", "8045/tcp"}
    assert image.env["CALLSD_STORE_DATA_DIR"] == config["WorkingDir"] == "/var/lib/callsd"
    assert "/var/lib/callsd" in config["Volumes"]
    assert image.env["PATH"].startswith("/opt/callsd/bin:")
    assert config.get("StopSignal") == "SIGTERM"
    print(f"\nimage: {image.facts.get('IMAGE_UNCOMPRESSED_BYTES')} bytes uncompressed, {image.layer_bytes} compressed")


def test_the_rootfs_holds_the_wheel_a_non_root_user_and_no_build_tools(
        rootfs_members: dict[str, tarfile.TarInfo]) -> None:
    names = set(rootfs_members)
    site = "opt/callsd/lib/python3.11/site-packages"
    assert "opt/callsd/bin/callsd" in names and "usr/local/bin/callsd" in names
    assert any(n.startswith(f"{site}/callsd-") and n.endswith(".dist-info/RECORD") for n in names)
    assert any(n.startswith(f"{site}/callsd/adapters/media/native/_engine") and n.endswith(".so") for n in names)
    assert "usr/lib/x86_64-linux-gnu/libcrypto.so.3" in names  # the native path's SRTP (libssl3), not the -dev package
    assert not any("libsrtp2" in n for n in names)  # no longer linked (docs/adr/0026)
    tools = {f"usr/bin/{t}" for t in ("gcc", "cc", "c++", "cpp", "ld", "as", "make", "pip", "pip3")}
    tool_prefixes = ("usr/bin/gcc-", "usr/bin/x86_64-linux-gnu-", "opt/callsd/bin/pip", f"{site}/pip/",
                     f"{site}/setuptools/", f"{site}/wheel/", "usr/include/python3", "usr/include/openssl", "usr/lib/gcc/")
    forbidden = sorted(n for n in names if n in tools or n.startswith(tool_prefixes))
    assert forbidden == [], forbidden[:20]
    data_dir = rootfs_members["var/lib/callsd"]
    assert (data_dir.uid, data_dir.gid) == (UID, UID)


def test_callsd_runs_as_the_image_user_with_its_native_fast_path(runner: ImageRunner) -> None:
    version = runner.run(["--version"])
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == "callsd 0.1.0"
    who = runner.run(["-u"], entrypoint="id")
    assert who.returncode == 0 and who.stdout.strip() == str(UID), (who.stdout, who.stderr)
    # the C extension was built against the image's own Python and libcrypto, and loads there
    native = runner.run(["-c", "from callsd.adapters.media.paths import native_available as n; print(n())"],
                        entrypoint="python3")
    assert native.returncode == 0 and native.stdout.strip() == "None", (native.stdout, native.stderr)
    build_tools = runner.run(["-c", "for t in gcc cc pip pip3 make; do command -v $t; done; true"], entrypoint="sh")
    assert build_tools.stdout.strip() == "", build_tools.stdout


def test_the_chroot_fallback_runs_the_images_rootfs_as_its_user(image: BuiltImage, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Where podman cannot run the image, the tests run its rootfs with unshare + chroot instead; podman runs it on
    these machines, so without this the fallback would never run and could rot unnoticed."""
    monkeypatch.setenv("CALLSD_IMAGE_RUNNER", "chroot")
    fallback = pick_runner(image, tmp_path)
    assert fallback.name == "chroot", fallback.why
    version = fallback.run(["--version"])
    assert (version.returncode, version.stdout.strip()) == (0, "callsd 0.1.0"), version.stderr
    who = fallback.run(["-u"], entrypoint="id")
    assert (who.returncode, who.stdout.strip()) == (0, str(UID)), (who.stdout, who.stderr)


def test_serve_in_the_image_carries_a_short_load_test_with_zero_loss(
        served: tuple[str, Path], tmp_path: Path) -> None:
    url, log_path = served
    results = tmp_path / "results.json"
    # the host's load tool (real ICE, DTLS, SRTP over loopback) against the server in the image
    run = subprocess.run(
        [sys.executable, "-m", "callsd.app.cli", "loadtest", "--url", url, "--calls", "2", "--users-per-call", "2",
         "--unmuted", "1", "--duration", "5", "--join-duration", "1", "--output", str(results), "--quiet"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr + log_path.read_text()[-3000:]
    doc = json.loads(results.read_text())
    users = doc["users"]
    assert (users["total"], users["connected"], users["failed"]) == (4, 4, 0), users
    overall = doc["overall"]
    assert overall["audio_streams_received"] == overall["audio_streams_expected"] == 2
    assert overall["packets_received"] > 100
    assert overall["lost"] == 0 and overall["loss"] == 0.0 and overall["srtp_errors"] == 0
    assert "native fast path not available" not in log_path.read_text()  # fast_path=auto found the C extension


def test_rtcd_in_the_image_answers_healthz_on_its_api_port(runner: ImageRunner, tmp_path: Path) -> None:
    port = free_port()
    env = {"CALLSD_API_LISTEN": "127.0.0.1", "CALLSD_API_PORT": str(port), "CALLSD_RTC_ICE_ADDRESS_UDP": "127.0.0.1",
           "CALLSD_RTC_ICE_PORT_UDP": "0", "CALLSD_RTC_ICE_PORT_TCP": "0"}
    log_path = tmp_path / "rtcd.log"
    with open(log_path, "wb") as log:
        proc = runner.start(["rtcd"], env, log)
        try:
            _wait_healthy(f"http://127.0.0.1:{port}", proc, log_path)
        finally:
            code = _stop(proc)
    assert code == 0, f"rtcd in the image exited {code} on SIGTERM:\n{log_path.read_text()[-3000:]}"


def test_the_default_open_mode_on_every_address_is_refused_with_the_reason(runner: ImageRunner) -> None:
    """The image listens on 0.0.0.0; without token auth, serve must refuse to start rather than serve anyone."""
    env = {"CALLSD_HTTP_PORT": str(free_port()), "CALLSD_RTC_ICE_PORT_UDP": "0", "CALLSD_RTC_ICE_PORT_TCP": "0"}
    done = runner.run(["serve"], env, timeout=120)
    assert done.returncode == 2, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    assert "open" in (done.stdout + done.stderr), done.stdout + done.stderr


def test_callsd_as_pid_1_exits_on_a_sigterm_that_arrives_before_its_drain_handler(runner: ImageRunner) -> None:
    """In a container callsd is PID 1, whose unhandled signals the kernel drops: a SIGTERM during start-up must still
    end it, not leave the runtime waiting out the stop timeout (rtcd: 5 h) before SIGKILL."""
    script = ("import os, signal, time\n"
              "from callsd.app.cli import exit_on_sigterm_as_pid1\n"
              "exit_on_sigterm_as_pid1()\n"
              "os.kill(os.getpid(), signal.SIGTERM)\n"
              "time.sleep(20)\n"
              "print('the SIGTERM was lost', os.getpid())\n")
    done = runner.run(["-c", script], entrypoint="python3", timeout=60)
    assert "lost" not in done.stdout, done.stdout
    # podman: PID 1 exits 128 + 15; the chroot runner's process is no PID 1 and dies of the signal's default action
    assert done.returncode == (143 if runner.name == "podman" else -15), (done.returncode, done.stderr)
