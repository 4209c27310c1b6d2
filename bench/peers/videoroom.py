"""A Janus VideoRoom load driver on the load tool's media engine (``callsd.peer``): the same simulated peers,
speaking Janus's WebSocket API instead of callsd's protocol.

Theory of operation
-------------------
Shape: ``rooms`` rooms of ``users`` users; users ``0 .. publishers-1`` of a room publish Opus (the load tool's
audio source: 50 packets/s of 140-byte payloads carrying a stamp) and every user subscribes to every publisher but
itself, so a room of 8 users with 2 publishers forwards 2 x 7 streams, exactly callsd's "8 users, 2 unmuted" call.

Signaling: one WebSocket (subprotocol ``janus-protocol``) per room carries the Janus sessions of its users, one
session per user (as one browser tab would have). A request waits for its first reply that is not an ``ack``
(Janus acks asynchronous plugin requests and answers later with an ``event`` of the same transaction).

- Room: ``create`` (VideoRoom) with room id ``1000 + index``.
- Publisher: ``attach`` -> ``joinandconfigure`` (``ptype: publisher``, feed id fixed by us) with an offer of one
  ``sendonly`` Opus section; Janus answers ``a=setup:active`` (it is the DTLS client), so the leg is the DTLS server.
- Subscriber (after its room's publishers are up): ``attach`` -> ``join`` (``ptype: subscriber``, ``streams``:
  one entry per feed; Janus 1.x puts them all in one peer connection) -> Janus offers -> ``start`` with our
  ``recvonly`` answer (``a=setup:active``: the leg is the DTLS client), with our host candidate in it.

Media: one :class:`callsd.peer.Leg` per peer connection (a publisher has two: publish and subscribe), all driven
by one :class:`callsd.peer.MediaEngine` (epoll receive pump, 20 ms send tick, ICE/DTLS timers): ICE as the
controlling agent against Janus in ICE-lite mode, DTLS, SRTP, exactly as against callsd. Loss is the engine's
sender-side delivery count (docs/performance.md, "Figures that do not flatter").
"""

from __future__ import annotations

import itertools
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio
import trio_websocket
from callsd.app.loadtest.sdp import LocalTrack, SessionDescription, build_answer, build_offer, parse_sdp
from callsd.app.loadtest.worker import local_address_toward
from callsd.peer import Identity, Leg, MediaEngine, Source

__all__ = ["DriverSpec", "JanusError", "run_driver"]

Report = Callable[[str, dict[str, Any]], None]
ROOM_BASE = 1000


NO_SUCH_FEED = 428  # VideoRoom: the feed is not (yet) subscribable


class JanusError(Exception):
    """Janus refused a request (``code``: Janus's or the VideoRoom's error code, 0 when Janus broke the API's
    contract or a leg failed)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True, kw_only=True)
class DriverSpec:
    url: str  # ws://host:8188/
    rooms: int
    users: int = 8
    publishers: int = 2
    duration: float = 20.0  # seconds from the first join to the end of sending
    join_rate: float = 50.0  # users per second (a user's publish and subscribe count as one join)
    join_timeout: float = 20.0
    media_engine: str = "auto"
    delay_sample: int = 4  # decrypt 1 received packet in N (the stamp: delay and the sender's counter)

    def __post_init__(self) -> None:
        if self.rooms < 1 or self.users < 2 or not 1 <= self.publishers <= self.users:
            raise ValueError("need rooms >= 1, users >= 2 and 1 <= publishers <= users")


class JanusApi:
    """One WebSocket to Janus: requests matched to replies by transaction, other events counted by kind."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws
        self.pending: dict[str, trio.MemorySendChannel[dict[str, Any]]] = {}
        self.events: dict[str, int] = {}  # janus event kind (webrtcup, media, hangup, ...) -> count
        self._ids = itertools.count(1)

    async def reader(self) -> None:
        """Route every message to its waiting request; count the rest. Returns when the socket closes."""
        try:
            while True:
                msg = json.loads(await self.ws.get_message())
                kind = str(msg.get("janus", ""))
                waiter = self.pending.get(str(msg.get("transaction", "")))
                if waiter is not None and kind != "ack":
                    waiter.send_nowait(msg)
                elif waiter is None:
                    self.events[kind] = self.events.get(kind, 0) + 1
        except trio_websocket.ConnectionClosed:
            return

    async def request(self, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send ``payload`` with a fresh transaction; the first reply that is not an ``ack``. Raises JanusError
        for ``janus: error`` and for a plugin ``error_code``."""
        transaction = f"t{next(self._ids)}"
        send, receive = trio.open_memory_channel[dict[str, Any]](1)
        self.pending[transaction] = send
        try:
            await self.ws.send_message(json.dumps({**payload, "transaction": transaction}))
            with trio.fail_after(timeout):
                reply = await receive.receive()
        finally:
            del self.pending[transaction]
        if reply.get("janus") == "error":
            error = reply.get("error", {})
            raise JanusError(f"janus error {error.get('code')}: {error.get('reason')}", int(error.get("code", 0)))
        data = reply.get("plugindata", {}).get("data", {})
        if "error_code" in data:
            raise JanusError(f"videoroom error {data['error_code']}: {data.get('error')}", int(data["error_code"]))
        return reply

    async def session(self, timeout: float) -> int:
        return int((await self.request({"janus": "create"}, timeout))["data"]["id"])

    async def attach(self, session: int, timeout: float) -> int:
        reply = await self.request({"janus": "attach", "session_id": session, "plugin": "janus.plugin.videoroom"},
                                   timeout)
        return int(reply["data"]["id"])

    async def message(self, session: int, handle: int, body: dict[str, Any], timeout: float,
                      jsep: dict[str, str] | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {"janus": "message", "session_id": session, "handle_id": handle, "body": body}
        if jsep is not None:
            payload["jsep"] = jsep
        return await self.request(payload, timeout)


def _with_candidate(sdp: str, candidate: tuple[str, int]) -> str:
    """``sdp`` with our host candidate in every m-section (build_answer leaves candidates out: callsd learns the
    address from the checks; Janus waits for candidates or an end-of-candidates before it treats ICE as done)."""
    ip, port = candidate
    lines = []
    for line in sdp.split("\r\n"):
        if line.startswith("a=ice-ufrag:"):
            lines += [f"a=candidate:1 1 udp 2130706431 {ip} {port} typ host", "a=end-of-candidates"]
        lines.append(line)
    return "\r\n".join(lines)


@dataclass(slots=True)
class SimUser:
    """One simulated participant of a room: its Janus session, its legs (publish, subscribe), what went wrong."""

    room: int
    index: int
    number: int
    feed: int  # its publisher feed id (0: it does not publish)
    legs: list[Leg] = field(default_factory=list)
    source: Source | None = None
    failed: str = ""
    stage: str = "waiting"

    def connected(self) -> int:
        return sum(1 for leg in self.legs if leg.state == "connected")


class Driver:
    """All rooms of one run on one engine; ``run`` drives them to the end and returns the result document."""

    def __init__(self, spec: DriverSpec, report: Report) -> None:
        self.spec = spec
        self.report = report
        self.engine = MediaEngine(Identity(), delay_sample=spec.delay_sample, media=spec.media_engine,
                                  host=local_address_toward(spec.url))
        self.users = [SimUser(room=r, index=u, number=r * spec.users + u,
                              feed=(r * 100 + u + 1) if u < spec.publishers else 0)
                      for r in range(spec.rooms) for u in range(spec.users)]
        self.published = [trio.Event() for _ in range(spec.rooms)]
        self.published_count = [0] * spec.rooms
        self.apis: list[JanusApi] = []
        self.sdp_version = itertools.count(3)

    @property
    def expected_legs(self) -> int:
        return self.spec.rooms * (self.spec.users + self.spec.publishers)

    def _leg(self, user: SimUser) -> Leg:
        leg = Leg(self.engine, user_number=user.number, call_index=user.room, ufrag=secrets.token_hex(4),
                  pwd=secrets.token_hex(16))
        user.legs.append(leg)
        return leg

    async def _publish(self, api: JanusApi, user: SimUser) -> None:
        timeout = self.spec.join_timeout
        user.stage = "publish"
        session = await api.session(timeout)
        handle = await api.attach(session, timeout)
        leg = self._leg(user)
        source = Source(kind="audio", ssrc=secrets.randbits(32) or 1, user_number=user.number,
                        seed=secrets.randbits(16), index=0)
        source.enabled = True
        self.engine.add_source(source)
        user.source = source
        track = LocalTrack(kind="audio", ssrc=source.ssrc, stream_id=f"u{user.number}", track_id=f"u{user.number}a")
        offer = build_offer(session_id=secrets.randbits(48), tracks=[track], ufrag=leg.local_ufrag,
                            pwd=leg.local_pwd, fingerprint=self.engine.identity.fingerprint, cname=f"u{user.number}",
                            candidate=leg.local_address).replace("a=sendrecv", "a=sendonly")
        reply = await api.message(session, handle, {"request": "joinandconfigure", "room": ROOM_BASE + user.room,
                                                    "ptype": "publisher", "id": user.feed,
                                                    "display": f"u{user.number}"},
                                  timeout, jsep={"type": "offer", "sdp": offer})
        answer = parse_sdp(reply["jsep"]["sdp"])
        section = answer.media[0]
        pt = track.payload_type if track.payload_type in section.formats else section.formats[0]
        source.configure(track.mid, pt, section.extmap)
        leg.add_source(source)
        self._start(leg, answer)
        # Janus lists a feed to subscribers only once its peer connection is up (webrtcup): wait for our side.
        with trio.fail_after(timeout):
            while leg.state != "connected":
                if leg.state == "failed":
                    raise JanusError(f"publisher leg failed: {leg.error}")
                await trio.sleep(0.05)
        self.published_count[user.room] += 1
        if self.published_count[user.room] == self.spec.publishers:
            self.published[user.room].set()

    async def _subscribe(self, api: JanusApi, user: SimUser) -> None:
        timeout = self.spec.join_timeout
        await self.published[user.room].wait()
        user.stage = "subscribe"
        session = await api.session(timeout)
        handle = await api.attach(session, timeout)
        feeds = [other.feed for other in self.users if other.room == user.room and other.feed and other is not user]
        # Each feed's audio only (its mid "0"): a publisher's offer also has the camera's inactive section, as a
        # browser's does (app/loadtest/camera_slot.py), and subscribing to a whole feed would take that too.
        body = {"request": "join", "room": ROOM_BASE + user.room, "ptype": "subscriber",
                "streams": [{"feed": f, "mid": "0"} for f in feeds]}
        for attempt in itertools.count():
            try:
                reply = await api.message(session, handle, body, timeout)
                break
            except JanusError as exc:  # our DTLS side can finish a moment before Janus's (428: no such feed)
                if exc.code != NO_SUCH_FEED or attempt >= 20:
                    raise
                await trio.sleep(0.1)
        offer = parse_sdp(reply["jsep"]["sdp"])
        leg = self._leg(user)
        leg.set_payload_types({pt: (m.kind, m.clock_rate(pt)) for m in offer.media for pt in m.formats})
        answer = build_answer(offer, session_id=secrets.randbits(48), version=next(self.sdp_version), tracks=[],
                              ufrag=leg.local_ufrag, pwd=leg.local_pwd, fingerprint=self.engine.identity.fingerprint,
                              cname=f"u{user.number}")
        self._start(leg, offer)  # as a browser does after setRemoteDescription: checks go out (and repeat) now
        await api.message(session, handle, {"request": "start"}, timeout,
                          jsep={"type": "answer", "sdp": _with_candidate(answer, leg.local_address)})

    def _start(self, leg: Leg, remote: SessionDescription) -> None:
        """ICE towards the first IPv4 host candidate; the DTLS role is the one the remote side did not take."""
        candidates = [c for c in remote.all_candidates() if ":" not in c[0]]
        if not candidates:
            raise JanusError("no IPv4 candidate in Janus's SDP")
        leg.dtls_server = remote.dtls_setup() == "active"
        ufrag, pwd = remote.ice_credentials()
        leg.start(remote_ufrag=ufrag, remote_pwd=pwd, remote_fingerprint=remote.dtls_fingerprint(),
                  address=candidates[0])

    async def _user(self, api: JanusApi, user: SimUser) -> None:
        """Publish (if it does), then subscribe; any failure is recorded on the user, never raised."""
        try:
            if user.feed:
                await self._publish(api, user)
            await self._subscribe(api, user)
            user.stage = "signaled"
        except (JanusError, trio.TooSlowError, trio_websocket.ConnectionClosed, KeyError, IndexError,
                ValueError) as exc:
            user.failed = f"{user.stage}: {type(exc).__name__}: {exc}"[:200]

    async def _room(self, room: int, t0: float, nursery: trio.Nursery) -> None:
        """Open the room's WebSocket, create the room, then start its users at their join slots."""
        ws = await trio_websocket.connect_websocket_url(nursery, self.spec.url, subprotocols=["janus-protocol"],
                                                        message_queue_size=256)
        api = JanusApi(ws)
        self.apis.append(api)
        nursery.start_soon(api.reader)
        session = await api.session(self.spec.join_timeout)
        handle = await api.attach(session, self.spec.join_timeout)
        await api.message(session, handle, {"request": "create", "room": ROOM_BASE + room,
                                            "publishers": self.spec.users, "audiocodec": "opus",
                                            "description": f"bench room {room}"}, self.spec.join_timeout)
        # Join slots: every room's publishers first (slot = index * rooms + room), then the listeners.
        for user in (u for u in self.users if u.room == room):
            slot = user.index * self.spec.rooms + room
            await trio.sleep_until(t0 + slot / self.spec.join_rate)
            nursery.start_soon(self._user, api, user)

    def progress(self, cpu0: float) -> dict[str, Any]:
        snap = self.engine.snapshot([leg for u in self.users for leg in u.legs])
        snap.update(connected=sum(u.connected() for u in self.users), expected_legs=self.expected_legs,
                    failed=sum(1 for u in self.users if u.failed), cpu_seconds=round(time.process_time() - cpu0, 3))
        return snap

    async def run(self) -> dict[str, Any]:
        cpu0 = time.process_time()
        t0 = trio.current_time() + 0.2
        async with trio.open_nursery() as outer:
            outer.start_soon(self.engine.receive_loop)
            outer.start_soon(self.engine.send_loop)
            outer.start_soon(self.engine.maintain_loop)

            async def reporter() -> None:
                while True:
                    await trio.sleep(1.0)
                    self.report("progress", self.progress(cpu0))

            outer.start_soon(reporter)
            async with trio.open_nursery() as rooms:
                for room in range(self.spec.rooms):
                    rooms.start_soon(self._room, room, t0, rooms)
                await trio.sleep_until(t0 + self.spec.duration)
                self.engine.stop_sending()
                await trio.sleep(0.5)  # in-flight packets arrive before counting
                result = self.result(time.process_time() - cpu0)
                rooms.cancel_scope.cancel()
            outer.cancel_scope.cancel()
        for user in self.users:
            for leg in user.legs:
                leg.close()
        self.report("result", result)
        return result

    def result(self, cpu_seconds: float) -> dict[str, Any]:
        """Loss (sender-side delivery, and RFC 3550), who heard whom (decrypted stamps), failures, Janus events."""
        legs = [leg for u in self.users for leg in u.legs]
        expected, lost = self.engine.delivery(legs)
        heard = {u.number: sorted({st.sender // 4 for leg in u.legs for st in leg.streams.values()
                                   if st.sender >= 0}) for u in self.users}
        errors: dict[str, int] = {}
        for u in self.users:
            if u.failed:
                errors[u.failed] = errors.get(u.failed, 0) + 1
        events: dict[str, int] = {}
        for api in self.apis:
            for kind, n in api.events.items():
                events[kind] = events.get(kind, 0) + n
        snap = self.engine.snapshot(legs)
        return {
            "server": "janus", "rooms": self.spec.rooms, "users_per_room": self.spec.users,
            "publishers_per_room": self.spec.publishers, "users": len(self.users),
            "failed": sum(1 for u in self.users if u.failed), "errors": errors,
            "legs_expected": self.expected_legs, "legs_connected": sum(u.connected() for u in self.users),
            "leg_failures": dict(self.engine.stats.failures), "leg_states": _leg_states(self.users),
            "srtp_profiles": sorted({leg.srtp.profile.decode() for leg in legs if leg.srtp is not None}),
            "delivery_expected": expected, "delivery_lost": lost, "loss": lost / expected if expected else 0.0,
            "rfc3550_loss": snap["lost"] / snap["expected"] if snap["expected"] else 0.0,
            "heard": {str(k): v for k, v in heard.items()}, "janus_events": events,
            "counters": snap, "cpu_seconds": round(cpu_seconds, 3), "media_engine": self.engine.media,
        }


def _leg_states(users: list[SimUser]) -> dict[str, int]:
    """How many legs ended in each (role, state): "publish:connected", "subscribe:dtls", ..."""
    out: dict[str, int] = {}
    for user in users:
        for n, leg in enumerate(user.legs):
            role = "publish" if user.feed and n == 0 else "subscribe"
            key = f"{role}:{leg.state}" + (f" ({leg.error})" if leg.error else "")
            out[key] = out.get(key, 0) + 1
    return out


async def run_driver(spec: DriverSpec, report: Report) -> dict[str, Any]:
    """Run ``spec`` against the Janus at ``spec.url``; reports ``progress`` every second and the ``result``."""
    return await Driver(spec, report).run()
