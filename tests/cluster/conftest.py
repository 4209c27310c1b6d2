"""Fixtures for the cluster tests: one throwaway PostgreSQL per session (tests/pg_support.py), and nodes of
`callsd serve` on loopback that share a fresh database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pg_support import PostgresServer


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture
def pg_url(postgres: PostgresServer) -> str:
    return postgres.create_database("cluster")
