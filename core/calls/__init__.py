"""callsd.core.calls: the calls state machine and everything that records and replays it.

The machine (``machine``), its inputs (``events``) and outputs (``outputs``), the state it keeps (``state``), the
snapshot codec (``snapshot``), the event-log record codec (``eventlog``) and pure replay (``replay``). Nothing here
knows about SDP or RTP; those are the other room, ``callsd.core.wire``. ``callsd.core`` re-exports the public names.
"""
