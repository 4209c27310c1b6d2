"""Issue 8, items 0 and 1: huge WebSocket frames against a `callsd serve` process, while another call talks.

Before app/http_inbound.py, hypercorn buffered each frame whole before checking its size: rounds of 10 concurrent
48 MB frames took the server from ~70 MB to over 1.5 GB of RSS (never given back) and, once its ping task lost the
race with a closing socket, ended the process. Now a frame is refused at its header (close 1009, socket closed at
once, nothing of its payload read), so the attack costs almost nothing: the server stays up, the call keeps its
media, and memory stays near its baseline. The figures of a run are in docs/security.md.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import trio
from attack_support import (
    callsd_process,
    frame_header,
    http_request,
    loadtest,
    metric,
    open_upgraded,
    read_close_code,
    results,
    send_big_frame,
)
from callsd.app.auth import create_token

pytestmark = pytest.mark.slow

FRAME = 48 << 20
ROUNDS = 3
PER_ROUND = 10


async def test_rounds_of_huge_frames_leave_the_server_up_the_call_talking_and_memory_flat(tmp_path: Path) -> None:
    # A short ping interval (idle_timeout / 3 = 1 s) gives the ping-vs-close race of item 0 many chances.
    async with callsd_process(tmp_path, {"CALLSD_HTTP_IDLE_TIMEOUT": "3"}) as server:
        output = tmp_path / "call.json"
        call = loadtest(f"http://127.0.0.1:{server.port}", output, duration=12, cwd=tmp_path)
        try:
            with trio.fail_after(30):
                while await metric(server.port, "callsd_participants") < 2:
                    await trio.sleep(0.1)
            baseline = server.rss_mb()
            server.reset_peak()
            accepted: list[int] = []
            with trio.fail_after(120):
                for _ in range(ROUNDS):
                    async with trio.open_nursery() as nursery:
                        for _ in range(PER_ROUND):
                            nursery.start_soon(lambda: _record(accepted, send_big_frame(server.port, FRAME)))
            peak = server.peak_rss_mb()
            assert server.alive, server.log.read_text()[-3000:]
            status, _ = await http_request(server.port, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1")
            assert status == 200
            out, err = await trio.to_thread.run_sync(lambda: call.communicate(timeout=60))
            after = server.rss_mb()
        finally:
            if call.poll() is None:
                call.kill()
                call.wait()
        assert call.returncode == 0, out + err
        overall = results(output)["overall"]
        assert overall["audio_streams_received"] == overall["audio_streams_expected"] == 1
        # Media kept flowing. (The bound is loose on purpose: on a loaded 2-CPU machine a call loses a little without
        # any attack; docs/security.md has the figures of quiet runs: 0 lost.)
        assert overall["e2e_expected"] > 200 and overall["e2e_lost"] <= overall["e2e_expected"] * 0.1, overall
        # Each frame was cut at its header: the clients got through a few MB of socket buffers, not 48 MB.
        assert max(accepted) < FRAME // 4, accepted
        assert peak - baseline < 48, (baseline, peak, after)
        assert after - baseline < 24, (baseline, peak, after)
        assert await metric(server.port, 'callsd_http_refused_total{reason="message_too_big"}') == ROUNDS * PER_ROUND
        assert server.alive
        print(f"RSS baseline {baseline:.0f} MB, peak {peak:.0f} MB, after {after:.0f} MB; most accepted "
              f"{max(accepted) >> 20} MB; "
              f"e2e lost {overall['e2e_lost']}/{overall['e2e_expected']}")


async def _record(into: list[int], sending: object) -> None:
    into.append(await sending)  # type: ignore[misc]


async def test_a_256_mb_frame_is_refused_at_its_header_with_1009(tmp_path: Path) -> None:
    async with callsd_process(tmp_path) as server:
        stream, head = await open_upgraded(server.port)
        assert head.startswith(b"HTTP/1.1 101 ")
        await stream.send_all(frame_header(256 << 20))  # the header alone: no payload byte is ever sent
        data = head.partition(b"\r\n\r\n")[2]
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                data += chunk  # the server closes the socket: the loop ends without the client closing
        assert read_close_code(data) == 1009
        assert server.alive


async def test_token_mode_refuses_a_bad_query_token_before_the_upgrade(start_server) -> None:
    secret = "s" * 32
    info, _ = await start_server(auth={"mode": "token", "secret": secret})
    expired = create_token(secret=secret, user_id="u", channels=["*"], expires_at=int(time.time()) - 5)
    for token, code in (("v1.forged.sig", "unauthorized"), (expired, "token_expired")):
        stream, data = await open_upgraded(info.http_port, path=f"/api/v1/websocket?token={token}")
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                data += chunk
        await stream.aclose()
        assert data.startswith(b"HTTP/1.1 401 "), data[:200]
        assert json.loads(data.partition(b"\r\n\r\n")[2])["error"]["code"] == code
    good = create_token(secret=secret, user_id="u", channels=["*"], expires_at=int(time.time()) + 60)
    stream, data = await open_upgraded(info.http_port, path=f"/api/v1/websocket?token={good}")
    assert data.startswith(b"HTTP/1.1 101 ")
    await stream.aclose()


async def test_trailing_bytes_after_an_upgrade_request_cost_one_connection_only(start_server, connect) -> None:
    # hypercorn's own server exits on this (pgjones/hypercorn#225): here the bytes are read as a frame header with
    # reserved bits set, refused, and the connection closed.
    info, _ = await start_server()
    stream, data = await open_upgraded(info.http_port, extra="")
    await stream.send_all(b"x\n")
    with trio.fail_after(5):
        while chunk := await stream.receive_some(65536):
            data += chunk
    assert read_close_code(data.partition(b"\r\n\r\n")[2]) == 1002
    async with connect(info) as client:
        await client.request("join", {"channel_id": "room"}, expect="join_ack")
