"""One load process: simulated users of the calls assigned to it, their signaling and their media, in one Trio run.

A worker gets a :class:`WorkerSpec` (plain data, so it crosses a process boundary), joins each of its users at the
user's slot in the global join schedule, and reports to the parent through ``report(kind, payload)``: a
``"progress"`` snapshot every second and one ``"result"`` at the end (see :func:`.worker_result.collect_result`).

Each simulated user is one Trio task for its signaling (WebSocket per docs/protocol.md: ``hello`` -> ``join`` ->
``join_ack`` -> ``unmute``/``screen_on`` -> ``sdp`` offer -> ``signal`` answer; server re-offers are answered) and
one :class:`callsd.peer.Leg` driven by the process-wide :class:`callsd.peer.MediaEngine` tasks (no per-user media
task).

Join order: slot ``k`` of ``N`` users joins at ``t0 + join_duration * k / N`` and is user ``k // calls`` of call
``k % calls``, so users 0 of every call join first. Users ``0 .. unmuted-1`` of a call are unmuted (they send audio
and, with ``video``, camera video); user 0 of the first ``screen_sharing`` calls shares its screen.
"""

from __future__ import annotations

import contextlib
import gc
import json
import secrets
import signal
import socket
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import trio
import trio_websocket
from callsd.peer import Identity, Leg, MediaEngine, Source

from . import simulcast
from .sdp import (
    LocalTrack,
    SessionDescription,
    build_answer,
    build_offer,
    camera_slot_kept,
    camera_slot_mid,
    parse_sdp,
    slot_mids,
)
from .worker_result import collect_result

__all__ = ["WorkerSpec", "SimUser", "run_worker", "worker_process_main", "user_role", "local_address_toward"]

Report = Callable[[str, dict[str, Any]], None]

# The cyclic garbage collector in a load process. Why: at 200 calls (1,600 users, their sessions, SSL objects and
# StreamStats: millions of objects) CPython's collections were ~20 % of the worker's CPU (perf: gc_collect_main,
# visit_decref, visit_reachable), nearly all of it re-scanning objects that live for the whole run. The joined
# users' objects are moved out of the collector's sight once the join window has passed (`gc.freeze`, HEAP_SETTLE
# seconds after the last slot: the last joins finish), and young collections run less often; what the steady state
# makes and drops (Trio's cancel scopes, the drains' lists) is still collected.
GC_THRESHOLDS = (10_000, 20, 20)
HEAP_SETTLE = 3.0


@dataclass(slots=True)
class WorkerSpec:
    ws_url: str  # ws://host:port/api/v1/websocket
    index: int
    calls: list[int]  # global call indices handled by this worker
    total_calls: int
    users_per_call: int
    unmuted: int
    screen_sharing: int
    video: bool
    video_bitrate: int
    screen_bitrate: int
    join_duration: float
    duration: float
    t0: float  # time.monotonic() at which slot 0 joins (shared by all workers)
    run_id: str
    token_secret: str = ""
    delay_sample: int = 1
    join_timeout: float = 15.0
    channel_prefix: str = "lt"
    reconnect: bool = False  # a dropped WebSocket reconnects the session, as the web client does
    extra: dict[str, Any] = field(default_factory=dict)
    ws_urls: list[str] = field(default_factory=list)  # several nodes: user N connects to ws_urls[N % len]
    audio_slots: int = 0  # pre-negotiated audio receive sections asked for in the first offer (ADR 0020)
    batch: bool = False  # ask for batch frames in join/reconnect (protocol 1.3, ADR 0027)
    screen_simulcast: bool = False  # sharers publish three simulcast layers (simulcast.py)
    media_engine: str = "auto"  # callsd.peer.MediaEngine media: "auto", "native", "shared" (C) or "python"


def user_role(spec_calls: int, unmuted: int, screen_sharing: int, call: int, user: int) -> tuple[bool, bool]:
    """(unmuted, sharer) for user ``user`` of call ``call``."""
    return (user < unmuted, user == 0 and call < screen_sharing)


class SimUser:
    """One simulated participant: its WebSocket session, its negotiation state and its media leg."""

    def __init__(self, spec: WorkerSpec, engine: MediaEngine, call: int, user: int) -> None:
        self.spec = spec
        self.engine = engine
        self.call = call
        self.user = user
        self.number = call * spec.users_per_call + user
        self.channel_id = f"{spec.channel_prefix}-{spec.run_id}-{call}"
        self.ws_url = spec.ws_urls[self.number % len(spec.ws_urls)] if spec.ws_urls else spec.ws_url
        self.unmuted, self.sharer = user_role(spec.total_calls, spec.unmuted, spec.screen_sharing, call, user)
        self.session_id = ""
        self.joined = False
        self.failed = ""
        self.join_started_ns = 0
        self.join_ack_ns = 0
        self.ws_open_ns = 0
        self.offer_sent_ns = 0
        self.answer_ns = 0
        self.ws: trio_websocket.WebSocketConnection | None = None
        self.leg: Leg | None = None  # the current media leg
        self.legs: list[Leg] = []  # every leg this user had (a reconnect makes a new one): all count in results
        self.reconnect_secret = ""  # from join_ack, when the server issues one
        self.resume = False  # the next socket sends `reconnect` instead of `join`
        self.reconnects = 0
        self.waiting: trio.CancelScope | None = None  # `_receive`'s wait for the next message, while it waits
        self.tracks: list[LocalTrack] = []
        self.sources: dict[str, Source] = {}  # mid -> source
        self.version = 2
        self.sdp_session = secrets.randbits(48)
        self.offer_pending = False
        self.queued_offers: list[str] = []
        self.negotiations = 0
        self.camera_slot_answers = 0  # answers to this user's offers that kept its inactive camera section
        self.errors: dict[str, int] = {}
        self.trace: list[str] = []  # the last signaling messages (type, and signal type), for failure reports
        self._layers: dict[int, list[Source]] = {}  # a simulcast screen's top-layer SSRC -> its lower layers
        self.own_sources: list[Source] = []  # what this user sends, in its tracks' order (set by _make_tracks)

    # -- setup -----------------------------------------------------------------------------------------------
    def _make_tracks(self) -> None:
        stream = f"lt{self.number}"
        audio = Source(kind="audio", ssrc=secrets.randbits(32) or 1, user_number=self.number,
                       seed=secrets.randbits(16), index=0)
        audio.enabled = self.unmuted
        self.tracks.append(LocalTrack(kind="audio", ssrc=audio.ssrc, stream_id=stream, track_id=f"{stream}-a"))
        pending = [audio]
        if self.spec.video and self.unmuted:
            cam = Source(kind="video", ssrc=secrets.randbits(32) or 2, user_number=self.number,
                         bitrate=self.spec.video_bitrate, seed=secrets.randbits(16), index=1)
            cam.enabled = True
            self.tracks.append(LocalTrack(kind="video", ssrc=cam.ssrc, stream_id=stream, track_id=f"{stream}-v",
                                          camera=True))
            pending.append(cam)
        if self.sharer and self.spec.screen_simulcast:
            layers = simulcast.layer_sources(user_number=self.number, bitrate=self.spec.screen_bitrate,
                                             ssrcs=[secrets.randbits(32) or 3 + i for i in range(3)],
                                             seeds=[secrets.randbits(16) for _ in range(3)])
            self.tracks.append(LocalTrack(kind="video", ssrc=layers[-1].ssrc, stream_id=f"{stream}-screen",
                                          track_id=f"{stream}-s", simulcast=simulcast.offer_lines()))
            pending.append(layers[-1])
            self._layers[layers[-1].ssrc] = layers[:-1]
        elif self.sharer:
            screen = Source(kind="video", ssrc=secrets.randbits(32) or 3, user_number=self.number,
                            bitrate=self.spec.screen_bitrate, seed=secrets.randbits(16), index=2)
            screen.enabled = True
            self.tracks.append(LocalTrack(kind="video", ssrc=screen.ssrc, stream_id=f"{stream}-screen",
                                          track_id=f"{stream}-s"))
            pending.append(screen)
        self.own_sources = pending
        for source in pending:
            if not source.rid:  # simulcast layers stay out of the delivery count (simulcast.py)
                self.engine.add_source(source)

    async def _send(self, kind: str, data: dict[str, Any] | None = None) -> None:
        assert self.ws is not None
        msg: dict[str, Any] = {"type": kind}
        if data is not None:
            msg["data"] = data
        self._note(f">{kind}")
        await self.ws.send_message(json.dumps(msg))
        self._note(f">{kind} sent")

    def _note(self, what: str) -> None:
        if len(self.trace) >= 40:
            del self.trace[:20]
        self.trace.append(f"{(time.monotonic_ns() - self.join_started_ns) // 1_000_000}ms {what}")

    def _token(self) -> str:
        from callsd.app.auth import create_token

        return create_token(secret=self.spec.token_secret, user_id=f"lt-user-{self.number}",
                            channels=[self.channel_id], expires_at=int(time.time()) + 24 * 3600)

    # -- run -------------------------------------------------------------------------------------------------
    async def run(self, stop: trio.Event) -> None:
        """Join, negotiate, stay until ``stop``, then leave. Failures are recorded in ``failed``, never raised.

        With ``spec.reconnect``, a socket that drops after the join is reopened with backoff (0.5 s doubling to
        10 s, with jitter, like the web client) and the session resumed with ``reconnect {session_id,
        channel_id, reconnect_secret}``; its media leg is replaced by a new one (a new ICE/DTLS session)."""
        attempt = 0
        while True:
            await self._connection(stop)
            dropped = self.failed in ("closed", "websocket") or self.resume
            if stop.is_set() or not self.spec.reconnect or not self.session_id or not dropped:
                return
            if self.leg is not None:
                self.leg.close()
            self.leg = None
            self.resume = True
            self.failed = ""
            base = min(10.0, 0.5 * 2 ** attempt)
            attempt += 1
            with trio.move_on_after(base / 2 + secrets.randbelow(1000) / 1000 * base / 2):
                await stop.wait()
            if stop.is_set():
                return

    async def _connection(self, stop: trio.Event) -> None:
        """One WebSocket connection: join (or resume), negotiate, stay until ``stop`` or until it drops."""
        url = self.ws_url
        if self.spec.token_secret:
            url += ("&" if "?" in url else "?") + "token=" + self._token()
        if not self.join_started_ns:
            self.join_started_ns = time.monotonic_ns()
        try:
            async with trio_websocket.open_websocket_url(
                url, connect_timeout=self.spec.join_timeout, disconnect_timeout=2, message_queue_size=64
            ) as ws:
                self.ws = ws
                if not self.ws_open_ns:
                    self.ws_open_ns = time.monotonic_ns()
                try:
                    await self._session(stop)
                finally:
                    with trio.move_on_after(2) as scope:
                        scope.shield = True
                        if self.joined and not ws.closed and stop.is_set():
                            with contextlib.suppress(trio_websocket.ConnectionClosed):
                                await self._send("leave")
        except trio.TooSlowError:
            if not self.failed:
                self.failed = "join_timeout" if not self.joined else self.timeout_reason()
        except (trio_websocket.HandshakeError, trio_websocket.ConnectionClosed, OSError) as exc:
            if not self.failed and not stop.is_set():
                self.failed = "closed" if isinstance(exc, trio_websocket.ConnectionClosed) else "websocket"

    async def _session(self, stop: trio.Event) -> None:
        assert self.ws is not None
        deadline = trio.current_time() + self.spec.join_timeout
        with trio.fail_after(max(0.1, deadline - trio.current_time())):
            if self.resume:
                await self._send("reconnect", self._reconnect_data())
            else:
                await self._send("join", self._join_data())
            while not (self.leg is not None and self.leg.state == "connected"):
                if stop.is_set():
                    return  # the run ended before this user connected; collect_result names the stage
                await self._receive(stop)
                if self.failed:
                    return
                if self.leg is not None and self.leg.state == "failed":
                    self.failed = self.leg.error.split(":")[0]
                    return
        await self._stay(stop)

    async def _stay(self, stop: trio.Event) -> None:
        """Connected: answer the server's messages until ``stop``, noting a media failure when the leg reports it."""
        while not stop.is_set():
            await self._receive(stop)
            if self.leg is not None and self.leg.state == "failed" and not self.failed:
                self.failed = self.leg.error.split(":")[0]

    def interrupt(self, _leg: Leg | None = None) -> None:
        """Wake `_receive`'s wait: the run stopped, or the leg connected or failed (each leg's ``on_connected_hook``
        and ``on_failed_hook``). A no-op when the user is not waiting."""
        if self.waiting is not None:
            self.waiting.cancel()

    def _join_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"channel_id": self.channel_id, "display_name": f"lt-user-{self.number}"}
        if self.spec.batch:
            data["batch"] = True
        return data

    def _reconnect_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"session_id": self.session_id, "channel_id": self.channel_id}
        if self.reconnect_secret:
            data["reconnect_secret"] = self.reconnect_secret
        if self.spec.batch:
            data["batch"] = True
        return data

    async def _receive(self, stop: trio.Event) -> None:
        """Wait for one message and handle it, or return when `interrupt` woke the wait. Only the wait is
        cancellable: a handler's sends must never be cut off half-way (that would drop the rest of the handler and
        could break the stream).

        Why no timeout: the callers re-check their conditions (connected, failed, stopped) after every return, and
        `interrupt` wakes them when one changes. A wait with a deadline (a 1 s timeout once joined, 50 ms while
        joining) expired for every user every time, each expiry a Cancelled raised and caught in Trio's run loop:
        at 1,600 users a quarter of the load tool's CPU (py-spy, 200 calls; bench/loadtool_idle.py)."""
        assert self.ws is not None
        message: str | bytes | None = None
        with trio.CancelScope() as self.waiting:
            if not stop.is_set():
                message = await self.ws.get_message()
        self.waiting = None
        if message is not None:
            await self._handle(message)

    def timeout_reason(self) -> str:
        if self.leg is None:
            return "no_join_ack"
        if self.leg.state == "failed":
            return self.leg.error.split(":")[0]
        return {"new": "no_sdp_answer", "checking": "ice_timeout", "dtls": "dtls_timeout"}.get(
            self.leg.state, f"{self.leg.state}_timeout")

    async def _handle(self, text: str | bytes) -> None:
        try:
            msg = json.loads(text)
            kind = msg.get("type")
            data = msg.get("data") or {}
            events = data["events"] if kind == "batch" else [msg]  # a batch frame: its events in order (1.3)
        except (ValueError, AttributeError, KeyError, TypeError):
            self.errors["bad_message"] = self.errors.get("bad_message", 0) + 1
            return
        for event in events:
            await self._handle_event(event)

    async def _handle_event(self, msg: Any) -> None:
        try:
            kind = msg.get("type")
            data = msg.get("data") or {}
        except AttributeError:
            self.errors["bad_message"] = self.errors.get("bad_message", 0) + 1
            return
        self._note(f"{kind}" + (f":{data.get('type')}" if kind in ("signal", "error") else "")
                   + (f":{data.get('code')}" if kind == "error" else ""))
        if kind == "join_ack":
            await self._on_join_ack(data)
        elif kind == "signal":
            await self._on_signal(data)
        elif kind == "error":
            code = str(data.get("code", "error"))
            self.errors[code] = self.errors.get(code, 0) + 1
            if data.get("action") == "reconnect" and code in ("unknown_session", "not_in_call", "not_disconnected"):
                # The session is gone (the window passed, or the server lost it): join afresh, like the web client.
                self.resume = False
                await self._send("join", self._join_data())
            elif not self.joined or data.get("action") in ("join", "sdp", "reconnect"):
                self.failed = code

    async def _on_join_ack(self, data: dict[str, Any]) -> None:
        # A join_ack on a socket already joined: a cluster node resumed the session on the call's new owner (its
        # old owner died); the session is the same, its media is not: renegotiate, as after a reconnect.
        moved = bool(data.get("reconnected")) and self.joined and not self.resume
        if moved and self.leg is not None:
            self.leg.close()
            self.leg = None
        resumed = bool(data.get("reconnected")) and (self.resume or moved)
        self.resume = False
        self.joined = True
        if not self.join_ack_ns:
            self.join_ack_ns = time.monotonic_ns()
        if self.session_id and self.leg is None:
            self.reconnects += 1
        self.session_id = str(data.get("session_id", ""))
        self.reconnect_secret = str(data.get("reconnect_secret") or (self.reconnect_secret if resumed else ""))
        if self.unmuted and not resumed:
            await self._send("unmute")
        if not self.tracks:
            self._make_tracks()
        if self.sharer and not resumed:
            await self._send("screen_on", {"stream_id": self.tracks[-1].stream_id})
        # A new peer connection, as the web client makes after every join_ack: new ICE/DTLS, a new SDP session.
        self.sdp_session = secrets.randbits(48)
        self.version = 2
        self.offer_pending = False
        self.queued_offers = []
        self.leg = Leg(self.engine, user_number=self.number, call_index=self.call,
                       ufrag=secrets.token_hex(4), pwd=secrets.token_hex(16))
        self.legs.append(self.leg)
        self.leg.on_connected_hook = self.leg.on_failed_hook = self.interrupt
        self.leg.join_started_ns = self.join_started_ns
        offer = build_offer(session_id=self.sdp_session, tracks=self.tracks, ufrag=self.leg.local_ufrag,
                            pwd=self.leg.local_pwd, fingerprint=self.engine.identity.fingerprint,
                            cname=f"lt{self.number}", candidate=self.leg.local_address,
                            receive_slots=self.spec.audio_slots)
        self.offer_pending = True
        self.offer_sent_ns = time.monotonic_ns()
        msg: dict[str, Any] = {"type": "offer", "sdp": offer}
        if self.spec.audio_slots:  # the slots are in the offer (protocol 1.4): one round per join
            msg["audio_slots"] = self.spec.audio_slots
            msg["slot_mids"] = slot_mids(self.tracks, self.spec.audio_slots)
        await self._send("sdp", msg)

    def _apply_remote(self, desc: SessionDescription, *, answer: bool) -> None:
        """The server's description (parsed once by the caller: an offer is also read to build the answer)."""
        leg = self.leg
        assert leg is not None
        mapping: dict[int, tuple[str, int]] = {}
        by_mid = {m.mid: m for m in desc.media}
        for m in desc.media:
            for pt in m.formats:
                mapping[pt] = (m.kind, m.clock_rate(pt))
        leg.set_payload_types(mapping)
        for track, source in zip(self.tracks, self.own_sources, strict=True):
            section = by_mid.get(track.mid)
            if section is None or section.port == 0:
                continue
            if answer and section.formats and track.payload_type not in section.formats:
                track.payload_type = section.formats[0]
            for layer in (source, *self._layers.get(source.ssrc, ())):
                layer.configure(track.mid, track.payload_type, section.extmap)
                leg.add_source(layer)
        if leg.state == "new":
            ufrag, pwd = desc.ice_credentials()
            candidates = [c for c in desc.all_candidates() if ":" not in c[0]]
            if not candidates:
                self.failed = "no_candidate"
                return
            leg.start(remote_ufrag=ufrag, remote_pwd=pwd, remote_fingerprint=desc.dtls_fingerprint(),
                      address=candidates[0])

    async def _on_signal(self, data: dict[str, Any]) -> None:
        kind = data.get("type")
        sdp = data.get("sdp")
        if kind == "answer" and isinstance(sdp, str):
            self.offer_pending = False
            if not self.answer_ns:
                self.answer_ns = time.monotonic_ns()
            self.negotiations += 1
            try:
                desc = parse_sdp(sdp)
                self.camera_slot_answers += camera_slot_kept(desc, camera_slot_mid(self.tracks))
                self._apply_remote(desc, answer=True)
            except (ValueError, KeyError) as exc:
                self.failed = "bad_answer"
                self.errors[f"bad_answer: {exc}"] = 1
                return
            queued, self.queued_offers = self.queued_offers, []
            for offer in queued:
                await self._answer(offer)
        elif kind == "offer" and isinstance(sdp, str):
            if self.offer_pending:
                # Glare: the server (impolite) would drop our offer; we answer its offer after ours is answered.
                self.errors["glare"] = self.errors.get("glare", 0) + 1
                self.queued_offers.append(sdp)
                return
            await self._answer(sdp)

    async def _answer(self, sdp: str) -> None:
        assert self.leg is not None
        try:
            offer = parse_sdp(sdp)
        except ValueError:
            self.errors["bad_offer"] = self.errors.get("bad_offer", 0) + 1
            return
        self.version += 1
        camera_slot = camera_slot_mid(self.tracks)
        if camera_slot and not camera_slot_kept(offer, camera_slot):  # a browser's section would not change either
            self.errors["camera_slot_not_kept"] = self.errors.get("camera_slot_not_kept", 0) + 1
        answer = build_answer(offer, session_id=self.sdp_session, version=self.version, tracks=self.tracks,
                              ufrag=self.leg.local_ufrag, pwd=self.leg.local_pwd,
                              fingerprint=self.engine.identity.fingerprint, cname=f"lt{self.number}",
                              camera_slot=camera_slot)
        self._apply_remote(offer, answer=False)
        self.negotiations += 1
        await self._send("sdp", {"type": "answer", "sdp": answer})


async def run_worker(spec: WorkerSpec, report: Report) -> dict[str, Any]:
    """Run every user of ``spec`` to the end of the run and return (and report) the worker's result."""
    engine = MediaEngine(Identity(), delay_sample=spec.delay_sample, media=spec.media_engine,
                         host=local_address_toward(spec.ws_urls[0] if spec.ws_urls else spec.ws_url))
    users: list[SimUser] = []
    total_users = spec.total_calls * spec.users_per_call
    schedule: list[tuple[float, SimUser]] = []
    for call in spec.calls:
        for user in range(spec.users_per_call):
            slot = user * spec.total_calls + call
            at = spec.t0 + spec.join_duration * slot / max(1, total_users)
            sim = SimUser(spec, engine, call, user)
            users.append(sim)
            schedule.append((at, sim))
    schedule.sort(key=lambda item: item[0])
    stop = trio.Event()
    end_at = spec.t0 + spec.duration
    cpu0 = time.process_time()

    def progress() -> dict[str, Any]:
        snap = engine.snapshot([leg for u in users for leg in u.legs])
        snap["joined"] = sum(1 for u in users if u.joined and not u.failed)
        snap["connected"] = sum(1 for u in users if u.leg is not None and u.leg.state == "connected")
        snap["failed"] = sum(1 for u in users if u.failed)
        snap["users"] = len(users)
        snap["cpu_seconds"] = time.process_time() - cpu0
        snap["at"] = time.monotonic()
        return snap

    async def reporter() -> None:
        while True:
            await trio.sleep(0.5)
            report("progress", progress())

    async def start_users(nursery: trio.Nursery) -> None:
        for at, sim in schedule:
            delay = at - time.monotonic()
            if delay > 0:
                await trio.sleep(delay)
            if time.monotonic() >= end_at:
                break
            nursery.start_soon(sim.run, stop)
        settled = spec.t0 + spec.join_duration + HEAP_SETTLE
        if settled < end_at:  # (a run that ends sooner is not kept waiting for it)
            await trio.sleep(max(0.0, settled - time.monotonic()))
            gc.freeze()

    gc.set_threshold(*GC_THRESHOLDS)
    async with trio.open_nursery() as outer:
        outer.start_soon(engine.receive_loop)
        outer.start_soon(engine.send_loop)
        outer.start_soon(engine.maintain_loop)
        outer.start_soon(reporter)
        async with trio.open_nursery() as user_nursery:
            user_nursery.start_soon(start_users, user_nursery)
            await trio.sleep(max(0.0, end_at - time.monotonic()))
            engine.stop_sending()
            await trio.sleep(0.5)  # let in-flight packets arrive before counting
            result = collect_result(spec, engine, users, time.process_time() - cpu0)
            stop.set()
            for sim in users:
                sim.interrupt()
        outer.cancel_scope.cancel()
    for sim in users:
        for leg in sim.legs:
            leg.close()
    report("result", result)
    return result


def local_address_toward(url: str) -> str:
    """The local IPv4 address the kernel would send from to reach ``url``'s host (127.0.0.1 for a loopback
    server, as before): the media legs bind it, so a server on another machine or namespace is reachable."""
    host = urllib.parse.urlsplit(url).hostname or "127.0.0.1"
    if host == "localhost" or host.startswith("127."):
        return "127.0.0.1"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((socket.gethostbyname(host), 9))  # UDP connect sends nothing; it picks the route
            return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"


def worker_process_main(spec_dict: dict[str, Any], queue: Any) -> None:
    """Entry point of a load process (multiprocessing target): runs the worker, reports through ``queue``."""
    spec = WorkerSpec(**spec_dict)

    def report(kind: str, payload: dict[str, Any]) -> None:
        queue.put((kind, spec.index, payload))

    # Ctrl-C reaches the whole process group: the parent handles it (and terminates its workers).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        trio.run(run_worker, spec, report)
    except BaseException as exc:  # noqa: BLE001 - the parent must learn why a worker died, then we exit
        queue.put(("crash", spec.index, {"error": f"{type(exc).__name__}: {exc}"}))
        raise


def spec_to_dict(spec: WorkerSpec) -> dict[str, Any]:
    return asdict(spec)
