"""Fixtures for the cluster tests: nodes of `callsd serve` on loopback that share a fresh database of the
session's PostgreSQL (tests/conftest.py)."""

from __future__ import annotations

import pytest
from pg_support import PostgresServer


@pytest.fixture
def pg_url(postgres: PostgresServer) -> str:
    return postgres.create_database("cluster")
