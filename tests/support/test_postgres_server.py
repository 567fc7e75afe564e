"""The throwaway PostgreSQL server of the tests (postgres_server.py) does what the suites rely on."""

from __future__ import annotations

import asyncio
import os
import pwd

import asyncpg
import pytest

from tests.support.postgres_server import (
    DSN_ENV,
    PostgresServer,
    fresh_collection,
    fresh_database,
    process_running,
    session_postgres,
)


async def test_fresh_databases_are_separate_and_dropped_afterwards(postgres_dsn: str) -> None:
    async with fresh_database(postgres_dsn) as first, fresh_database(postgres_dsn) as second:
        assert first != second
        one = await asyncpg.connect(first)
        other = await asyncpg.connect(second)
        try:
            await one.execute("CREATE TABLE only_here (n INT)")
            assert await one.fetchval("SELECT to_regclass('only_here')") is not None
            assert await other.fetchval("SELECT to_regclass('only_here')") is None
        finally:
            await one.close()
            await other.close()
    admin = await asyncpg.connect(postgres_dsn)
    try:
        names = {first.rsplit("/", 1)[1], second.rsplit("/", 1)[1]}
        left = await admin.fetchval("SELECT count(*) FROM pg_database WHERE datname = ANY($1::text[])", list(names))
        assert left == 0
    finally:
        await admin.close()


async def test_a_fresh_collection_is_dropped_afterwards(postgres_dsn: str) -> None:
    admin = await asyncpg.connect(postgres_dsn)
    try:
        async with fresh_collection(postgres_dsn) as name:
            await admin.execute(f'CREATE TABLE "{name}" (n INT)')
            assert await admin.fetchval("SELECT to_regclass($1)", f'"{name}"') is not None
        assert await admin.fetchval("SELECT to_regclass($1)", f'"{name}"') is None
    finally:
        await admin.close()


async def _settings(dsn: str) -> dict[str, str]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT name, setting FROM pg_settings WHERE name IN ('listen_addresses', 'fsync', 'server_encoding')"
        )
        return {row[0]: row[1] for row in rows}
    finally:
        await connection.close()


def test_a_server_starts_on_loopback_and_stops_without_leftovers() -> None:
    server = PostgresServer.start()
    try:
        pid = server.pid
        assert pid is not None
        assert process_running(pid)
        if os.geteuid() == 0:  # initdb refuses root: the cluster belongs to the postgres user
            assert server.data_dir.stat().st_uid == pwd.getpwnam("postgres").pw_uid
        settings = asyncio.run(_settings(server.dsn))
        assert settings == {"listen_addresses": "127.0.0.1", "fsync": "off", "server_encoding": "UTF8"}
    finally:
        server.stop()
    assert server.pid is None
    assert not process_running(pid)
    assert not server.root.exists()
    with pytest.raises(OSError):
        asyncio.run(asyncpg.connect(server.dsn, timeout=5))
    server.stop()  # twice is fine


def test_a_given_dsn_is_used_instead_of_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DSN_ENV, "postgresql://someone@127.0.0.1:1/elsewhere")
    assert list(session_postgres()) == ["postgresql://someone@127.0.0.1:1/elsewhere"]
