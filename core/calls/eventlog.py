"""The event-log record codec (pure): inputs to JSON lines and back, and digests of outputs.

Each input the machine accepted (handled without raising; a ``Rejected`` answer counts) is one record::

    {"event":{"at":1000,"call_id":"k","channel_id":"c","session_id":"s","type":"JoinCall","user_id":"u"},
     "hash":"<sha256 hex>","out":"<sha256 hex of the canonical JSON of the outputs>","prev":"<sha256 hex>",
     "seq":1,"v":2}

Version 2 chains the records (docs/adr/0011-log-chain.md): ``hash`` is the SHA-256 of the canonical JSON of
``{"event", "out", "prev", "seq"}``, and ``prev`` is the ``hash`` of the record before (``GENESIS``, 64 zeros, for
seq 1). Changing any field of any record (an ``at``, a user id), or removing, inserting or reordering records,
breaks the chain at that record; ``ChainCheck`` finds the break and names its seq. Version 1 records (no ``prev`` or
``hash``) stay readable: they are *unchained*; the chain gives each a virtual hash by the same formula, so the first
version 2 record written after them (a server upgraded in place) protects them too.

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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from json.encoder import encode_basestring
from typing import Any

from ..errors import LocalProtocolError, RemoteProtocolError
from .events import INPUT_TYPES, InputEvent
from .outputs import OUTPUT_TYPES, OutputEvent

__all__ = [
    "LOG_VERSION",
    "GENESIS",
    "EventLogError",
    "Record",
    "ChainBreak",
    "ChainCheck",
    "record_hash",
    "Compaction",
    "LogEntry",
    "make_compaction",
    "decode_entry",
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

LOG_VERSION = 2
READABLE_VERSIONS = (1, 2)
GENESIS = "0" * 64  # the ``prev`` of seq 1


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
    """One accepted input, its position in the log, and the digest of the outputs it produced.

    ``prev`` and ``hash`` chain it to the record before (version 2); both are "" for an unchained version 1
    record."""

    seq: int
    event: InputEvent
    out: str
    prev: str = ""
    hash: str = ""
    # The canonical JSON of ``event``, when the record was made here (``make_record``): the chain hash and the
    # stored line both embed it, so it is written once, not once for each (not part of the record's value).
    event_json: str = field(default="", compare=False, repr=False)

    @property
    def chained(self) -> bool:
        return bool(self.hash)


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


# The canonical JSON of an event, written directly (the log writes one per record, the digest one per output: 20 or
# so per join), instead of building the dict of ``_encode`` and dumping it with sorted keys. The spellings are
# the same text: keys in sorted order (``sorted`` and ``sort_keys`` both order by code point), a string as
# ``json.dumps`` writes it (``encode_basestring`` is the very function it calls with ``ensure_ascii=False``), an
# int as ``int.__repr__`` (what the encoder calls), a bool and None as their literals, an enum as its value, a
# tuple as a list; any other value goes through ``canonical_json``. A property test holds them equal for every
# input and output type (property_tests/test_core_eventlog_props.py).
_SCALAR_JSON: dict[type, Callable[[Any], str]] = {
    str: encode_basestring, int: int.__repr__, bool: lambda v: "true" if v else "false",
    type(None): lambda v: "null",
}


def _enum_json(value: enum.Enum) -> str:
    return _value_json(value.value)


def _value_json(value: Any) -> str:
    write = _SCALAR_JSON.get(type(value))
    if write is not None:
        return write(value)
    if isinstance(value, enum.Enum):
        _SCALAR_JSON[type(value)] = _enum_json  # an enum class is written by its value: looked up at once next time
        return _enum_json(value)
    if isinstance(value, tuple):
        return "[" + ",".join([_value_json(v) for v in value]) + "]"
    return canonical_json(value)


# Per event class, its keys in sorted order: ('"key":', field name), or ('"type":"ClassName"', None).
_LAYOUTS: dict[type, tuple[tuple[str, str | None], ...]] = {}


def _layout(cls: type) -> tuple[tuple[str, str | None], ...]:
    keyed: list[tuple[str, str | None]] = [(f.name, f.name) for f in fields(cls)]
    keyed.append(("type", None))
    layout = tuple((f"{encode_basestring(key)}:" + ("" if name else encode_basestring(cls.__name__)), name)
                   for key, name in sorted(keyed))
    _LAYOUTS[cls] = layout
    return layout


def event_json(obj: InputEvent | OutputEvent) -> str:
    """The canonical JSON of ``encode_event(obj)`` (or ``encode_output``), written without building the dict."""
    layout = _LAYOUTS.get(type(obj)) or _layout(type(obj))
    parts = []
    for key, name in layout:
        if name is None:
            parts.append(key)
            continue
        value = getattr(obj, name)
        write = _SCALAR_JSON.get(type(value))
        parts.append(key + (write(value) if write is not None else _value_json(value)))
    return "{" + ",".join(parts) + "}"


def encode_event(event: InputEvent) -> dict[str, Any]:
    return _encode(event)


def encode_output(output: OutputEvent) -> dict[str, Any]:
    return _encode(output)


def outputs_digest(outputs: Sequence[OutputEvent]) -> str:
    """SHA-256 hex of the canonical JSON of the encoded outputs (the record's ``out``)."""
    text = "[" + ",".join([event_json(o) for o in outputs]) + "]"
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


# The canonical JSON of a document whose keys and value types are fixed, written by concatenation: the keys in
# sorted order, each string value as ``json.dumps`` writes it (``encode_basestring`` is the very function it calls
# with ``ensure_ascii=False``), an int as its decimal text, the event's text already canonical. A property test holds
# both spellings equal (property_tests/test_core_eventlog_props.py).
def _hash_text(prev: str, seq: int, event_text: str, out: str) -> str:
    return f'{{"event":{event_text},"out":{encode_basestring(out)},"prev":{encode_basestring(prev)},"seq":{seq:d}}}'


def _chained_line(record: Record, event_text: str) -> str:
    return (f'{{"event":{event_text},"hash":{encode_basestring(record.hash)},"out":{encode_basestring(record.out)},'
            f'"prev":{encode_basestring(record.prev)},"seq":{record.seq:d},"v":{LOG_VERSION:d}}}')


def _hash_of(prev: str, seq: int, event_text: str, out: str) -> str:
    return hashlib.sha256(_hash_text(prev, seq, event_text, out).encode("utf-8")).hexdigest()


def record_hash(record: Record, prev: str) -> str:
    """The chain hash of ``record`` placed after a record whose hash is ``prev``: SHA-256 of the canonical JSON of
    its event, output digest, seq and ``prev``. For a version 1 record this is its virtual hash."""
    return _hash_of(prev, record.seq, record.event_json or event_json(record.event), record.out)


def make_record(seq: int, event: InputEvent, outputs: Sequence[OutputEvent], prev: str = GENESIS) -> Record:
    """A chained (version 2) record following the record whose hash is ``prev``; it keeps its event's canonical
    JSON, which ``encode_record`` writes into the stored line instead of encoding the event again."""
    out = outputs_digest(outputs)
    text = event_json(event)
    return Record(seq=seq, event=event, out=out, prev=prev, hash=_hash_of(prev, seq, text, out), event_json=text)


def encode_record(record: LogEntry) -> str:
    """One line of canonical JSON, without the newline: version 2 for a chained record or a compaction entry, 1
    for an unchained record (an old record copied as it was)."""
    if isinstance(record, Compaction):
        return canonical_json({"v": LOG_VERSION, "seq": record.seq, "compacted": record.body(), "hash": record.hash})
    if record.chained:
        return _chained_line(record, record.event_json or event_json(record.event))
    return canonical_json({"seq": record.seq, "event": _encode(record.event), "out": record.out, "v": 1})


_HEX = frozenset("0123456789abcdef")
_COMPACTION_KEYS = frozenset({"v", "seq", "compacted", "hash"})
_RECORD_KEYS = {1: frozenset({"v", "seq", "event", "out"}), 2: frozenset({"v", "seq", "event", "out", "prev", "hash"})}


def _is_digest(value: str) -> bool:
    return len(value) == 64 and set(value) <= _HEX


@dataclass(frozen=True, slots=True, kw_only=True)
class Compaction:
    """The first entry of a compacted log (docs/adr/0011, "Compaction"): it stands for every record up to ``seq``,
    which were archived (``archive`` names the file) or deleted (``archive`` is ""). It carries what the log needs
    to stay the whole truth and stay verifiable without them: ``checkpoint``, the machine's state after ``seq``
    (core/calls/snapshot.py, with its ``head``), and ``head``, the chain hash of record ``seq``, which the next
    record's ``prev`` must equal. ``hash`` covers all of it, like a record's::

        {"compacted":{"archive":"...","checkpoint":{...},"head":"<sha256 hex>"},"hash":"<sha256 hex>","seq":N,"v":2}
    """

    seq: int
    head: str
    checkpoint: dict[str, Any]
    archive: str
    hash: str

    def body(self) -> dict[str, Any]:
        return {"archive": self.archive, "checkpoint": self.checkpoint, "head": self.head}


LogEntry = Record | Compaction


def _compaction_hash(seq: int, body: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json({"compacted": body, "seq": seq}).encode("utf-8")).hexdigest()


def make_compaction(seq: int, head: str, checkpoint: dict[str, Any], archive: str) -> Compaction:
    body = {"archive": archive, "checkpoint": checkpoint, "head": head}
    return Compaction(seq=seq, head=head, checkpoint=checkpoint, archive=archive, hash=_compaction_hash(seq, body))


def compaction_hash_ok(entry: Compaction) -> bool:
    return _compaction_hash(entry.seq, entry.body()) == entry.hash


def _decode_compaction(d: dict[str, Any]) -> Compaction:
    extra = sorted(set(d) - _COMPACTION_KEYS)
    if extra:
        raise EventLogError(f"unknown compaction key(s) {', '.join(extra)}")
    missing = sorted(_COMPACTION_KEYS - set(d))
    if missing:
        raise EventLogError("missing " + ", ".join(repr(k) for k in missing))
    seq, body, own = d["seq"], d["compacted"], d["hash"]
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise EventLogError(f"'seq' must be a positive integer, got {seq!r}")
    if not isinstance(own, str) or not _is_digest(own):
        raise EventLogError(f"'hash' must be a sha256 hex digest, got {own!r}")
    if not isinstance(body, dict) or set(body) != {"archive", "checkpoint", "head"}:
        raise EventLogError("'compacted' must be an object with archive, checkpoint and head")
    head, checkpoint, archive = body["head"], body["checkpoint"], body["archive"]
    if not isinstance(head, str) or not _is_digest(head):
        raise EventLogError(f"compaction 'head' must be a sha256 hex digest, got {head!r}")
    if not isinstance(archive, str):
        raise EventLogError(f"compaction 'archive' must be a string, got {archive!r}")
    if not isinstance(checkpoint, dict) or checkpoint.get("seq") != seq or isinstance(checkpoint.get("seq"), bool):
        raise EventLogError(f"compaction 'checkpoint' must be a checkpoint object at seq {seq}")
    return Compaction(seq=seq, head=head, checkpoint=checkpoint, archive=archive, hash=own)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_record(text: str | bytes, *, line: int | None = None, source: str | None = None) -> Record:
    """Parse one record; raises ``EventLogError`` (with ``line``/``source``) and nothing else."""
    entry = decode_entry(text, line=line, source=source)
    if isinstance(entry, Compaction):
        raise EventLogError("a compaction entry where a record was expected", line=line, source=source)
    return entry


def decode_entry(text: str | bytes, *, line: int | None = None, source: str | None = None) -> LogEntry:
    """Parse one line of a log: a record or a compaction entry; raises ``EventLogError`` and nothing else."""
    try:
        try:
            d = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise EventLogError(f"corrupt JSON ({exc})") from None
        if not isinstance(d, dict):
            raise EventLogError(f"a record must be an object, got {type(d).__name__}")
        if "v" not in d:
            raise EventLogError("missing version 'v'")
        version = d["v"]
        if not isinstance(version, int) or isinstance(version, bool) or version not in READABLE_VERSIONS:
            raise EventLogError(f"unknown version {version!r}")
        if version >= 2 and "compacted" in d:
            return _decode_compaction(d)
        keys = _RECORD_KEYS[version]
        extra = sorted(set(d) - keys)
        if extra:
            raise EventLogError(f"unknown record key(s) {', '.join(extra)}")
        missing = sorted(keys - set(d))
        if missing:
            raise EventLogError("missing " + ", ".join(repr(k) for k in missing))
        seq = d.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise EventLogError(f"'seq' must be a positive integer, got {seq!r}")
        digests = [(name, d.get(name, "")) for name in ("out", "prev", "hash")]
        for name, value in digests:
            if not (isinstance(value, str) and (_is_digest(value) or (version == 1 and name != "out"))):
                raise EventLogError(f"{name!r} must be a sha256 hex digest, got {value!r}")
        (_, digest), (_, prev), (_, own) = digests
        event = decode_event(d["event"])
    except EventLogError as exc:
        raise exc.located(source, line) from None
    return Record(seq=seq, event=event, out=digest, prev=prev, hash=own)


def decode_lines(lines: Iterable[str | bytes], *, source: str | None = None) -> typing.Iterator[LogEntry]:
    """Decode a JSON Lines log, line numbers from 1; blank lines are skipped; seq must increase by one; a
    compaction entry may only come first."""
    expected: int | None = None
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        record = decode_entry(text, line=number, source=source)
        if isinstance(record, Compaction) and expected is not None:
            raise EventLogError("a compaction entry after the first line", line=number, source=source)
        if expected is not None and record.seq != expected:
            raise EventLogError(f"seq {record.seq} out of order, expected {expected}", line=number, source=source)
        expected = record.seq + 1
        yield record


# ---------------------------------------------------------------------------------------------------- the chain


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainBreak:
    """Record ``seq`` does not fit the chain; ``reason`` says how (its own hash, or its link to the one before)."""

    seq: int
    reason: str

    def __str__(self) -> str:
        return f"seq {self.seq}: {self.reason}"


class ChainCheck:
    """Checks records one by one against the chain, in seq order (the caller checks contiguity).

    ``head`` is the hash of the last record fed (``GENESIS`` before seq 1), or None when it is not known (a
    checkpoint written before version 2): the first record's ``prev`` is then taken on trust. Two checks per chained
    record: its ``hash`` matches its content (else it was changed after it was written), and its ``prev`` is the
    head (else a record before it was changed with its hash recomputed, or records were removed, inserted or
    reordered). Each break is reported once: the head continues from the record's stored hash. An unchained
    (version 1) record cannot be checked; it is counted in ``unchained`` and the head becomes its virtual hash.
    """

    def __init__(self, head: str | None = GENESIS) -> None:
        self.head = head
        self.breaks: list[ChainBreak] = []
        self.unchained = 0
        self.chained = 0
        self.compacted = 0  # the seq a compaction entry stood for, 0 if the log starts at seq 1

    def anchor(self, record: LogEntry) -> ChainBreak | None:
        """Check the last record a checkpoint covers against the checkpoint's ``head`` (a restart reads just this
        one record before the tail): its hash must match its content and equal the head."""
        found: ChainBreak | None = None
        if isinstance(record, Compaction):
            return self._compaction(record, anchored=True)
        if not record.chained:
            return None  # a version 1 record has no stored hash to compare
        if record_hash(record, record.prev) != record.hash:
            found = ChainBreak(seq=record.seq, reason="its hash does not match its content: the record was changed "
                                                      "after it was written")
        elif self.head is not None and record.hash != self.head:
            found = ChainBreak(seq=record.seq, reason="its hash is not the head the checkpoint stored: the record "
                                                      "or the checkpoint was changed")
        if found is not None:
            self.breaks.append(found)
        self.head = record.hash
        return found

    def _compaction(self, entry: Compaction, *, anchored: bool) -> ChainBreak | None:
        found: ChainBreak | None = None
        if not compaction_hash_ok(entry):
            found = ChainBreak(seq=entry.seq, reason="the compaction entry's hash does not match its content: it was "
                                                     "changed after it was written")
        elif anchored and self.head is not None and entry.head != self.head:
            found = ChainBreak(seq=entry.seq, reason="the compaction entry's head is not the head the checkpoint "
                                                     "stored")
        if found is not None:
            self.breaks.append(found)
        self.compacted = entry.seq
        self.head = entry.head
        return found

    def feed(self, record: LogEntry) -> ChainBreak | None:
        """Check the next entry (a compaction entry only comes first: it sets the head the records continue)."""
        found: ChainBreak | None = None
        if isinstance(record, Compaction):
            return self._compaction(record, anchored=False)
        if not record.chained:
            self.unchained += 1
            self.head = record_hash(record, self.head or GENESIS)
            return None
        self.chained += 1
        if record_hash(record, record.prev) != record.hash:
            found = ChainBreak(seq=record.seq, reason="its hash does not match its content: the record was changed "
                                                      "after it was written")
        elif self.head is not None and record.prev != self.head:
            found = ChainBreak(seq=record.seq, reason=f"its 'prev' is not the hash of seq {record.seq - 1}: a record "
                                                      "before it was changed, or records were removed, inserted or "
                                                      "reordered")
        if found is not None:
            self.breaks.append(found)
        self.head = record.hash
        return found
