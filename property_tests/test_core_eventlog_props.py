"""Round trips of the event-log codec, and its one declared error on arbitrary input."""

from __future__ import annotations

import enum
import hashlib
import json
import types
import typing
from dataclasses import fields
from typing import Any

from callsd.core import (
    INPUT_TYPES,
    LOG_VERSION,
    OUTPUT_TYPES,
    EventLogError,
    Record,
    canonical_json,
    decode_output,
    decode_record,
    encode_event,
    encode_output,
    encode_record,
    make_record,
    outputs_digest,
)
from callsd.core.calls.eventlog import event_json, record_hash
from hypothesis import given
from hypothesis import strategies as st

IDS = st.text(min_size=1, max_size=24)


def _field_strategy(name: str, hint: Any) -> st.SearchStrategy[Any]:
    if hint is bool:
        return st.booleans()
    if hint is int:
        return st.integers(0, 2**62)
    if hint is str:
        return st.text(min_size=1, max_size=8) if name == "emoji" else IDS
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return st.sampled_from(list(hint))
    if typing.get_origin(hint) is tuple:
        return st.lists(IDS, max_size=4).map(tuple)
    if typing.get_origin(hint) is types.UnionType:  # an optional field: None or a value
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return st.none() | _field_strategy(name, inner)
    raise AssertionError(f"no strategy for {name}: {hint!r}")


def _builds(cls: type) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    return st.builds(cls, **{f.name: _field_strategy(f.name, hints[f.name]) for f in fields(cls)})


INPUTS = st.one_of([_builds(cls) for cls in INPUT_TYPES.values()])
OUTPUTS = st.one_of([_builds(cls) for cls in OUTPUT_TYPES.values()])
DIGESTS = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)


@given(event=INPUTS, seq=st.integers(1, 2**62), digest=DIGESTS)
def test_records_round_trip(event: Any, seq: int, digest: str) -> None:
    record = Record(seq=seq, event=event, out=digest)
    line = encode_record(record)
    assert "\n" not in line
    assert decode_record(line) == record
    assert decode_record(line.encode("utf-8")) == record


@given(outputs=st.lists(OUTPUTS, max_size=5))
def test_outputs_round_trip_and_keep_their_digest(outputs: list[Any]) -> None:
    back = [decode_output(json.loads(json.dumps(encode_output(o)))) for o in outputs]
    assert back == outputs
    assert outputs_digest(back) == outputs_digest(outputs)


@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_arbitrary_text_either_decodes_or_raises_event_log_error(text: str | bytes) -> None:
    try:
        decode_record(text, line=7)
    except EventLogError as exc:
        assert exc.line == 7
        assert str(exc).startswith("7: ")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


@given(event=INPUTS, data=st.data())
def test_damaged_records_either_decode_or_raise_event_log_error(event: Any, data: st.DataObject) -> None:
    doc = json.loads(encode_record(Record(seq=1, event=event, out="0" * 64)))
    target = data.draw(st.sampled_from([doc, doc["event"]]), label="where")
    key = data.draw(st.sampled_from(sorted(target) + ["extra"]), label="key")
    if data.draw(st.booleans(), label="delete") and key in target:
        del target[key]
    else:
        target[key] = data.draw(JSON, label="value")
    try:
        record = decode_record(json.dumps(doc), line=3, source="log.jsonl")
    except EventLogError as exc:
        assert str(exc).startswith("log.jsonl:3: ")
    else:
        assert isinstance(record, Record)


def test_the_example_encoding_is_canonical() -> None:
    event = INPUT_TYPES["JoinCall"](at=5, channel_id="c", session_id="s", user_id="u", call_id="k")
    line = encode_record(Record(seq=1, event=event, out="a" * 64))
    assert line == (
        '{"event":{"at":5,"call_id":"k","channel_id":"c","session_id":"s","type":"JoinCall","user_id":"u"},'
        f'"out":"{"a" * 64}","seq":1,"v":1}}'
    )
    assert encode_event(event)["type"] == "JoinCall"


def _dict_spelled_line(record: Record) -> str:
    """The stored line as ``encode_record`` wrote it before it embedded the event's JSON: one dict, dumped."""
    return canonical_json({"seq": record.seq, "event": encode_event(record.event), "out": record.out,
                           "v": LOG_VERSION, "prev": record.prev, "hash": record.hash})


def _dict_spelled_hash(record: Record) -> str:
    text = canonical_json({"event": encode_event(record.event), "out": record.out, "prev": record.prev,
                           "seq": record.seq})
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@given(event=INPUTS, outputs=st.lists(OUTPUTS, max_size=3), seq=st.integers(1, 2**62),
       prev=DIGESTS | st.text(max_size=12))
def test_a_made_record_is_spelled_as_the_dict_was(event: Any, outputs: list[Any], seq: int, prev: str) -> None:
    """The chain hash and the stored line are written by concatenation around the event's JSON, encoded once; both
    must be byte for byte what dumping the whole document gave, whatever the strings hold (``prev`` even when it
    is not a digest), so the on-disk format and every chain hash stay as they were."""
    record = make_record(seq, event, outputs, prev=prev)
    assert record.hash == _dict_spelled_hash(record) == record_hash(record, prev)
    line = encode_record(record)
    assert line == _dict_spelled_line(record)
    if len(prev) != 64:
        return  # the decoder refuses a ``prev`` that is no digest
    # A record read back from disk carries no event JSON; it encodes and hashes the same
    back = decode_record(line)
    assert back == record and not back.event_json
    assert encode_record(back) == line and record_hash(back, prev) == record.hash


@given(obj=INPUTS | OUTPUTS)
def test_event_json_is_the_canonical_json_of_the_encoded_event(obj: Any) -> None:
    """``event_json`` writes the text directly (keys sorted, each value as ``json.dumps`` spells it); it must be the
    canonical JSON of the encoded dict for every input and output type and any field values (unicode, quotes,
    control characters, huge ints, enums, tuples, None), or the digests and chain hashes of the log would change."""
    assert event_json(obj) == canonical_json(encode_output(obj) if type(obj) in OUTPUT_TYPES.values()
                                             else encode_event(obj))


@given(outputs=st.lists(OUTPUTS, max_size=6))
def test_outputs_digest_is_the_digest_of_the_dumped_list(outputs: list[Any]) -> None:
    text = canonical_json([encode_output(o) for o in outputs])
    assert outputs_digest(outputs) == hashlib.sha256(text.encode("utf-8")).hexdigest()
