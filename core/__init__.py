"""callsd.core: the pure, I/O-free call state machine, its event codecs and the media codecs.

Nothing in this package reads a clock, draws randomness or touches a socket; see docs/adr/0001.
The names below are the call core's public API (``__all__``): the machine and its table, every input (with the
bases ``InputEvent``, ``SessionInput``, ``TargetedInput``) and output (with the kind bases ``CallFact``,
``RoutingChange``, ``TimerRequest``, ``Rejection``), the log codec (``canonical_json`` included), snapshots and
replay. Media codecs are imported from their own modules (``callsd.core.wire``).
"""

from .calls.checkpoint import checkpoint, from_checkpoint
from .calls.eventlog import (
    LOG_VERSION,
    EventLogError,
    Record,
    canonical_json,
    decode_event,
    decode_lines,
    decode_output,
    decode_record,
    encode_event,
    encode_output,
    encode_record,
    make_record,
    outputs_digest,
)
from .calls.events import *  # noqa: F403
from .calls.events import __all__ as _events_all
from .calls.machine import TRANSITIONS, CallsMachine, CallView, Guard, Transition
from .calls.outputs import *  # noqa: F403
from .calls.outputs import __all__ as _outputs_all
from .calls.replay import Mismatch, ReplayResult, replay
from .calls.snapshot import SNAPSHOT_VERSION, SnapshotError
from .calls.state import Config, ParticipantView, Route, reconnect_key
from .errors import CallsdError, LocalProtocolError, RemoteProtocolError

__all__ = [
    "CallsdError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "CallsMachine",
    "CallView",
    "Guard",
    "Transition",
    "TRANSITIONS",
    "Config",
    "ParticipantView",
    "Route",
    "reconnect_key",
    "SNAPSHOT_VERSION",
    "SnapshotError",
    "checkpoint",
    "from_checkpoint",
    "LOG_VERSION",
    "EventLogError",
    "Record",
    "canonical_json",
    "decode_event",
    "decode_lines",
    "decode_output",
    "decode_record",
    "encode_event",
    "encode_output",
    "encode_record",
    "make_record",
    "outputs_digest",
    "Mismatch",
    "ReplayResult",
    "replay",
    *_events_all,
    *_outputs_all,
]
