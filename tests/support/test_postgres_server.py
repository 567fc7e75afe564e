"""The throwaway PostgreSQL server of the tests (postgres_server.py) does what the suites rely on."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.support.postgres_server import (
    DSN_ENV,
    PostgresServer,
    PostgresServerError,
    fresh_collection,
    fresh_database,
    process_running,
    readable_install,
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


async def test_the_pgvector_server_offers_pgvector(pgvector_dsn: str) -> None:
    connection = await asyncpg.connect(pgvector_dsn)
    try:
        assert connection.get_server_version().major >= 18
        version = await connection.fetchval("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
        assert version is not None
        assert await connection.fetchval("SELECT current_setting('listen_addresses')") == "127.0.0.1"
    finally:
        await connection.close()


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory any user can enter (pytest's tmp_path is private to its owner)."""
    path = Path(tempfile.mkdtemp(prefix="claw-public-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def make_install(root: Path, *, private: bool) -> Path:
    tree = root / "pginstall"
    (tree / "bin").mkdir(parents=True)
    (tree / "lib").mkdir()
    (tree / "bin" / "initdb").write_text("#!/bin/sh\n")
    (tree / "lib" / "vector.so").write_text("library")
    for path, mode in [(tree, 0o755), (tree / "bin", 0o755), (tree / "lib", 0o755)]:
        path.chmod(mode)
    (tree / "bin" / "initdb").chmod(0o700 if private else 0o755)
    (tree / "lib" / "vector.so").chmod(0o600 if private else 0o644)
    if private:
        (tree / "lib").chmod(0o700)
    return tree


def others_may(path: Path, rights: int) -> bool:
    return path.stat().st_mode & rights == rights


def test_an_install_anyone_can_read_is_used_where_it_is(public_dir: Path) -> None:
    tree = make_install(public_dir, private=False)
    assert readable_install(tree, public_dir / "copy") == tree
    assert not (public_dir / "copy").exists()


def test_a_private_install_is_copied_once_readable_by_all(public_dir: Path) -> None:
    tree = make_install(public_dir, private=True)
    copy = readable_install(tree, public_dir / "cache" / "18.6")
    assert copy == public_dir / "cache" / "18.6"
    assert (copy / "lib" / "vector.so").read_text() == "library"
    assert others_may(copy / "lib", stat.S_IROTH | stat.S_IXOTH)
    assert others_may(copy / "lib" / "vector.so", stat.S_IROTH)
    assert others_may(copy / "bin" / "initdb", stat.S_IROTH | stat.S_IXOTH)
    assert not others_may(copy / "lib" / "vector.so", stat.S_IXOTH)  # run rights only where the owner had them
    assert not others_may(tree / "lib", stat.S_IXOTH)  # the original is left as it was
    marker = copy / "bin" / "marker"
    marker.write_text("made by the first call")
    assert readable_install(tree, public_dir / "cache" / "18.6") == copy  # reused, not copied again
    assert marker.exists()
    assert [path.name for path in (public_dir / "cache").iterdir()] == ["18.6"]  # no partial copy left behind


def test_a_copy_under_a_private_directory_is_an_error(public_dir: Path, tmp_path: Path) -> None:
    tree = make_install(public_dir, private=True)
    hidden = tmp_path / "private"
    hidden.mkdir(mode=0o700)
    with pytest.raises(PostgresServerError, match="not readable"):
        readable_install(tree, hidden / "copy")
