"""Server CPU per join in the pieces past the socket and the hub, in process: the event log's records, the media
plane's negotiation and routes, ICE checks. One tree against another, alternated, each in its own process.

    .venv/bin/python -m bench.join_pieces [--calls 20 --users 8 --rounds 3] [--base-tree DIR] [--output FILE]

What one join into an ``--users`` call does in each piece, as the server does it (issue 13 part 2,
docs/performance.md "Joins at the end of session 7"):

- ``record_us``: the two records of a join to held (``JoinCall``, ``PublishTrack``) made and encoded as the
  recorder and the store do it (``make_record``, then ``encode_record``), with the outputs the real calls machine
  gave for them (the machine's own work is not timed);
- ``plane_offer_us``: the session opened and the client's first offer (one audio section and, where the tree's
  load tool can, its 8 audio slots as ``recvonly`` sections named by ``slot_mids``, protocol 1.4; else asking for 8
  slots, which the server then offers) answered by ``MediaPlane.handle_signal``; ``plane_routes_us``: ``MediaPlane.apply`` of the machine's ``RouteAdded`` outputs for that join (the
  joiner's track to the others, theirs to the joiner, each on an audio slot); ``plane_answer_us``: the client's
  answers to the server's offers of that join, applied (built by the load tool's SDP code, outside the timing);
  ``rounds_per_join``: offer/answer rounds per join, the joiner's own and every server offer that join made
  (``--old-offer``: ask for slots by number in this tree too). The load tool's offer carries the camera's
  ``inactive`` video section with Chromium's 23 formats (app/loadtest/camera_slot.py, since session 10) as the web
  client's does; ``--no-camera-slot`` takes it out (the tool's offer before), ``--camera-slot-ab`` runs both in
  this tree, alternated, and ``--browser-offer`` sends the recorded Chromium offer itself;
- ``ice_check_us``: one ICE binding request from a known peer answered by the UDP endpoint's STUN handler (parse,
  MESSAGE-INTEGRITY, FINGERPRINT, the success response built and sent to a loopback socket);
- ``dtls_handshake_us``: the passive (server) side of one DTLS handshake with a fresh client (ECDHE, ECDSA
  certificates both ways, the fingerprint check, the SRTP key export, the connection swapped for its records), the
  flights carried in memory: what ``DtlsSession.feed`` costs the server per join.

CPU time (``time.process_time``), per join (per check for ICE, per handshake for DTLS); in each process the least of ``--repeats`` passes,
then the medians of the rounds per tree.

``--instructions``: instead of CPU time, instructions counted by valgrind's callgrind (``Ir``), which the host's
load cannot move: each piece run alone in a child under callgrind at two sizes (``--calls`` and twice that; 100
and 200 ICE checks; 20 and 40 DTLS handshakes), the difference divided by the extra joins (checks, handshakes), so
start-up and imports cancel out. The DTLS figure counts both sides of each handshake (the client is a
`DtlsSession` too). One run per tree; the plane figure also counts what the bench does around the timed calls
(the load tool's SDP, the calls machine), the same in both trees. Counts of unchanged code moved by up to 6 %
between trees (the ICE check at 100 and 200 checks, session 9), so smaller differences are not read.
"""

from __future__ import annotations

import argparse
import inspect
import json
import secrets
import socket
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

FP = "sha-256 " + ":".join(["AB"] * 32)


_BROWSER_OFFER = "tests/media/data/offer_chromium_slots.sdp"  # the web client's first offer, recorded from Chromium


@dataclass(frozen=True, slots=True)
class OfferShape:
    """Each client's first offer, as the command line chose it."""

    old: bool = False  # ``--old-offer``: slots asked for by number, not in the offer
    browser: bool = False  # ``--browser-offer``: the recorded Chromium offer instead of the load tool's
    camera_slot: bool = True  # ``--no-camera-slot`` clears it: the tool's offer less its inactive camera section

    def args(self) -> tuple[str, ...]:
        """The options that give a child this shape."""
        return (*(("--old-offer",) if self.old else ()), *(("--browser-offer",) if self.browser else ()),
                *(() if self.camera_slot else ("--no-camera-slot",)))


def _browser_offer() -> tuple[str, list[str]]:
    """The recorded Chromium offer and the mids of its receive slots (its ``recvonly`` audio sections)."""
    import os

    from callsd.core.wire.sdp import Direction, parse_sdp

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, _BROWSER_OFFER)) as f:
        text = f.read()
    return text, [m.mid or "" for m in parse_sdp(text).media if m.kind == "audio" and m.direction is Direction.RECVONLY]


def _without_section(sdp: str, mid: str) -> str:
    """``sdp`` less its m-section ``mid`` (and that mid in its BUNDLE group): the load tool's offer as it was
    before it carried the camera's inactive section (``--no-camera-slot``), the other mids unchanged."""
    head, *sections = sdp.split("\r\nm=")
    kept = [s for s in sections if f"\r\na=mid:{mid}\r\n" not in s]
    head = "\r\n".join(" ".join(w for w in line.split(" ") if w != mid) if line.startswith("a=group:BUNDLE ")
                        else line for line in head.split("\r\n"))
    return "\r\nm=".join([head, *kept])


def _records_and_plane(calls: int, users: int, shape: OfferShape) -> dict[str, float]:
    from callsd.adapters.media.events import SendSignal
    from callsd.adapters.media.plane import MediaPlane, PlaneConfig
    from callsd.app.loadtest import sdp as tool_sdp
    from callsd.app.loadtest.sdp import LocalTrack, build_answer, build_offer, parse_sdp
    from callsd.core import encode_record, make_record
    from callsd.core.calls.events import JoinCall, PublishTrack, TrackKind
    from callsd.core.calls.machine import CallsMachine
    from callsd.core.calls.outputs import RouteAdded

    sent: list[Any] = []
    plane = MediaPlane(PlaneConfig(ice_port_udp=0), sent.append)
    plane.network.candidate = lambda: (("127.0.0.1",), 50000)  # type: ignore[method-assign]
    machine = CallsMachine()
    in_offer = not shape.old and "receive_slots" in inspect.signature(build_offer).parameters
    browser_offer, browser_slots = _browser_offer() if shape.browser else ("", [])
    record_s = offer_s = routes_s = answer_s = 0.0
    server_offers = 0
    head, seq, at = "0" * 64, 0, 1000
    for c in range(calls):
        channel = f"ch{c}"
        for u in range(users):
            sid = f"c{c}u{u}"
            at += 10
            tracks = [LocalTrack(kind="audio", ssrc=1000 + u, stream_id=f"st-{sid}", track_id=f"tr-{sid}")]
            slots: dict[str, Any] = {"receive_slots": 8} if in_offer else {}
            offer = build_offer(session_id=1, tracks=tracks, ufrag=secrets.token_hex(4), pwd=secrets.token_hex(16),
                                fingerprint=FP, cname=sid, candidate=("127.0.0.1", 9), **slots)
            # (the base tree's tool may predate the camera section and `slot_mids`: this bench runs on its code)
            camera_mid = tool_sdp.camera_slot_mid(tracks) if hasattr(tool_sdp, "camera_slot_mid") else ""
            if camera_mid and not shape.camera_slot:
                offer = _without_section(offer, camera_mid)
            msg: dict[str, Any] = {"type": "offer", "sdp": offer, "audio_slots": 8}
            if in_offer:  # (a tree whose tool has no slot_mids put its slots right after the one track)
                msg["slot_mids"] = (tool_sdp.slot_mids(tracks, 8) if hasattr(tool_sdp, "slot_mids")
                                    else [str(n + 1) for n in range(8)])
            if shape.browser:
                msg = {"type": "offer", "sdp": browser_offer, "slot_mids": browser_slots}
            sent.clear()
            t0 = time.process_time()
            plane.open_session(sid, channel)
            plane.handle_signal(sid, msg)
            offer_s += time.process_time() - t0
            routes: list[Any] = []
            for event in (JoinCall(at=at, session_id=sid, user_id=f"user-{sid}", channel_id=channel,
                                   call_id=f"call-{c}"),
                          PublishTrack(at=at + 1, session_id=sid, track_id=f"{sid}_0", kind=TrackKind.AUDIO)):
                outputs = machine.handle(event)
                routes += [o for o in outputs if isinstance(o, RouteAdded)]
                t0 = time.process_time()
                seq += 1
                record = make_record(seq, event, outputs, prev=head)
                head = record.hash
                encode_record(record)
                record_s += time.process_time() - t0
            t0 = time.process_time()
            plane.apply(routes)
            routes_s += time.process_time() - t0
            offers = [e for e in sent if isinstance(e, SendSignal) and e.msg.get("type") == "offer"]
            server_offers += len(offers)
            for e in offers:
                answer = build_answer(parse_sdp(e.msg["sdp"]), session_id=1, version=3, tracks=tracks, ufrag="abcd",
                                      pwd="p" * 32, fingerprint=FP, cname=e.session_id)
                t0 = time.process_time()
                plane.handle_signal(e.session_id, {"type": "answer", "sdp": answer})
                answer_s += time.process_time() - t0
    joins = calls * users
    return {"record_us": record_s / joins * 1e6, "plane_offer_us": offer_s / joins * 1e6,
            "plane_routes_us": routes_s / joins * 1e6, "plane_answer_us": answer_s / joins * 1e6,
            "rounds_per_join": 1 + server_offers / joins}


def _ice_checks(checks: int) -> dict[str, float]:
    from aioice import stun
    from callsd.adapters.media.dtls import Certificate
    from callsd.adapters.media.transport import TransportConfig, UdpEndpoint

    class NoHandler:
        def on_connected(self, peer: Any) -> None: ...
        def on_closed(self, peer: Any, reason: str) -> None: ...
        def on_rtp(self, peer: Any, plain: bytes) -> None: ...
        def on_rtcp(self, peer: Any, plain: bytes) -> None: ...

    ep = UdpEndpoint(TransportConfig(port=0), NoHandler(), certificate=Certificate.generate())
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.setblocking(False)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.setblocking(False)
    ep._sock = server  # noqa: SLF001 - the bench stands in for serve()
    ep.add_peer("s0", "srvu", "srvpwd" * 4, "cliu", "clipwd" * 4, FP)
    wires = []
    for n in range(checks):
        msg = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST,
                           transaction_id=n.to_bytes(12, "big"))
        msg.attributes["USERNAME"] = "srvu:cliu"
        msg.attributes["PRIORITY"] = 1853824767
        msg.attributes["ICE-CONTROLLING"] = 0x1234
        msg.attributes["USE-CANDIDATE"] = None
        msg.add_message_integrity(("srvpwd" * 4).encode())
        msg.add_fingerprint()
        wires.append(bytes(msg))
    source = client.getsockname()
    total = 0.0
    answered = 0
    for start in range(0, checks, 64):
        t0 = time.process_time()
        for wire in wires[start:start + 64]:
            ep.handle_datagram(wire, source)
        total += time.process_time() - t0
        while True:
            try:
                client.recv(2048)
            except BlockingIOError:
                break
            answered += 1
    server.close()
    client.close()
    if answered != checks:
        raise SystemExit(f"ice: {answered} of {checks} checks answered")
    return {"ice_check_us": total / checks * 1e6}


def _dtls_handshakes(count: int) -> dict[str, float]:
    from callsd.adapters.media.dtls import Certificate, DtlsSession

    server_cert, client_cert = Certificate.generate(), Certificate.generate()
    server_ctx, client_ctx = server_cert.context(), client_cert.context()
    total = 0.0
    for _ in range(count):
        server = DtlsSession(server_ctx, server=True, remote_fingerprint=client_cert.fingerprint)
        client = DtlsSession(client_ctx, server=False, remote_fingerprint=server_cert.fingerprint)
        client.start()
        for _flight in range(6):
            out, client._out = client._out, []  # noqa: SLF001 - the bench carries the flights by hand
            for datagram in out:
                t0 = time.process_time()
                server.feed(datagram)
                total += time.process_time() - t0
            out, server._out = server._out, []  # noqa: SLF001
            for datagram in out:
                client.feed(datagram)
            if server.done and client.done:
                break
        if not (server.done and client.done):
            raise SystemExit("dtls: a handshake did not complete")
    return {"dtls_handshake_us": total / count * 1e6}


def _core_pieces(calls: int, users: int) -> dict[str, float]:
    """The pure core's own share of a join, each part timed alone (``--core``): what compiling core/ with mypyc
    (docs/adr/0053) can move. Per join: Chromium's first offer parsed with its sections known (as the server sees
    a browser's offer after the first) and from nothing (the known-sections memo emptied before each parse), the
    same offer answered by a fresh ``Negotiator`` (parse, negotiation, the answer's text), the calls machine's two
    inputs of a join (``JoinCall``, ``PublishTrack``) in ``--users`` calls, their two records made and encoded;
    per ICE check: a binding request parsed and its success response built (core/wire/stun.py)."""
    import hashlib
    import hmac
    import zlib

    from callsd.core import encode_record, make_record
    from callsd.core.calls.events import InputEvent, JoinCall, PublishTrack, TrackKind
    from callsd.core.calls.machine import CallsMachine
    from callsd.core.calls.outputs import OutputEvent
    from callsd.core.wire import sdp_parse
    from callsd.core.wire.negotiation import LocalTransport, Negotiator
    from callsd.core.wire.sdp import parse_sdp
    from callsd.core.wire.stun import binding_success, parse_binding_request

    offer, _slots = _browser_offer()
    joins = calls * users
    out: dict[str, float] = {}
    parse_sdp(offer)
    t0 = time.process_time()
    for _ in range(joins):
        parse_sdp(offer)
    out["core_parse_offer_known_us"] = (time.process_time() - t0) / joins * 1e6
    cold = 0.0
    for _ in range(joins):
        sdp_parse._KNOWN.clear()  # noqa: SLF001 - the bench empties the memo to time the parse from nothing
        t0 = time.process_time()
        parse_sdp(offer)
        cold += time.process_time() - t0
    out["core_parse_offer_cold_us"] = cold / joins * 1e6
    transport = LocalTransport(ice_ufrag="srvu", ice_pwd="p" * 24, fingerprint=FP, host="127.0.0.1", port=50000)
    t0 = time.process_time()
    for n in range(joins):
        Negotiator(transport=transport, session_id=n + 1).handle_offer(offer)
    out["core_answer_offer_us"] = (time.process_time() - t0) / joins * 1e6
    machine = CallsMachine()
    events = [(JoinCall(at=10 * n, session_id=f"c{n // users}u{n % users}", user_id=f"user-{n}",
                        channel_id=f"ch{n // users}", call_id=f"call-{n // users}"),
               PublishTrack(at=10 * n + 1, session_id=f"c{n // users}u{n % users}", track_id=f"t{n}",
                            kind=TrackKind.AUDIO)) for n in range(joins)]
    outputs: list[tuple[InputEvent, list[OutputEvent]]] = []
    t0 = time.process_time()
    for join, publish in events:
        outputs.append((join, machine.handle(join)))
        outputs.append((publish, machine.handle(publish)))
    out["core_machine_join_us"] = (time.process_time() - t0) / joins * 1e6
    head = "0" * 64
    t0 = time.process_time()
    for seq, (event, outs) in enumerate(outputs):
        record = make_record(seq + 1, event, outs, prev=head)
        head = record.hash
        encode_record(record)
    out["core_records_us"] = (time.process_time() - t0) / joins * 1e6
    key = b"k" * 24
    username = b"srvu:cliu"
    body = (b"\x00\x06" + len(username).to_bytes(2, "big") + username + b"\x00" * (-len(username) & 3)
            + b"\x00\x25\x00\x00")  # USERNAME, USE-CANDIDATE
    checks = 4 * joins
    wires = []
    for n in range(checks):
        head20 = b"\x00\x01" + (len(body) + 24).to_bytes(2, "big") + b"\x21\x12\xa4\x42" + n.to_bytes(12, "big")
        mac = hmac.new(key, head20 + body, hashlib.sha1).digest()
        signed = body + b"\x00\x08\x00\x14" + mac
        head20 = head20[:2] + (len(signed) + 8).to_bytes(2, "big") + head20[4:]
        crc = zlib.crc32(head20 + signed) ^ 0x5354554E
        wires.append(head20 + signed + b"\x80\x28\x00\x04" + crc.to_bytes(4, "big"))
    t0 = time.process_time()
    for wire in wires:
        request = parse_binding_request(wire)
        binding_success(request.transaction_id, b"\x7f\x00\x00\x01", 50000, key)
    out["core_stun_check_us"] = (time.process_time() - t0) / checks * 1e6
    return out


def _only(piece: str, calls: int, users: int, shape: OfferShape) -> dict[str, float]:
    """One piece at one size, once, warmed up by nothing: what ``--instructions`` counts under callgrind."""
    if piece == "plane":
        return _records_and_plane(calls, users, shape)
    if piece == "ice":
        return _ice_checks(calls)
    return _dtls_handshakes(calls)


# piece -> (what one unit of its size is, the figures it yields in the timed run)
_COUNTED = {"plane": ("joins", ("record_us", "plane_offer_us", "plane_routes_us", "plane_answer_us")),
            "ice": ("checks", ("ice_check_us",)), "dtls": ("handshakes", ("dtls_handshake_us",))}


def _instructions(calls: int, users: int, shape: OfferShape) -> dict[str, float]:
    """Instructions per join (check, handshake) of each piece, run in this tree under callgrind (module docstring):
    the whole child counted at two sizes, the difference divided by the extra units."""
    import os
    import re
    import subprocess
    import sys
    import tempfile

    sizes = {"plane": calls, "ice": 100, "dtls": 20}
    out: dict[str, float] = {}
    for piece, size in sizes.items():
        counts = []
        for scale in (1, 2):
            with tempfile.TemporaryDirectory() as tmp:
                dump = os.path.join(tmp, "callgrind.out")
                subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={dump}", sys.executable,
                                "-m", "bench.join_pieces", "--_only", piece, "--calls", str(size * scale), "--users",
                                str(users), *shape.args()],
                               capture_output=True, text=True, check=True)
                with open(dump) as f:
                    total = re.search(r"^(?:totals|summary): (\d+)", f.read(), re.M)
            if total is None:
                raise SystemExit("callgrind wrote no totals")
            counts.append(int(total.group(1)))
        units = size * (users if piece == "plane" else 1)
        out[f"{piece}_instructions_per_{_COUNTED[piece][0][:-1]}"] = round((counts[1] - counts[0]) / units)
    return out


def _child(calls: int, users: int, repeats: int, shape: OfferShape, core: bool = False) -> dict[str, float]:
    """Each piece's least figure over ``repeats`` passes (a fresh plane each): on a shared host the least is the
    one the other processes disturbed least. ``core``: the pure core's parts alone (``_core_pieces``)."""
    if core:
        _core_pieces(2, users)  # warm up
        core_passes = [_core_pieces(calls, users) for _ in range(repeats)]
        return {k: min(p[k] for p in core_passes) for k in core_passes[0]}
    _records_and_plane(2, users, shape)  # warm up: imports, first-use compiles, caches
    _ice_checks(200)
    _dtls_handshakes(10)
    passes = [{**_records_and_plane(calls, users, shape), **_ice_checks(4000), **_dtls_handshakes(200)}
              for _ in range(repeats)]
    return {k: min(p[k] for p in passes) for k in passes[0]}


def _alternate_offers(rounds: int, children: dict[str, list[str]]) -> Iterator[dict[str, Any]]:
    """Like ``bench.joins.alternate_trees`` within this tree: each child command line (name -> argv) run ``rounds``
    times, alternated, each run's figures under its name (the "tree" key, so the medians are taken alike)."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH", "")])))
    for n in range(rounds):
        for name, argv in children.items():
            out = subprocess.run([sys.executable, *argv], env=env, capture_output=True, text=True, check=True)
            yield {"tree": name, "round": n, **json.loads(out.stdout.strip().splitlines()[-1]),
                   "loadavg": [round(x, 2) for x in os.getloadavg()]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.join_pieces", description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--users", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3, help="passes per process; each piece's least is kept")
    p.add_argument("--base-tree", default="", metavar="DIR", help="another checkout's pieces against this one's")
    p.add_argument("--output", default="")
    p.add_argument("--old-offer", action="store_true", help="clients ask for slots by number (no slot_mids)")
    p.add_argument("--browser-offer", action="store_true",
                   help=f"every client's first offer is the one Chromium made ({_BROWSER_OFFER}): ten sections, "
                        f"the camera's with Chromium's 23 video formats, eight receive slots")
    p.add_argument("--no-camera-slot", action="store_true",
                   help="the load tool's offer less its inactive camera section (the tool's offer before session 10)")
    p.add_argument("--camera-slot-ab", action="store_true",
                   help="this tree only: the tool's offer with its camera section against without, alternated")
    p.add_argument("--instructions", action="store_true",
                   help="count instructions under callgrind instead of timing (see the module docstring)")
    p.add_argument("--core", action="store_true",
                   help="the pure core's parts of a join alone (SDP parse and answer, the calls machine, the "
                        "records, a STUN check): what compiling core/ moves (docs/adr/0053)")
    p.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--_only", choices=tuple(_COUNTED), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    shape = OfferShape(old=a.old_offer, browser=a.browser_offer, camera_slot=not a.no_camera_slot)
    if a._only:
        print(json.dumps(_only(a._only, a.calls, a.users, shape)))
        return 0
    if a._child:
        figures = _instructions(a.calls, a.users, shape) if a.instructions else _child(
            a.calls, a.users, a.repeats, shape, a.core)
        print(json.dumps(figures))
        return 0
    from bench.joins import alternate_trees

    child = ["-m", "bench.join_pieces", "--_child", "--calls", str(a.calls), "--users", str(a.users), "--repeats",
             str(a.repeats), *(("--instructions",) if a.instructions else ()), *(("--core",) if a.core else ())]
    if a.camera_slot_ab:
        if a.base_tree or a.browser_offer or a.no_camera_slot:
            p.error("--camera-slot-ab compares two offers of this tree's tool: no --base-tree, --browser-offer or "
                    "--no-camera-slot")
        with_slot = OfferShape(old=a.old_offer)
        without = OfferShape(old=a.old_offer, camera_slot=False)
        source = _alternate_offers(a.rounds, {"tool offer, no camera section": [*child, *without.args()],
                                              "tool offer": [*child, *with_slot.args()]})
    else:
        source = alternate_trees(a.base_tree, a.rounds, [*child, *shape.args()])
    runs: list[dict[str, Any]] = []
    for run in source:
        runs.append(run)
        print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in run.items()}), flush=True)
    trees = dict.fromkeys(r["tree"] for r in runs)
    pieces = [k for k in runs[0] if k.endswith(("_us", "_per_join")) or "_instructions_per_" in k]
    medians = {name: {k: round(statistics.median(r[k] for r in runs if r["tree"] == name), 1) for k in pieces}
               for name in trees}
    print(json.dumps({"medians": medians}))
    if a.output:
        with open(a.output, "w") as f:
            json.dump({"runs": runs, "medians": medians}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
