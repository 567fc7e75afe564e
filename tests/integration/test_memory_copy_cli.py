"""`claw memory copy` end to end, in-process: real SQLite files (and a Qdrant local-mode directory), the progress
file of an interrupted run, and the exit status when the final counts disagree."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from claw_adapters.memory.sqlite import SqliteMemoryStore
from claw_app.cli import main
from claw_core.model import MemoryItem
from claw_core.ports import MemoryPage
from tests.contract.memory_backends import closed_loopback_port

COUNT = 120


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("MEMORY_PROVIDER", "QDRANT_URL", "MEMORY_HOST", "MEMORY_PORT", "QDRANT_HOST", "QDRANT_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name in ("MEMORY_COLLECTION", "MEMORY_PG_URL", "CLAW_CONFIG_FILE", "OPENCLAW_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CLAW_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "source" / "memory.sqlite3"

    async def fill() -> None:
        store = SqliteMemoryStore(path)
        try:
            for n in range(COUNT):
                await store.add(f"memory number {n} ünïcode", payload={"user_id": "alice", "n": n})
        finally:
            await store.close()

    asyncio.run(fill())
    return path


def contents(path: Path) -> dict[str, dict[str, object]]:
    async def read() -> dict[str, dict[str, object]]:
        store = SqliteMemoryStore(path)
        try:
            assert await store.count() < 10_000
            return {item.id: item.payload for item in (await store.page(limit=10_000)).memories}
        finally:
            await store.close()

    return asyncio.run(read())


def default_target(tmp_path: Path) -> Path:
    return tmp_path / "data" / "memory.sqlite3"


def test_help_documents_the_backend_syntax(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["memory", "copy", "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for needle in ("sqlite:PATH", "qdrant:URL", "qdrant-local:PATH", "postgres:DSN", "?collection=NAME", "examples:"):
        assert needle in text


def test_copy_between_sqlite_files(source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["memory", "copy", "--from", f"sqlite:{source}", "--to", "sqlite", "--batch-size", "7"]) == 0
    assert contents(default_target(tmp_path)) == contents(source)
    err = capsys.readouterr().err
    assert f"copied {COUNT} memories" in err
    assert f"({COUNT} new, 0 replaced)" in err

    # Again: everything is replaced in place, nothing is duplicated.
    assert main(["memory", "copy", "--from", f"sqlite:{source}", "--to", "sqlite"]) == 0
    assert len(contents(default_target(tmp_path))) == COUNT
    assert f"(0 new, {COUNT} replaced)" in capsys.readouterr().err


def test_an_interrupted_copy_resumes_without_duplicates(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    resume = tmp_path / "copy-progress.json"
    real_page = SqliteMemoryStore.page
    calls = 0

    async def interrupted_page(self: SqliteMemoryStore, *, limit: int, cursor: str | None = None) -> MemoryPage:
        nonlocal calls
        calls += 1
        if calls == 4:
            raise KeyboardInterrupt  # what Ctrl-C does half way
        return await real_page(self, limit=limit, cursor=cursor)

    monkeypatch.setattr(SqliteMemoryStore, "page", interrupted_page)
    command = ["memory", "copy", "--from", f"sqlite:{source}", "--to", "sqlite", "--batch-size", "20"]
    assert main([*command, "--resume", str(resume)]) == 130
    assert "--resume" in capsys.readouterr().err
    assert len(contents(default_target(tmp_path))) == 60
    saved = json.loads(resume.read_text())
    assert saved["walked"] == 60
    assert resume.stat().st_mode & 0o777 == 0o600

    monkeypatch.setattr(SqliteMemoryStore, "page", real_page)
    assert main([*command, "--resume", str(resume)]) == 0
    err = capsys.readouterr().err
    assert "resuming after 60 memories" in err
    assert f"copied {COUNT - 60} memories" in err
    assert contents(default_target(tmp_path)) == contents(source)
    assert not resume.exists()


def test_counts_that_disagree_exit_with_1(
    source: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def lost_put(self: SqliteMemoryStore, item: MemoryItem) -> bool:
        return True  # claims a write that never happened

    monkeypatch.setattr(SqliteMemoryStore, "put", lost_put)
    assert main(["memory", "copy", "--from", f"sqlite:{source}", "--to", "sqlite"]) == 1
    err = capsys.readouterr().err
    assert "count mismatch" in err
    assert f"fewer than the source's {COUNT}" in err


def test_copy_through_a_qdrant_local_directory(source: Path, tmp_path: Path) -> None:
    qdrant = tmp_path / "qdrant"
    back = tmp_path / "back.sqlite3"
    assert main(["memory", "copy", "--from", f"sqlite:{source}", "--to", f"qdrant-local:{qdrant}?collection=m"]) == 0
    assert main(["memory", "copy", "--from", f"qdrant-local:{qdrant}?collection=m", "--to", f"sqlite:{back}"]) == 0
    assert contents(back) == contents(source)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--from", "redis:x", "--to", "sqlite"], "unknown memory backend 'redis'"),
        (["--from", "sqlite", "--to", "sqlite"], "the source and the target are the same store"),
        (["--from", "sqlite:/nowhere/memory.sqlite3", "--to", "sqlite"], "does not exist"),
        (["--from", "sqlite", "--to", "postgres"], "postgres needs a DSN"),
        (["--from", "sqlite", "--to", "qdrant:ftp://x"], "qdrant needs a https:// URL"),
        (["--from", "sqlite", "--to", "sqlite:/tmp/x?sslmode=on"], "unknown option(s) sslmode"),
        (["--from", "sqlite", "--to", "postgres:postgresql://u:pw@h:99999/db"], "port must be a number"),
    ],
)
def test_bad_backends_are_clear_errors(
    source: Path, arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["memory", "copy", *arguments]) == 2
    assert message in capsys.readouterr().err


def test_an_unreachable_target_is_named_without_its_password(source: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dsn = f"postgresql://me:s3cret@127.0.0.1:{closed_loopback_port()}/mem0"
    assert main(["memory", "copy", "--from", f"sqlite:{source}", "--to", f"postgres:{dsn}"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach the target postgres:postgresql://127.0.0.1" in err
    assert "s3cret" not in err


async def test_a_copy_into_qdrant_embeds_with_the_configured_model(source: Path, tmp_path: Path) -> None:
    """Memories copied into a store that keeps vectors get them from the configured embedder, as mem0's own do."""
    from qdrant_client import AsyncQdrantClient

    from claw_app.memory_copy import copy_command
    from claw_app.settings import load_settings
    from tests.contract.fake_embeddings import derived_vector, serve_fake_embeddings

    qdrant = tmp_path / "qdrant"
    async with serve_fake_embeddings() as fake:
        settings = load_settings(
            {
                "HOME": str(tmp_path / "home"),
                "CLAW_DATA_DIR": str(tmp_path / "data"),
                "MEMORY_EMBEDDER_URL": fake.base_url,
                "MEMORY_EMBEDDER_MODEL": "fake-embed",
                "MEMORY_EMBEDDER_DIMENSIONS": "3",
            }
        )
        status = await copy_command(f"sqlite:{source}", f"qdrant-local:{qdrant}?collection=m", settings)
        assert status == 0
        assert fake.requests, "the embedder was never asked"
    client = AsyncQdrantClient(path=str(qdrant))
    try:
        points, _ = await client.scroll("m", limit=COUNT + 1, with_payload=True, with_vectors=True)
    finally:
        await client.close()
    assert len(points) == COUNT
    for point in points:
        assert point.payload is not None
        assert point.vector == pytest.approx(derived_vector(point.payload["data"]))
