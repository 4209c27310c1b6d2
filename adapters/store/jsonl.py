"""A JSON Lines event store: one record per line, appended to a plain file.

Durability: with ``fsync="always"`` (the default) ``append`` writes the lines, flushes and ``os.fsync``s the file
before returning, so an acknowledged record survives a power cut. One append is one write and one fsync however
many records it carries, so the server's group commit (adapters/store/recorder.py) pays one fsync per batch; appends
may come from a worker thread, one at a time (the caller serialises them). ``fsync="never"`` only flushes to the OS (survives
a process crash, not a machine crash); tests and benchmarks use it.

A crash in the middle of a write can leave a last line without its newline. Opening the store for writing drops
such a torn tail (it was never acknowledged) after checking that it is indeed the unfinished last line; a corrupt
line anywhere else is an error naming the file and line. Opening read-only reports a torn tail like any corruption.
The latest checkpoint lives next to the log in ``<file>.checkpoint.json``, replaced atomically (write, fsync,
rename).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from callsd.core.calls.eventlog import (
    Compaction,
    EventLogError,
    LogEntry,
    Record,
    decode_entry,
    decode_lines,
    encode_record,
)

from .base import check_contiguous

__all__ = ["JsonlStore"]


class JsonlStore:
    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False, fsync: str = "always") -> None:
        if fsync not in ("always", "never"):
            raise ValueError(f"fsync must be 'always' or 'never', got {fsync!r}")
        self.path = Path(path)
        self.location = str(self.path)
        self.readonly = readonly
        self._fsync = fsync == "always"
        self._last = 0
        if readonly:
            with self.path.open("rb"):  # fail now (OSError) on a missing or unreadable file
                pass
            for record in self.iter_records():
                self._last = record.seq
            self._file = None
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._recover()
            # Unbuffered: a write that fails (a full disk) leaves nothing in a buffer for close() to retry and fail
            # on again; append writes every byte itself and undoes a partial batch.
            self._file = self.path.open("ab", buffering=0)

    def _recover(self) -> None:
        """Find the last seq; drop a torn last line left by a crash during a write."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        good_end = 0
        lines = data.split(b"\n")
        tail = lines.pop()  # text after the last newline: b"" unless the last write was torn
        expected = 1
        for number, line in enumerate(lines, start=1):
            if line.strip():
                record = decode_entry(line, line=number, source=self.location)
                if isinstance(record, Compaction) and expected == 1:
                    expected = record.seq  # a compacted log starts at its compaction entry
                if record.seq != expected:
                    raise EventLogError(f"seq {record.seq} out of order, expected {expected}", line=number,
                                        source=self.location)
                expected += 1
            good_end += len(line) + 1
        if tail:
            try:
                complete = decode_entry(tail, line=len(lines) + 1, source=self.location).seq == expected
            except EventLogError:
                complete = False
            if complete:
                # A whole record that only lacks its newline: keep it, finish the line.
                expected += 1
                with self.path.open("ab") as f:
                    f.write(b"\n")
                    self._sync(f)
            else:
                with self.path.open("r+b") as f:
                    f.truncate(good_end)
                    self._sync(f)
        self._last = expected - 1

    def _sync(self, f: Any) -> None:
        f.flush()
        if self._fsync:
            os.fsync(f.fileno())

    def prepare_appends(self) -> None:
        """Nothing to prepare: a line is appended where the file ends (a file cannot hold blank blocks ahead)."""

    def append(self, records: Sequence[Record]) -> None:
        if self._file is None:
            raise ValueError(f"{self.location} is open read-only")
        check_contiguous(self._last, records)
        if not records:
            return
        data = memoryview(b"".join(encode_record(r).encode("utf-8") + b"\n" for r in records))
        good_end = self._file.tell()
        try:
            while data:
                written = self._file.write(data)
                data = data[written or 0:]
            self._sync(self._file)
        except BaseException:
            # Never acknowledged: take the batch's bytes back so no record of it survives (best effort; a torn
            # tail left behind is dropped by the next open).
            with contextlib.suppress(OSError):
                os.truncate(self._file.fileno(), good_end)
            raise
        self._last = records[-1].seq

    def iter_records(self, from_seq: int = 1) -> Iterator[LogEntry]:
        with self.path.open("rb") as f:
            for record in decode_lines(f, source=self.location):
                if record.seq >= from_seq:
                    yield record

    def last_seq(self) -> int:
        return self._last

    def compact(self, entry: Compaction) -> None:
        """Replace every line up to ``entry.seq`` by ``entry`` (docs/adr/0011, "Compaction"): the new file is
        written next to the log, fsynced and renamed over it, so a crash leaves the old log or the new one. Only
        the process that writes the log may call this (it reopens its handle on the new file)."""
        if self._file is None:
            raise ValueError(f"{self.location} is open read-only")
        if not 1 <= entry.seq <= self._last:
            raise ValueError(f"cannot compact up to seq {entry.seq}: the log ends at seq {self._last}")
        tmp = self.path.with_name(self.path.name + ".compacting")
        with self.path.open("rb") as src, tmp.open("wb") as dst:
            dst.write(encode_record(entry).encode("utf-8") + b"\n")
            for number, line in enumerate(src, start=1):
                if line.strip() and decode_entry(line, line=number, source=self.location).seq > entry.seq:
                    dst.write(line if line.endswith(b"\n") else line + b"\n")
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, self.path)  # the open handle keeps the old file until it is swapped below
        self._fsync_dir()
        old, self._file = self._file, self.path.open("ab", buffering=0)
        old.close()

    def _fsync_dir(self) -> None:
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @property
    def _checkpoint_path(self) -> Path:
        return self.path.with_name(self.path.name + ".checkpoint.json")

    def save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        tmp = self._checkpoint_path.with_name(self._checkpoint_path.name + ".tmp")
        with tmp.open("wb") as f:
            f.write(json.dumps(checkpoint, sort_keys=True, separators=(",", ":")).encode("utf-8"))
            self._sync(f)
        os.replace(tmp, self._checkpoint_path)

    def load_checkpoint(self) -> dict[str, Any] | None:
        try:
            text = self._checkpoint_path.read_text("utf-8")
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise EventLogError(f"corrupt checkpoint ({exc})", source=str(self._checkpoint_path)) from None
        if not isinstance(data, dict):
            raise EventLogError("corrupt checkpoint (not an object)", source=str(self._checkpoint_path))
        return data

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> JsonlStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
