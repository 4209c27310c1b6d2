"""Event stores: JSON Lines, SQLite (embedded default), PostgreSQL (postgres.py, loaded on demand)."""

from .base import EventStore, check_contiguous
from .jsonl import JsonlStore
from .opening import open_store
from .recorder import CallRecorder, RecorderBroken
from .sqlite import SqliteStore

__all__ = ["EventStore", "open_store", "check_contiguous", "JsonlStore", "SqliteStore", "CallRecorder",
           "RecorderBroken"]
