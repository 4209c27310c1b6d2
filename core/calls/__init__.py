"""callsd.core.calls: the calls state machine and everything that records and replays it.

The machine (``machine``) and the steps its handlers share (``steps``), its inputs (``events``) and outputs
(``outputs``), the state it keeps (``state``), the snapshot codec (``snapshot``), checkpoints (``checkpoint``), the
event-log record codec (``eventlog``) and pure replay (``replay``). Imports run one way, with no cycle:
replay -> checkpoint -> machine -> steps/snapshot -> state -> events; eventlog -> events/outputs. Nothing here knows
about SDP or RTP; those are the other room, ``callsd.core.wire``. ``callsd.core`` re-exports the public names.
"""
