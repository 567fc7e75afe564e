"""`claw memory copy --from SPEC --to SPEC`: move the memory store to another backend, with a progress bar.

A SPEC names a backend and where it is (see `SPEC_HELP`). The copy itself is `claw_core.services.memory_copy`;
this module opens the two stores, keeps the optional resume file (the source cursor after each page fully written,
replaced atomically, mode 0600), shows progress on stderr and prints the verdict of the final count.
"""

from __future__ import annotations

import json
import sys
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from tqdm import tqdm

from claw_adapters.memory.sqlite import DEFAULT_FILE_NAME, SqliteMemoryStore
from claw_adapters.storage.atomic_file import write_private_file
from claw_app.container import configured_embedder
from claw_app.settings import DEFAULT_QDRANT_URL, ConfigError, Settings
from claw_core.errors import Invalid
from claw_core.ports import Embedder, MemoryStore
from claw_core.services.memory_copy import DEFAULT_BATCH_SIZE, CopyProgress, CopyReport, copy_memories

__all__ = ["SPEC_HELP", "BackendSpec", "copy_command", "open_store", "parse_spec"]

SPEC_HELP = """\
A backend is given as KIND or KIND:WHERE, optionally followed by ?collection=NAME:
  sqlite                        the connector's own file (<data dir>/memory.sqlite3)
  sqlite:PATH                   another SQLite memory file (created when it is the target)
  qdrant                        the configured Qdrant server (QDRANT_URL or MEMORY_HOST/MEMORY_PORT)
  qdrant:URL                    a Qdrant server, e.g. qdrant:http://localhost:6333
  qdrant-local:PATH             a Qdrant local-mode directory (qdrant-client's embedded storage)
  postgres                      the configured PostgreSQL database (MEMORY_PG_URL); pgvector is the same
  postgres:DSN                  e.g. postgres:postgresql://me@localhost:5432/mem0
  ...?collection=NAME           the Qdrant collection or table (default: the configured one for a bare
                                KIND that is the configured provider, else the backend's own default)

examples:
  claw memory copy --from qdrant:http://localhost:6333?collection=mem0 --to sqlite
  claw memory copy --from sqlite --to postgres:postgresql://me@db.lan/mem0?collection=memories
  claw memory copy --from sqlite:/backup/memory.sqlite3 --to sqlite --resume /tmp/copy.json

A copy replaces memories the target already holds under the same id, so running it again is safe. With --resume
FILE, an interrupted copy continues where it stopped. The counts are checked at the end: exit status 1 when they
disagree."""

_KINDS = ("sqlite", "qdrant", "qdrant-local", "postgres", "pgvector")


@dataclass(frozen=True, slots=True)
class BackendSpec:
    kind: str
    """'sqlite', 'qdrant', 'qdrant-local' or 'postgres'."""
    location: str
    """A file or directory path, or a URL (for postgres, the DSN: it may hold a password, see `label`)."""
    collection: str | None

    @property
    def label(self) -> str:
        """How to name it to the user: never with a password."""
        where = self.location
        if self.kind == "postgres":
            parts = urlsplit(where)
            host = parts.hostname or "localhost"
            try:
                port = f":{parts.port}" if parts.port else ""
            except ValueError:  # not a number, or out of range: name the host alone
                port = ""
            where = f"{parts.scheme}://{host}{port}{parts.path}"
        suffix = f" (collection {self.collection})" if self.collection else ""
        return f"{self.kind}:{where}{suffix}"


def parse_spec(spec: str, settings: Settings) -> BackendSpec:
    """Read a SPEC (see `SPEC_HELP`); bare kinds take their place from the settings. ConfigError when malformed."""
    text = spec.strip()
    kind, _, rest = text.partition(":")
    kind = kind.lower()
    if kind not in _KINDS:
        raise ConfigError(f"unknown memory backend {kind!r} in {_safe(text)!r} (one of: {', '.join(_KINDS)})")
    kind = "postgres" if kind == "pgvector" else kind
    collection: str | None = None
    if not rest or rest.startswith("?"):  # a bare kind: where the settings say
        location, options = _configured(kind, settings), rest[1:]
        if kind == settings.memory_provider:
            collection = settings.memory_collection
    else:
        location, _, options = rest.partition("?")
    params = parse_qsl(options, keep_blank_values=True)
    others = [(key, value) for key, value in params if key != "collection"]
    for key, value in params:
        if key == "collection":
            collection = value or None
    if others:
        if kind != "postgres":
            raise ConfigError(f"{_safe(text)!r}: unknown option(s) {', '.join(k for k, _ in others)} (only collection)")
        location = f"{location}?{urlencode(others)}"  # sslmode and the like belong to the DSN
    return BackendSpec(kind, _checked_location(kind, location, text), collection)


def _configured(kind: str, settings: Settings) -> str:
    if kind == "sqlite":
        return str(settings.data_dir / DEFAULT_FILE_NAME)
    if kind == "qdrant":
        return settings.memory_url or DEFAULT_QDRANT_URL
    if kind == "postgres":
        if settings.memory_pg_url is None:
            raise ConfigError("postgres needs a DSN: postgres:postgresql://... or MEMORY_PG_URL in the environment")
        return settings.memory_pg_url
    raise ConfigError(f"{kind} needs a path: {kind}:PATH")


def _checked_location(kind: str, location: str, spec: str) -> str:
    if not location:
        raise ConfigError(f"{_safe(spec)!r}: where is it? ({kind}:...)")
    if kind in ("sqlite", "qdrant-local"):
        return str(Path(location).expanduser().resolve())
    parts = urlsplit(location)
    expected = ("http", "https") if kind == "qdrant" else ("postgres", "postgresql")
    if parts.scheme not in expected or (kind == "qdrant" and not parts.hostname):
        raise ConfigError(f"{_safe(spec)!r}: {kind} needs a {expected[-1]}:// URL")
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when asked
    except ValueError:
        raise ConfigError(f"{_safe(spec)!r}: the port must be a number from 1 to 65535") from None
    return location


def _safe(spec: str) -> str:
    """A spec to quote in an error: a DSN's password replaced."""
    parts = urlsplit(spec.partition(":")[2])
    return spec.replace(parts.password, "***") if parts.password else spec


def open_store(spec: BackendSpec, embedder: Embedder | None = None) -> MemoryStore:
    """The store a spec names; nothing is opened or connected until it is used. `embedder` serves the stores that
    keep vectors (Qdrant, PostgreSQL with pgvector); SQLite has none."""
    if spec.kind == "sqlite":
        return SqliteMemoryStore(Path(spec.location), collection=spec.collection)
    if spec.kind in ("qdrant", "qdrant-local"):
        from claw_adapters.memory.qdrant import QdrantMemoryStore

        url, path = (spec.location, None) if spec.kind == "qdrant" else (None, spec.location)
        return QdrantMemoryStore(url=url, path=path, collection=spec.collection, embedder=embedder)
    from claw_adapters.memory.postgres import PostgresMemoryStore

    return PostgresMemoryStore(dsn=spec.location, collection=spec.collection, embedder=embedder)


async def copy_command(
    source_spec: str,
    target_spec: str,
    settings: Settings,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    resume: Path | None = None,
) -> int:
    """Run a copy; returns the exit status (0 done and verified, 1 the counts disagree)."""
    source, target, state = _plan(source_spec, target_spec, settings, resume)
    async with AsyncExitStack() as stack:
        # The target embeds what it receives with the configured model, so that copied memories are found by meaning
        # there as the ones mem0 wrote are (a source only reads, its vectors are not needed).
        embedder = configured_embedder(settings)
        if embedder is not None:
            stack.push_async_callback(embedder.close)
        stores = []
        for role, spec in (("source", source), ("target", target)):
            store = open_store(spec, embedder if role == "target" else None)
            stack.push_async_callback(store.close)
            status = await store.status()
            if not status.reachable:
                raise ConfigError(f"cannot reach the {role} {spec.label}: {status.error}")
            stores.append(store)
        report = await _copy_with_progress(stores[0], stores[1], state, batch_size, f"{source.label} -> {target.label}")
    state.finish()
    return _verdict(report, source, target)


def _plan(
    source_spec: str, target_spec: str, settings: Settings, resume: Path | None
) -> tuple[BackendSpec, BackendSpec, _ResumeState]:
    source, target = parse_spec(source_spec, settings), parse_spec(target_spec, settings)
    if (source.kind, source.location, source.collection) == (target.kind, target.location, target.collection):
        raise ConfigError("the source and the target are the same store")
    if source.kind in ("sqlite", "qdrant-local") and not Path(source.location).exists():
        raise ConfigError(f"the source {source.label} does not exist")
    return source, target, _ResumeState.load(resume, source.label, target.label)


async def _copy_with_progress(
    source: MemoryStore, target: MemoryStore, state: _ResumeState, batch_size: int, title: str
) -> CopyReport:
    total = await source.count()
    if state.cursor is not None:
        print(f"resuming after {state.walked} memories", file=sys.stderr)
    with tqdm(total=total, initial=state.walked, unit="memory", desc="copy", file=sys.stderr, disable=None) as progress:

        def advance(step: CopyProgress) -> None:
            progress.update(step.batch)
            state.save(step.next_cursor, step.walked)

        try:
            return await copy_memories(
                source,
                target,
                batch_size=batch_size,
                start_cursor=state.cursor,
                already_walked=state.walked,
                on_batch=advance,
            )
        except BaseException:
            hint = f" --resume {state.path}" if state.path else ""
            print(f"\ncopy {title} stopped; run the same command{hint} again to finish it", file=sys.stderr)
            raise


def _verdict(report: CopyReport, source: BackendSpec, target: BackendSpec) -> int:
    replaced = report.copied - report.created
    print(
        f"copied {report.copied} memories from {source.label} to {target.label}"
        f" ({report.created} new, {replaced} replaced); the source holds {report.source_count},"
        f" the target {report.target_after}",
        file=sys.stderr,
    )
    problems = report.problems
    for problem in problems:
        print(f"claw: count mismatch: {problem}", file=sys.stderr)
    return 1 if problems else 0


@dataclass
class _ResumeState:
    """Where an interrupted copy stopped, kept in the --resume file (absent: a copy starts from the beginning)."""

    path: Path | None
    source: str
    target: str
    cursor: str | None = None
    walked: int = 0

    @classmethod
    def load(cls, path: Path | None, source: str, target: str) -> _ResumeState:
        state = cls(path, source, target)
        if path is None or not path.exists():
            return state
        try:
            saved: Any = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ConfigError(f"{path}: cannot read the resume file: {error}") from None
        if not isinstance(saved, dict) or (saved.get("from"), saved.get("to")) != (source, target):
            raise ConfigError(f"{path}: this resume file belongs to another copy; delete it to start afresh")
        cursor, walked = saved.get("cursor"), saved.get("walked")
        if not isinstance(cursor, str | None) or not isinstance(walked, int) or walked < 0:
            raise Invalid(f"{path}: the resume file is damaged; delete it to start afresh")
        if cursor is not None:  # None: the last run reached the end of the source, so this one starts afresh
            state.cursor, state.walked = cursor, walked
        return state

    def save(self, cursor: str | None, walked: int) -> None:
        self.cursor, self.walked = cursor, walked
        if self.path is None:
            return
        content = json.dumps({"from": self.source, "to": self.target, "cursor": cursor, "walked": walked})
        # Synced before it replaces the previous one: after a crash the file holds the last cursor or the one before.
        write_private_file(self.path, (content + "\n").encode())

    def finish(self) -> None:
        """The copy reached the end of the source: nothing is left to resume."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
