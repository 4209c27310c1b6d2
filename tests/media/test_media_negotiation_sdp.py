"""The server's answers and offers written section by section from per-shape templates are the text the model
gives: ``describe(...) == build_sdp(description(...))`` for any sections (core/wire/negotiation_sdp.py).

The sections are drawn so that alike ones really share templates: codecs and header extensions come from small
pools of tuples (shared by identity, as the negotiator shares them, and equal tuples that are distinct objects),
tracks with and without RTX, every direction, rejected sections, simulcast rids, IPv4/IPv6 hosts, extra hosts and
ICE-TCP candidates, offers and answers.
"""

from __future__ import annotations

from dataclasses import dataclass

from callsd.core.wire.negotiation_results import LocalTransport, OutgoingTrack
from callsd.core.wire.negotiation_sdp import describe, description
from callsd.core.wire.sdp import Codec, Direction, Extmap, build_sdp, parse_sdp
from hypothesis import given
from hypothesis import strategies as st

OPUS = Codec(payload_type=111, name="opus", clock_rate=48000, channels=2, fmtp="minptime=10;useinbandfec=1",
             feedback=("transport-cc",))
VP8 = Codec(payload_type=96, name="VP8", clock_rate=90000, feedback=("nack", "nack pli", "ccm fir"))
RTX = Codec(payload_type=97, name="rtx", clock_rate=90000, fmtp="apt=96")
CODECS = [(OPUS,), (OPUS,), (VP8, RTX), (VP8,), (Codec(payload_type=0, name="PCMU", clock_rate=8000),)]
EXTMAPS = [(), (Extmap(id=1, uri="urn:ietf:params:rtp-hdrext:ssrc-audio-level"),),
           (Extmap(id=1, uri="urn:ietf:params:rtp-hdrext:ssrc-audio-level"),),
           (Extmap(id=3, uri="http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
                   direction=Direction.SENDRECV, attributes="x"),)]


@dataclass(slots=True)
class Section:
    mid: str
    kind: str
    formats: tuple[str, ...]
    rejected: bool
    codecs: tuple[Codec, ...]
    extmaps: tuple[Extmap, ...]
    client_direction: Direction
    local: OutgoingTrack | None
    rsize: bool
    rids: tuple[str, ...]


tokens = st.text(alphabet="abcdefXYZ0123456789-_", min_size=1, max_size=8)
tracks = st.builds(OutgoingTrack, track_id=tokens, stream_id=tokens, kind=st.sampled_from(["audio", "video"]),
                   ssrc=st.integers(1, 2**32 - 1), codec=st.just(OPUS),
                   rtx_ssrc=st.none() | st.integers(1, 2**32 - 1), cname=tokens)


@st.composite
def sections(draw: st.DrawFn) -> list[Section]:
    out = []
    for n in range(draw(st.integers(1, 12))):
        out.append(Section(
            mid=draw(st.sampled_from([str(n), f"s{n}", f"m-{n}"])), kind=draw(st.sampled_from(["audio", "video",
                                                                                               "application"])),
            formats=draw(st.sampled_from([(), ("111",), ("webrtc-datachannel",)])), rejected=draw(st.booleans()),
            codecs=draw(st.sampled_from(CODECS)), extmaps=draw(st.sampled_from(EXTMAPS)),
            client_direction=draw(st.sampled_from(list(Direction))), local=draw(st.none() | tracks),
            rsize=draw(st.booleans()), rids=draw(st.sampled_from([(), ("h", "m", "l")]))))
    return out


transports = st.builds(LocalTransport, ice_ufrag=tokens, ice_pwd=tokens, fingerprint=st.just("sha-256 " + "AB:" * 31
                                                                                                + "CD"),
                       host=st.sampled_from(["127.0.0.1", "::1", "192.0.2.7"]), port=st.integers(1, 65535),
                       extra_hosts=st.sampled_from([(), ("10.0.0.2",), ("10.0.0.2", "fe80::1")]),
                       tcp_port=st.sampled_from([0, 8443]))


@given(slots=sections(), t=transports, session_id=st.integers(0, 2**62), version=st.integers(0, 2**32),
       allow_mixed=st.booleans(), offer=st.booleans(), setup=st.sampled_from(["active", "passive", "actpass"]))
def test_the_templates_write_what_the_model_writes(slots: list[Section], t: LocalTransport, session_id: int,
                                                    version: int, allow_mixed: bool, offer: bool, setup: str) -> None:
    kw = {"session_id": session_id, "version": version, "allow_mixed": allow_mixed, "offer": offer, "setup": setup}
    model = description(slots, t, **kw)  # type: ignore[arg-type]
    text = describe(slots, t, **kw)  # type: ignore[arg-type]
    assert text == build_sdp(model)


def test_alike_slots_share_one_template_and_keep_their_own_lines() -> None:
    """A join's answer: its own section and eight slots, each slot with its own mid, msid and SSRCs."""
    t = LocalTransport(ice_ufrag="u", ice_pwd="p" * 22, fingerprint="sha-256 " + "AB:" * 31 + "CD", host="127.0.0.1",
                       port=50000)
    own = Section("0", "audio", ("111",), False, CODECS[0], EXTMAPS[1], Direction.SENDONLY, None, True, ())
    slots = [own] + [Section(str(n), "audio", ("111",), False, CODECS[0], EXTMAPS[1], Direction.RECVONLY,
                             OutgoingTrack(track_id=f"t{n}", stream_id=f"st{n}", kind="audio", ssrc=1000 + n,
                                           codec=OPUS), True, ()) for n in range(1, 9)]
    text = describe(slots, t, session_id=1, version=2, allow_mixed=True, offer=False, setup="passive")
    parsed = parse_sdp(text)
    assert [m.mid for m in parsed.media] == [str(n) for n in range(9)]
    assert [m.direction for m in parsed.media] == [Direction.RECVONLY] + [Direction.SENDONLY] * 8
    assert [m.ssrc_list() for m in parsed.media[1:]] == [(1000 + n,) for n in range(1, 9)]
    assert [m.msids[0].track_id for m in parsed.media[1:]] == [f"t{n}" for n in range(1, 9)]
