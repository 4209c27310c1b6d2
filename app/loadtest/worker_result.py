"""What a load worker reports at the end of its run: per call loss, jitter, delay and joins, the join phases, the
errors by reason, and the socket drops, all read off the simulated users and the process-wide media engine.

Kept apart from :mod:`.worker`, which drives the users, because it is pure accounting over their final state: it
sends nothing and awaits nothing, and the parent (:mod:`.runner`) merges these dicts across workers.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

from callsd.peer import MediaEngine, summarize, udp_drops

from . import simulcast

if TYPE_CHECKING:  # the worker imports this module to report; only the types are needed here
    from .worker import SimUser, WorkerSpec

__all__ = ["collect_result"]


def _source_start(users: list[SimUser]) -> dict[int, list[int]]:
    starts: dict[int, list[int]] = {}
    for u in users:
        for s in u.own_sources:
            if s.kind == "audio" and s.started_ns:
                starts.setdefault(u.call, []).append(s.started_ns)
    return starts


def collect_result(spec: WorkerSpec, engine: MediaEngine, users: list[SimUser], cpu_seconds: float) -> dict[str, Any]:
    """The worker's figures: per call (loss, jitter, delay, joins), join latencies, delay histogram, errors.

    A user that started but is not connected when the run ends has failed too, named by how far it got.
    """
    for u in users:
        if u.join_started_ns and not u.failed and not (u.leg is not None and u.leg.state == "connected"):
            u.failed = u.timeout_reason() if u.joined else "no_join_ack"
    calls: dict[int, dict[str, Any]] = {}
    join_latencies: list[float] = []
    jitters: list[float] = []
    errors: dict[str, int] = {}
    starts = _source_start(users)
    phases: dict[str, list[float]] = {"websocket_open": [], "join_ack": [], "sdp_answer": [], "media_connected": []}
    for u in users:
        if u.ws_open_ns:
            phases["websocket_open"].append((u.ws_open_ns - u.join_started_ns) / 1e6)
        if u.join_ack_ns and u.ws_open_ns:
            phases["join_ack"].append((u.join_ack_ns - u.ws_open_ns) / 1e6)
        if u.answer_ns and u.offer_sent_ns:
            phases["sdp_answer"].append((u.answer_ns - u.offer_sent_ns) / 1e6)
        if u.legs and u.legs[0].connected_ns and u.answer_ns:
            phases["media_connected"].append((u.legs[0].connected_ns - u.answer_ns) / 1e6)
    for u in users:
        c = calls.setdefault(u.call, {
            "call": u.call, "channel_id": u.channel_id, "users": 0, "joined": 0, "connected": 0, "failed": 0,
            "streams": 0, "expected": 0, "received": 0, "lost": 0, "rfc3550_expected": 0, "rfc3550_lost": 0,
            "e2e_expected": 0, "e2e_lost": 0,
            "jitter_ms": [], "join_ms": [],
            "audio_streams_expected": 0, "audio_streams_received": 0})
        c["users"] += 1
        if u.failed:
            c["failed"] += 1
            errors[u.failed] = errors.get(u.failed, 0) + 1
        elif u.joined:
            c["joined"] += 1
        for code, n in u.errors.items():
            if code != u.failed:
                errors[code] = errors.get(code, 0) + n
        leg = u.leg
        if leg is not None and leg.state == "connected":
            c["connected"] += 1
        audio_received = 0
        if leg is not None:  # what the user hears at the end (after a reconnect or a move: its last leg)
            c["audio_streams_received_last_leg"] = c.get("audio_streams_received_last_leg", 0) + sum(
                1 for st in leg.streams.values() if st.kind == "audio" and st.received > 0)
        for st in (st for any_leg in u.legs for st in any_leg.streams.values()):
            c["streams"] += 1
            c["rfc3550_expected"] += st.expected
            c["received"] += st.received
            c["rfc3550_lost"] += st.lost
            c["e2e_expected"] += st.e2e_expected
            c["e2e_lost"] += st.e2e_lost
            c["jitter_ms"].append(st.jitter_ms)
            jitters.append(st.jitter_ms)
            if st.kind == "audio":
                audio_received += 1
        if leg is None:
            continue
        others = sum(1 for v in users if v.call == u.call and v is not u and v.unmuted and v.leg is not None
                     and v.leg.state == "connected")
        c["audio_streams_expected"] += others
        c["audio_streams_received"] += min(audio_received, others)
        first_audio_ns = u.legs[0].first_audio_ns
        if first_audio_ns:
            own = [s.started_ns for s in u.own_sources if s.kind == "audio" and s.started_ns]
            other_starts = [t for t in starts.get(u.call, []) if t not in own]
            available = min(other_starts) if other_starts else first_audio_ns
            latency = (first_audio_ns - max(u.join_started_ns, available)) / 1e6
            join_latencies.append(latency)
            c["join_ms"].append(latency)
    out_calls = []
    for c in sorted(calls.values(), key=lambda x: x["call"]):
        acc = engine.call_delays.get(c["call"], [0.0, 0, 0.0])
        jit = c.pop("jitter_ms")
        joins = c.pop("join_ms")
        # Loss counted from the senders' side over the whole window (see MediaEngine.delivery): what a user
        # would notice, including streams that stopped. RFC 3550 loss (gaps between received sequence numbers)
        # cannot see a stream that stops, so it is kept apart.
        c["expected"], c["lost"] = engine.delivery([leg for u in users if u.call == c["call"] for leg in u.legs])
        c["loss"] = (c["lost"] / c["expected"]) if c["expected"] else 0.0
        c["rfc3550_loss"] = (c["rfc3550_lost"] / c["rfc3550_expected"]) if c["rfc3550_expected"] else 0.0
        c["e2e_loss"] = (c["e2e_lost"] / c["e2e_expected"]) if c["e2e_expected"] else 0.0
        c["jitter_ms_mean"] = round(sum(jit) / len(jit), 3) if jit else None
        c["jitter_ms_max"] = round(max(jit), 3) if jit else None
        c["delay_ms_mean"] = round(acc[0] / acc[1], 3) if acc[1] else None
        c["delay_ms_max"] = round(acc[2], 3) if acc[1] else None
        c["join_to_first_audio_ms"] = summarize(joins)
        out_calls.append(c)
    return {
        "worker": spec.index,
        "pid": os.getpid(),
        "calls": out_calls,
        "join_latencies_ms": [round(x, 3) for x in join_latencies],
        "join_phases_ms": {k: [round(x, 3) for x in v] for k, v in phases.items()},
        "jitter_ms": [round(x, 4) for x in jitters],
        "delay_histogram": engine.delay.to_json(),
        "errors": errors,
        "failure_samples": [
            {"user": u.number, "call": u.call, "session_id": u.session_id, "failed": u.failed,
             "leg_state": u.leg.state if u.leg is not None else None, "last_messages": u.trace[-12:]}
            for u in users if u.failed
        ][:5],
        "failures_by_stage": dict(engine.stats.failures),
        "counters": engine.snapshot([leg for u in users for leg in u.legs]),
        "reconnects": sum(u.reconnects for u in users),
        "camera_slot_answers": sum(u.camera_slot_answers for u in users),
        "socket_drops": _socket_drops(users),
        "cpu_seconds": round(cpu_seconds, 3),
        "users": len(users),
        "per_url": _per_url(users),
        "simulcast_receivers": simulcast.received_per_receiver(users),
    }


def _per_url(users: list[SimUser]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for u in users:
        c = counts.setdefault(u.ws_url, {"users": 0, "joined": 0, "connected": 0})
        c["users"] += 1
        c["joined"] += int(u.joined and not u.failed)
        c["connected"] += int(u.leg is not None and u.leg.state == "connected")
    return counts


def _socket_drops(users: list[SimUser]) -> dict[str, int]:
    """Kernel receive drops at this worker's user sockets and at the server's RTC socket (cumulative)."""
    mine: set[int] = set()
    server: set[int] = set()
    for u in users:
        if u.leg is None or u.leg.state == "closed":
            continue
        mine.add(u.leg.local_address[1])
        with contextlib.suppress(OSError):
            server.add(u.leg.sock.getpeername()[1])
    drops = udp_drops(mine | server)
    return {"client": sum(v for k, v in drops.items() if k in mine),
            "server": sum(v for k, v in drops.items() if k in server)}
