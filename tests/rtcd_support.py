"""Helpers for the rtcd tests: raw HTTP/1.1 requests, and ``callsd rtcd`` as a real process on a loopback address.

    status, headers, body = await http(port, "POST", "/register", json_body={...}, auth="Bearer ...", host="127.0.0.2")
    host = RtcdProcess(tmp_path, "127.0.0.2", admin_key=ADMIN)     # free API port on that address, UDP ephemeral
    host.start(); host.register(CLIENT, KEY); host.pid; host.kill(); host.terminate()
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import trio
from process_support import log_tails_on_failure, tail, terminate

NAME = "rtcd.callsd.test"  # the one host name of the rtcd hosts in the HA tests
ADDRESSES = ("127.0.0.2", "127.0.0.3")
ADMIN = "admin-" + "a" * 40
CLIENT = "serve-1"
KEY = "k" * 40


_UNVERIFIED = ssl._create_unverified_context()  # the test's own helpers only; serve verifies (SSL_CERT_FILE)


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``name`` (subjectAltName), made by the openssl command line."""
    cert, key = directory / "rtcd.crt", directory / "rtcd.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName=DNS:{name}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def basic(client_id: str, key: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{key}".encode()).decode()


async def http(port: int, method: str, path: str, *, auth: str | None = None, json_body: Any = None,
               host: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
    body = b"" if json_body is None else json.dumps(json_body).encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {len(body)}\r\n"
    if auth:
        head += f"Authorization: {auth}\r\n"
    if json_body is not None:
        head += "Content-Type: application/json\r\n"
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await stream.send_all(head.encode() + b"\r\n" + body)
        data = b""
        with trio.fail_after(20):
            while chunk := await stream.receive_some(65536):
                data += chunk
    if not data:  # accepted, then closed with no response: a server on its way out does this
        raise ConnectionResetError(f"{host}:{port} closed the connection with no response to {method} {path}")
    raw_head, _, payload = data.partition(b"\r\n\r\n")
    lines = raw_head.decode("latin1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, payload


def free_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


class RtcdProcess:
    """``callsd rtcd`` (standalone) on ``address``: API on a free TCP port, media on an ephemeral UDP port."""

    def __init__(self, tmp_path: Path, address: str, *, admin_key: str = ADMIN, tls: tuple[Path, Path] | None = None,
                 **env: str) -> None:
        self.address = address
        self.scheme = "https" if tls else "http"
        self.port = free_port(address)
        self.dir = tmp_path / f"rtcd-{address}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ, CALLSD_API_LISTEN=address, CALLSD_API_PORT=str(self.port),
                        CALLSD_API_ADMIN_SECRET_KEY=admin_key, CALLSD_RTC_ICE_ADDRESS_UDP=address,
                        CALLSD_RTC_ICE_PORT_UDP="0", CALLSD_RTC_ICE_PORT_TCP="0", CALLSD_STORE_DATA_DIR=str(self.dir / "data"),
                        CALLSD_LOG_LEVEL="info", **env)
        if tls:
            self.env.update(CALLSD_API_TLS_CERT=str(tls[0]), CALLSD_API_TLS_KEY=str(tls[1]))
        self.log_path = self.dir / "rtcd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.address}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> None:
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "callsd.app.cli", "rtcd", "--log-level", "info"],
                                         env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=1, context=_UNVERIFIED):
                    return
            except OSError:
                time.sleep(0.1)
        pytest.fail(f"callsd rtcd on {self.address} is not healthy:\n" + self.log()[-3000:])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def register(self, client_id: str = CLIENT, key: str = KEY) -> None:
        req = urllib.request.Request(f"{self.base}/register", method="POST",
                                     data=json.dumps({"client_id": client_id, "auth_key": key}).encode(),
                                     headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30, context=_UNVERIFIED) as answer:
            assert answer.status == 201

    def system(self) -> dict[str, Any]:
        req = urllib.request.Request(f"{self.base}/system",
                                     headers={"Authorization": basic(CLIENT, KEY)})
        with urllib.request.urlopen(req, timeout=30, context=_UNVERIFIED) as answer:
            return json.loads(answer.read())  # type: ignore[no-any-return]

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, 10, sig=signal.SIGINT)


def common_port() -> int:
    """A TCP port free on both addresses: the one URL names one port for every host."""
    for _ in range(50):
        port = free_port(ADDRESSES[0])
        try:
            import socket

            with socket.socket() as s:
                s.bind((ADDRESSES[1], port))
            return port
        except OSError:
            continue
    raise RuntimeError("no common free port")


class Hosts:
    """The hosts file serve's mount namespace sees as /etc/hosts (rewritten in place: same inode)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.write_text("127.0.0.1 localhost\n")

    def set(self, *addresses: str) -> None:
        with open(self.path, "r+") as f:
            f.truncate(0)
            f.write("127.0.0.1 localhost\n" + "".join(f"{a} {NAME}\n" for a in addresses))


def logs_on_failure(serve: Serve, hosts: list[RtcdProcess]) -> contextlib.AbstractContextManager[None]:
    """Add serve's and every host's log tail to a failure inside (an assertion, a wait that timed out)."""
    return log_tails_on_failure({"serve": serve.log_path, **{f"rtcd {h.address}": h.log_path for h in hosts}})


class Serve:
    """``callsd serve`` in a private mount namespace with ``hosts`` bind-mounted over /etc/hosts."""

    def __init__(self, tmp_path: Path, hosts: Hosts, rtcd_port: int, *, scheme: str = "http", **extra: str) -> None:
        self.port = free_port("127.0.0.1")
        self.log_path = tmp_path / "serve.log"
        env = dict(os.environ, CALLSD_HTTP_PORT=str(self.port), CALLSD_STORE_DATA_DIR=str(tmp_path / "serve"),
                   CALLSD_RTC_RTCD_URL=f"{scheme}://{NAME}:{rtcd_port}", CALLSD_RTC_RTCD_CLIENT_ID=CLIENT,
                   CALLSD_RTC_RTCD_AUTH_KEY=KEY, CALLSD_RTC_RTCD_RESOLVE_INTERVAL="0.5", CALLSD_LOG_LEVEL="info", **extra)
        unshare = shutil.which("unshare") or "/usr/bin/unshare"
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [unshare, "--mount", "--propagation", "private", "sh", "-c",
                 'mount --bind "$0" /etc/hosts && exec "$@"', str(hosts.path),
                 sys.executable, "-m", "callsd.app.cli", "serve"],
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, linked: tuple[str, ...] = (), timeout: float = 60) -> None:
        """Healthy, and (``linked``) each of those hosts linked and accepting calls: serve is ready while its hosts
        are still being linked ("calls wait for one"), and a login to a host can time out and be retried under
        load, so a test that places calls on particular hosts waits for them here first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("callsd serve is not healthy:\n" + self.log_path.read_text()[-3000:])
        deadline = time.monotonic() + timeout
        while linked and time.monotonic() < deadline:
            placement = self.placement_now()
            if all(placement.get(kind, {}).get(a) == 1 for kind in ("up", "accepting") for a in linked):
                return
            time.sleep(0.2)
        if linked:
            pytest.fail(f"callsd serve did not link {linked} in {timeout} s:\n" + tail(self.log_path))

    async def ready(self, linked: tuple[str, ...] = ()) -> None:
        await trio.to_thread.run_sync(self.wait_ready, linked)

    async def placement(self) -> dict[str, dict[str, float]]:
        return await trio.to_thread.run_sync(self.placement_now)

    def placement_now(self) -> dict[str, dict[str, float]]:
        """serve's /metrics per-host placement: {"calls": {host: n}, "sessions": ..., "accepting": ..., "up": ...}."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as answer:
            text = str(answer.read().decode())
        out: dict[str, dict[str, float]] = {}
        for kind, host, value in re.findall(r'^callsd_media_host_(\w+)\{host="rtcd ([\d.]+):\d+"\} (\S+)$', text,
                                            re.M):
            out.setdefault(kind, {})[host] = float(value)
        return out

    def stop(self) -> None:
        terminate(self.proc, 20, sig=signal.SIGINT)
