"""Helpers for the attack tests (tests/server/test_attack_*.py): a `callsd serve` process, its memory, a call with
real media from `callsd loadtest`, and raw sockets that speak just enough HTTP/WebSocket to misbehave."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import struct
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from process_support import terminate


@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    port: int
    log: Path

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_mb(self) -> float:
        return _status_kb(self.proc.pid, "VmRSS") / 1024

    def peak_rss_mb(self) -> float:
        return _status_kb(self.proc.pid, "VmHWM") / 1024

    def reset_peak(self) -> None:
        """Start a new VmHWM window (writing 5 to clear_refs resets the peak RSS)."""
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@asynccontextmanager
async def callsd_process(tmp_path: Path, env_extra: dict[str, str] | None = None) -> AsyncIterator[ServerProcess]:
    """`callsd serve` on ephemeral loopback ports; stopped with SIGINT (then killed) when the block ends."""
    env = dict(os.environ, CALLSD_HTTP_PORT="0", CALLSD_RTC_ICE_PORT_UDP="0", CALLSD_RTC_ICE_PORT_TCP="0", CALLSD_HTTP_LISTEN="127.0.0.1",
               CALLSD_RTC_ICE_ADDRESS_UDP="127.0.0.1", CALLSD_STORE_DATA_DIR=str(tmp_path / "data"))
    env.update(env_extra or {})
    log = tmp_path / "serve.log"
    with open(log, "w") as errors:
        proc = subprocess.Popen([sys.executable, "-m", "callsd.app.cli", "serve"], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=errors, text=True)
    try:
        with trio.fail_after(30):
            line = await trio.to_thread.run_sync(proc.stdout.readline)  # type: ignore[union-attr]
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if not match:
            raise AssertionError(f"unexpected first line {line!r}; log: {log.read_text()[-3000:]}")
        yield ServerProcess(proc, int(match.group(1)), log)
    finally:
        await trio.to_thread.run_sync(lambda: terminate(proc, 15, sig=signal.SIGINT))


async def http_request(port: int, head: str, *, local_address: str | None = None,
                       timeout: float = 10) -> tuple[int, bytes]:
    """Send one raw request head (``GET /x HTTP/1.1`` plus header lines) and read the whole response."""
    stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=local_address)
    async with stream:
        await stream.send_all(head.encode("latin1").rstrip(b"\r\n") + b"\r\nConnection: close\r\n\r\n")
        data = b""
        with trio.fail_after(timeout):
            while chunk := await stream.receive_some(65536):
                data += chunk
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, data.partition(b"\r\n\r\n")[2]


def upgrade_request(port: int, path: str = "/api/v1/websocket", *, host: str = "", extra: str = "") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET {path} HTTP/1.1\r\nHost: {host or f'127.0.0.1:{port}'}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n").encode()


async def open_upgraded(port: int, *, local_address: str = "127.0.0.1", path: str = "/api/v1/websocket",
                        host: str = "", extra: str = "") -> tuple[trio.SocketStream, bytes]:
    """A raw socket after the upgrade request; returns it and the response head (and any bytes after it), or
    ``b""`` when the server closed the socket without answering."""
    sock = trio.socket.socket()
    await sock.bind((local_address, 0))
    await sock.connect(("127.0.0.1", port))
    stream = trio.SocketStream(sock)
    await stream.send_all(upgrade_request(port, path, host=host, extra=extra))
    data = b""
    with trio.fail_after(10):
        while b"\r\n\r\n" not in data:
            try:
                chunk = await stream.receive_some(65536)
            except trio.BrokenResourceError:  # reset: closed at accept with our request unread
                break
            if not chunk:
                break
            data += chunk
    return stream, data


def frame_header(length: int, opcode: int = 0x1, *, fin: bool = True) -> bytes:
    """A masked client frame header with an all-zero mask (so the payload goes as is)."""
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        return bytes([first, 0x80 | length]) + b"\0\0\0\0"
    if length < 1 << 16:
        return bytes([first, 0x80 | 126]) + struct.pack("!H", length) + b"\0\0\0\0"
    return bytes([first, 0x80 | 127]) + struct.pack("!Q", length) + b"\0\0\0\0"


def text_frame(text: str) -> bytes:
    payload = text.encode()
    return frame_header(len(payload)) + payload


async def send_big_frame(port: int, size: int, chunk: bytes = b"a" * (1 << 20)) -> int:
    """Upgrade, then send one text frame of ``size`` bytes without ever reading; return the bytes the server took
    before it closed the socket (all of them if it never did)."""
    stream, _ = await open_upgraded(port)
    sent = 0
    try:
        await stream.send_all(frame_header(size))
        while sent < size:
            piece = chunk[: size - sent]
            await stream.send_all(piece)
            sent += len(piece)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await stream.aclose()
    return sent


def read_close_code(data: bytes) -> int | None:
    """The code of the first close frame in server bytes (unmasked frames), if any."""
    position = 0
    while position + 2 <= len(data):
        opcode, length = data[position] & 0x0F, data[position + 1] & 0x7F
        position += 2
        if length == 126:
            length = struct.unpack_from("!H", data, position)[0]
            position += 2
        elif length == 127:
            length = struct.unpack_from("!Q", data, position)[0]
            position += 8
        if opcode == 0x8:
            return int.from_bytes(data[position: position + 2], "big") if length >= 2 else 1005
        position += length
    return None


def loadtest(url: str, output: Path, *, duration: float, cwd: Path, users: int = 2) -> subprocess.Popen[str]:
    """One call of ``users`` with one talker, real media through the server, results JSON in ``output``."""
    return subprocess.Popen(
        [sys.executable, "-m", "callsd.app.cli", "loadtest", "--url", url, "--calls", "1", "--users-per-call",
         str(users), "--unmuted", "1", "--duration", str(duration), "--join-duration", "0.5", "--output",
         str(output), "--quiet"],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


async def metric(port: int, name: str) -> float:
    """One sample of the server's /metrics (0 when absent); ``name`` may carry labels as exposed."""
    status, body = await http_request(port, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1")
    assert status == 200, status
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def results(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]
