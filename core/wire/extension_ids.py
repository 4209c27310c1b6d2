"""Header extension ids for one session (RFC 8285 under BUNDLE, RFC 9143): which URIs the server keeps, and which
id each URI gets in a server offer.

Ids are session-wide: once the client wrote an id for a URI (any offer or answer, any section, even an offer
ignored for glare) the server never gives that id another URI; a URI takes its bundle id, else the client's, else
the server's earlier one, else Chromium's usual id (``_USUAL_IDS``), else the lowest free id. An id means one URI
for the whole session: Chromium refuses a description that renumbers one ("RTP extension ID reassignment not
supported").
"""

from __future__ import annotations

from collections.abc import Iterable

from .sdp import Extmap, SessionDescription

__all__ = [
    "AUDIO_LEVEL_URI", "MID_URI", "ABS_SEND_TIME_URI", "TWCC_URI", "TOFFSET_URI", "VIDEO_ORIENTATION_URI",
    "KEPT_EXTENSIONS", "OFFERED_EXTENSIONS", "ExtensionIds",
]

AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
TWCC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
TOFFSET_URI = "urn:ietf:params:rtp-hdrext:toffset"
VIDEO_ORIENTATION_URI = "urn:3gpp:video-orientation"
KEPT_EXTENSIONS = {
    "audio": (AUDIO_LEVEL_URI, MID_URI),
    "video": (MID_URI, ABS_SEND_TIME_URI, TOFFSET_URI, VIDEO_ORIENTATION_URI),
}
"""The header extensions the server accepts on the sections a client sends on, per media kind (audio level and mid
for audio; mid, abs-send-time, toffset and video orientation for video)."""
OFFERED_EXTENSIONS = {kind: (*uris, TWCC_URI) for kind, uris in KEPT_EXTENSIONS.items()}
"""What the server offers and keeps in answers, on every section: the kept ones plus transport-wide-cc, whose
sequence number the server stamps on every packet to a receiver (adapters/media/twcc_send.py) and reads on every
packet a publisher sends, to send it transport-cc feedback (adapters/media/twcc_recv.py)."""
# the ids Chromium gives these URIs in its offers (tests/media/data/offer_chromium.sdp): a new URI in a server offer
# takes its usual id when the client has not used that id, so the browser's own next offer agrees with ours
_USUAL_IDS = {AUDIO_LEVEL_URI: 1, ABS_SEND_TIME_URI: 2, TWCC_URI: 3, MID_URI: 4, VIDEO_ORIENTATION_URI: 13,
              TOFFSET_URI: 14}


class ExtensionIds:
    """The id bookkeeping of one session: every id the client wrote -> the URIs it gave it, the client's latest id
    for each URI, and the ids the server itself offered."""

    __slots__ = ("_client", "_client_ids", "_server")

    def __init__(self) -> None:
        self._client: dict[int, set[str]] = {}
        self._client_ids: dict[str, int] = {}
        self._server: dict[int, str] = {}

    def note_client(self, d: SessionDescription) -> None:
        """Remember every id the client wrote in ``d`` (an offer or answer, used or not)."""
        for e in (*d.extmaps, *(e for m in d.media for e in m.extmaps)):
            self._client.setdefault(e.id, set()).add(e.uri)
            self._client_ids[e.uri] = e.id

    def note_offered(self, extmaps: Iterable[Extmap]) -> None:
        """Remember the ids the server offered (the first URI given an id keeps it)."""
        for e in extmaps:
            self._server.setdefault(e.id, e.uri)

    def for_offer(self, bundle: Iterable[Extmap], kind: str) -> tuple[Extmap, ...]:
        """The offered extensions for a new ``kind`` section (``bundle``: the extmaps of the live sections).

        Each URI gets one id for the whole session: the id it has in the bundle, else the client's own id for it
        (even if an offer the client refused used that id for something else), else the id the server offered it
        under before, else Chromium's usual id, else the lowest id; never an id the client or the bundle uses for
        another URI (an extension left without a free id is not offered).
        """
        ids: dict[str, int] = {}
        taken: dict[int, str] = {}
        for e in bundle:
            ids.setdefault(e.uri, e.id)
            taken.setdefault(e.id, e.uri)

        def free(i: int | None, uri: str, *, strict: bool = True) -> bool:
            return (i is not None and 1 <= i <= 14 and taken.get(i, uri) == uri
                    and self._client.get(i, {uri}) == {uri}
                    and (not strict or self._server.get(i, uri) == uri))

        previous = {u: i for i, u in self._server.items()}
        out = []
        for uri in OFFERED_EXTENSIONS[kind]:
            chosen = ids.get(uri)
            if chosen is None:
                # The client's own id for this URI outranks the server's numbering in offers the client refused.
                own = self._client_ids.get(uri)
                chosen = own if free(own, uri, strict=False) else None
                if chosen is None:
                    candidates = (previous.get(uri), _USUAL_IDS.get(uri), *range(1, 15))
                    chosen = next((i for i in candidates if free(i, uri)), None)
                if chosen is None:  # every id is spoken for: give up the server's own past numbering first
                    chosen = next((i for i in range(1, 15) if free(i, uri, strict=False)), None)
                if chosen is None:
                    continue
                taken[chosen] = uri
            out.append(_shared_extmap(chosen, uri))
        return tuple(out)


_EXTMAPS: dict[tuple[int, str], Extmap] = {}  # at most 14 ids x the kept URIs


def _shared_extmap(ident: int, uri: str) -> Extmap:
    """One ``Extmap`` per (id, URI) for every section of every session (they are frozen): ~1 KiB per session."""
    shared = _EXTMAPS.get((ident, uri))
    if shared is None:  # built only the first time: a frozen dataclass's __init__ is the costly part
        shared = _EXTMAPS[ident, uri] = Extmap(id=ident, uri=uri)
    return shared
