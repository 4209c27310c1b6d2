"""callsd.core.wire: the pure media codecs: SDP (``sdp``), offer/answer negotiation (``negotiation``), RTP (``rtp``)
and RTCP (``rtcp``).

Nothing here knows about calls or sessions; the calls machine is the other room, ``callsd.core.calls``. Import the
codecs from their modules (``from callsd.core.wire import sdp``).
"""
