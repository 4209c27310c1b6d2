"""Event stores: JSON Lines and SQLite (embedded default); PostgreSQL can implement ``EventStore`` later."""

from .base import EventStore, check_contiguous
from .jsonl import JsonlStore
from .opening import open_store
from .recorder import CallRecorder, RecorderBroken
from .sqlite import SqliteStore

__all__ = ["EventStore", "open_store", "check_contiguous", "JsonlStore", "SqliteStore", "CallRecorder",
           "RecorderBroken"]
