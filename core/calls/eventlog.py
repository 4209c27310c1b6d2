"""The event-log record codec (pure): inputs to JSON lines and back, and digests of outputs.

Each input the machine accepted (handled without raising; a ``Rejected`` answer counts) is one record::

    {"event":{"at":1000,"call_id":"k","channel_id":"c","session_id":"s","type":"JoinCall","user_id":"u"},
     "out":"<sha256 hex of the canonical JSON of the outputs>","seq":1,"v":1}

*Canonical JSON* is ``json.dumps(x, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` with enums written
as their values and tuples as lists; every event is an object with a ``"type"`` key (its class name) and one key per
field. The digest of an output list is the SHA-256 of the canonical JSON of the list of encoded outputs, so a replay
can prove it produced the very same outputs without the log storing them.

``decode_record`` is the one parser for records from disk: it either returns a ``Record`` or raises
``EventLogError`` naming the line and the reason (corrupt JSON, unknown version, unknown event type, missing, extra
or mistyped fields, a field value the event refuses). Nothing else escapes it (a Hypothesis test feeds it
arbitrary text).
"""

from __future__ import annotations

import enum
import hashlib
import json
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from ..errors import LocalProtocolError, RemoteProtocolError
from .events import INPUT_TYPES, InputEvent
from .outputs import OUTPUT_TYPES, OutputEvent

__all__ = [
    "LOG_VERSION",
    "EventLogError",
    "Record",
    "canonical_json",
    "encode_event",
    "decode_event",
    "encode_output",
    "decode_output",
    "outputs_digest",
    "make_record",
    "encode_record",
    "decode_record",
    "decode_lines",
]

LOG_VERSION = 1


class EventLogError(RemoteProtocolError):
    """A log record could not be decoded. ``line`` is 1-based (or a row id), ``source`` a file name if known."""

    def __init__(self, reason: str, *, line: int | None = None, source: str | None = None) -> None:
        self.reason = reason
        self.line = line
        self.source = source
        super().__init__(self._text())

    def _text(self) -> str:
        where = ":".join(str(x) for x in (self.source, self.line) if x is not None)
        return f"{where}: {self.reason}" if where else self.reason

    def located(self, source: str | None = None, line: int | None = None) -> EventLogError:
        """The same error with a file name and/or line filled in."""
        return EventLogError(
            self.reason, line=self.line if line is None else line, source=self.source if source is None else source
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """One accepted input, its position in the log, and the digest of the outputs it produced."""

    seq: int
    event: InputEvent
    out: str


def _jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _encode(obj: InputEvent | OutputEvent) -> dict[str, Any]:
    cls = type(obj)
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(obj))
    d: dict[str, Any] = {name: _jsonable(getattr(obj, name)) for name in names}
    d["type"] = type(obj).__name__
    return d


def encode_event(event: InputEvent) -> dict[str, Any]:
    return _encode(event)


def encode_output(output: OutputEvent) -> dict[str, Any]:
    return _encode(output)


def outputs_digest(outputs: Sequence[OutputEvent]) -> str:
    """SHA-256 hex of the canonical JSON of the encoded outputs (the record's ``out``)."""
    text = canonical_json([_encode(o) for o in outputs])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# Field types per event class, resolved once: {"JoinCall": {"at": int, "channel_id": str, ...}}.
_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    h = _HINTS.get(cls)
    if h is None:
        names = {f.name for f in fields(cls)}
        h = {k: v for k, v in typing.get_type_hints(cls).items() if k in names}
        _HINTS[cls] = h
    return h


def _convert(name: str, hint: Any, value: Any) -> Any:
    """Check one JSON value against a field's type hint and convert it (enums, tuples)."""
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise EventLogError(f"field {name!r}: expected an integer, got {value!r}")
        return value
    if hint is bool or hint is str:
        if not isinstance(value, hint):
            raise EventLogError(f"field {name!r}: expected {hint.__name__}, got {value!r}")
        return value
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except (ValueError, TypeError):
            raise EventLogError(f"field {name!r}: unknown {hint.__name__} {value!r}") from None
    if typing.get_origin(hint) is types.UnionType:  # ``X | None``: an optional field, null when left out
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else _convert(name, inner, value)
    if typing.get_origin(hint) is tuple:
        (item, _dots) = typing.get_args(hint)
        if not isinstance(value, list):
            raise EventLogError(f"field {name!r}: expected a list, got {value!r}")
        return tuple(_convert(name, item, v) for v in value)
    raise AssertionError(f"no JSON codec for field type {hint!r}")  # a new field type needs a line here


def _decode(d: Any, table: dict[str, type[Any]], what: str) -> Any:
    if not isinstance(d, dict):
        raise EventLogError(f"{what}: expected an object, got {type(d).__name__}")
    kind = d.get("type")
    if not isinstance(kind, str) or kind not in table:
        raise EventLogError(f"{what}: unknown type {kind!r}")
    cls = table[kind]
    hints = _hints(cls)
    given = set(d) - {"type"}
    missing = sorted(set(hints) - given)
    extra = sorted(given - set(hints))
    if missing:
        raise EventLogError(f"{kind}: missing field(s) {', '.join(missing)}")
    if extra:
        raise EventLogError(f"{kind}: unknown field(s) {', '.join(extra)}")
    kwargs = {name: _convert(name, hint, d[name]) for name, hint in hints.items()}
    try:
        return cls(**kwargs)
    except LocalProtocolError as exc:
        raise EventLogError(f"{kind}: {exc}") from None


def decode_event(d: Any) -> InputEvent:
    event: InputEvent = _decode(d, INPUT_TYPES, "event")
    return event


def decode_output(d: Any) -> OutputEvent:
    output: OutputEvent = _decode(d, OUTPUT_TYPES, "output")
    return output


def make_record(seq: int, event: InputEvent, outputs: Sequence[OutputEvent]) -> Record:
    return Record(seq=seq, event=event, out=outputs_digest(outputs))


def encode_record(record: Record) -> str:
    """One line of canonical JSON, without the newline."""
    return canonical_json({"v": LOG_VERSION, "seq": record.seq, "event": _encode(record.event), "out": record.out})


_HEX = frozenset("0123456789abcdef")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_record(text: str | bytes, *, line: int | None = None, source: str | None = None) -> Record:
    """Parse one record; raises ``EventLogError`` (with ``line``/``source``) and nothing else."""
    try:
        try:
            d = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise EventLogError(f"corrupt JSON ({exc})") from None
        if not isinstance(d, dict):
            raise EventLogError(f"a record must be an object, got {type(d).__name__}")
        if "v" not in d:
            raise EventLogError("missing version 'v'")
        if d["v"] != LOG_VERSION or isinstance(d["v"], bool):
            raise EventLogError(f"unknown version {d['v']!r}")
        extra = sorted(set(d) - {"v", "seq", "event", "out"})
        if extra:
            raise EventLogError(f"unknown record key(s) {', '.join(extra)}")
        seq = d.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise EventLogError(f"'seq' must be a positive integer, got {seq!r}")
        digest = d.get("out")
        if not (isinstance(digest, str) and len(digest) == 64 and set(digest) <= _HEX):
            raise EventLogError(f"'out' must be a sha256 hex digest, got {digest!r}")
        if "event" not in d:
            raise EventLogError("missing 'event'")
        event = decode_event(d["event"])
    except EventLogError as exc:
        raise exc.located(source, line) from None
    return Record(seq=seq, event=event, out=digest)


def decode_lines(lines: Iterable[str | bytes], *, source: str | None = None) -> typing.Iterator[Record]:
    """Decode a JSON Lines log, line numbers from 1; blank lines are skipped; seq must increase by one."""
    expected: int | None = None
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        record = decode_record(text, line=number, source=source)
        if expected is not None and record.seq != expected:
            raise EventLogError(f"seq {record.seq} out of order, expected {expected}", line=number, source=source)
        expected = record.seq + 1
        yield record
