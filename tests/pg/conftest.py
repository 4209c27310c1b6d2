"""Fixtures for the PostgreSQL tests: one throwaway server per test session, one fresh database per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pg_support import PostgresServer


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server (tests/pg_support.py); fails loudly if it cannot start."""
    with PostgresServer() as server:
        yield server


@pytest.fixture
def pg_url(postgres: PostgresServer) -> str:
    """The URL of a new, empty database on the session's server."""
    return postgres.create_database()
