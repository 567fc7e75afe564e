"""Path tricks against the file routes over a real HTTP server: every one is refused (400, 403 or 404), and no file
outside the roots is read, written or created (a canary's content and mtime, and a snapshot of everything beside
HOME, are compared before and after).

Requests go out as raw bytes on a socket so that each encoding trick reaches the server exactly as written."""

from __future__ import annotations

import errno
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import aiohttp
import pytest

from claw_adapters.files import LocalDiskFiles
from claw_adapters.files import local as local_module
from claw_adapters.http import HttpServer, HttpSettings, create_app, start_http
from claw_core.api.file_routes import FileApi, file_routes
from claw_core.api.router import build_router
from claw_core.services.file_policy import FilePolicy
from tests.integration.conftest import RawResponse

pytestmark = pytest.mark.integration

TOKEN = "path-attack-token-0123456789"
CANARY = b"canary: never read, never written\n"
Raw = Callable[..., Awaitable[RawResponse]]


@dataclass
class Box:
    """tmp_path/home is HOME (a read root, with tmp_path/tmp the other); everything else is outside."""

    base: Path
    server: HttpServer

    @property
    def home(self) -> Path:
        return self.base / "home"

    @property
    def outside(self) -> Path:
        return self.base / "outside"

    def snapshot(self) -> dict[str, tuple[int, int, bytes | None]]:
        """Every path outside HOME: its mode, mtime and (for files) content."""
        found: dict[str, tuple[int, int, bytes | None]] = {}
        for root, dirs, names in os.walk(self.base):
            if Path(root) == self.base:
                dirs[:] = [d for d in dirs if d != "home"]
            for name in [*dirs, *names]:
                path = Path(root) / name
                info = path.lstat()
                content = path.read_bytes() if path.is_file() and not path.is_symlink() else None
                found[str(path)] = (info.st_mode, info.st_mtime_ns, content)
        return found


@pytest.fixture
async def box(tmp_path: Path) -> AsyncIterator[Box]:
    home, outside, evil, upper = tmp_path / "home", tmp_path / "outside", tmp_path / "home-evil", tmp_path / "TMP"
    workspace = home / ".openclaw" / "workspace"
    for folder in (workspace, outside, evil, upper, tmp_path / "tmp"):
        folder.mkdir(parents=True)
    for folder in (outside, evil, upper):
        (folder / "canary.txt").write_bytes(CANARY)
    (home / "notes.md").write_text("my notes")
    (home / "docs").mkdir()
    (home / "link-out").symlink_to(outside)
    (home / "file-link").symlink_to(outside / "canary.txt")
    (home / "relative-link").symlink_to("../outside/canary.txt")
    (home / "evil-link").symlink_to(evil)
    (workspace / "escape").symlink_to(outside)
    data = home / ".openclaw" / "clawchats"
    data.mkdir()
    (data / "token").write_bytes(CANARY)
    (home / "data-link").symlink_to(data)
    policy = FilePolicy.create(
        home=str(home),
        read_roots=[str(home), str(tmp_path / "tmp")],
        agent_workspace=str(workspace),
        protected=[str(home / ".openclaw")],
        private=[str(data)],
    )
    files = LocalDiskFiles(private=[str(data)])
    app = create_app(build_router(file_routes(FileApi(policy, files))), HttpSettings(token=TOKEN))
    server = await start_http(app, "127.0.0.1", 0)
    try:
        yield Box(tmp_path, server)
    finally:
        await server.stop()


async def send(raw: Raw, box: Box, method: str, target: str, body: bytes = b"") -> RawResponse:
    lines = [
        f"{method} {target} HTTP/1.1",
        f"Host: 127.0.0.1:{box.server.port}",
        f"Authorization: Bearer {TOKEN}",
        f"Content-Length: {len(body)}",
        "Content-Type: text/plain; charset=utf-8",
        "Connection: close",
    ]
    return await raw(box.server.port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


# Each trick as it goes on the wire (the `path` query value), with the status every file route must answer.
# `{base}` is tmp_path (outside HOME), `{home}` is HOME.
TRICKS = [
    ("absolute path outside the roots", "/etc/passwd", 403),
    ("absolute path to the canary", "{base}/outside/canary.txt", 403),
    ("dot-dot out of HOME", "~/../outside/canary.txt", 403),
    ("dot-dot from an absolute path", "{home}/../outside/canary.txt", 403),
    ("dot-dot from the agent workspace", "../../../outside/canary.txt", 403),
    ("percent-encoded dot-dot-slash", "~%2F%2e%2e%2Foutside%2Fcanary.txt", 403),
    ("double-encoded dots", "~/%252e%252e/outside/canary.txt", 400),
    ("double-encoded slash", "~/..%252Foutside%252Fcanary.txt", 400),
    ("triple encoding", "~/%25252e%25252e/outside", 400),
    ("NUL byte", "~/notes.md%00.png", 400),
    ("newline", "~/notes.md%0A", 400),
    ("sibling sharing HOME's prefix", "{base}/home-evil/canary.txt", 403),
    ("/TMP is not /tmp", "{base}/TMP/canary.txt", 403),
    ("backslashes", "..%5C..%5Coutside%5Ccanary.txt", 400),
    ("raw backslashes", "..\\..\\outside\\canary.txt", 400),
    ("mixed separators", "~/..\\../outside/canary.txt", 400),
    ("overlong UTF-8 dot", "~/%C0%AE%C0%AE/outside/canary.txt", 400),
    ("fullwidth dots", "~/%EF%BC%8E%EF%BC%8E/outside/canary.txt", 400),
    ("another user's home", "~root/.ssh/id_rsa", 400),
    ("overlong path", "~/" + "a/" * 2100, 400),
    ("overlong component", "~/" + "a" * 300, 400),
    ("folder link out of HOME", "~/link-out/canary.txt", 403),
    ("file link out of HOME", "~/file-link", 403),
    ("relative link out of HOME", "~/relative-link", 403),
    ("link to the prefix sibling", "~/evil-link/canary.txt", 403),
    ("link out of the agent workspace", "./escape/canary.txt", 403),
    ("link out of the agent workspace, from HOME", "~/.openclaw/workspace/escape/canary.txt", 403),
]
ROUTES = [
    ("GET", "/api/file"),
    ("GET", "/api/workspace/file"),
    ("GET", "/api/workspace"),
    ("PUT", "/api/workspace/file"),
    ("DELETE", "/api/workspace/file"),
]


@pytest.mark.parametrize(("method", "route"), ROUTES, ids=[f"{m} {r}" for m, r in ROUTES])
@pytest.mark.parametrize(("name", "trick", "status"), TRICKS, ids=[t[0] for t in TRICKS])
async def test_every_trick_is_refused_and_nothing_outside_changes(
    box: Box, http_raw: Raw, method: str, route: str, name: str, trick: str, status: int
) -> None:
    before = box.snapshot()
    target = f"{route}?path={trick.format(base=box.base, home=box.home)}"
    body = b"pwned" if method == "PUT" else b""
    response = await send(http_raw, box, method, target, body)
    assert response.status == status, response.body
    assert set(response.json()) == {"error"}
    assert box.snapshot() == before
    assert (box.outside / "canary.txt").read_bytes() == CANARY
    assert (box.home / "file-link").is_symlink()
    assert (box.home / "link-out").is_symlink()


@pytest.mark.parametrize(("method", "route"), ROUTES, ids=[f"{m} {r}" for m, r in ROUTES])
@pytest.mark.parametrize("target", ["~/.openclaw/clawchats/token", "~/data-link/token", "~/data-link"])
async def test_the_connectors_own_data_is_out_of_reach(
    box: Box, http_raw: Raw, method: str, route: str, target: str
) -> None:
    """Its databases (a write would corrupt them under a live connection), its token and its device key: neither
    directly nor through a link elsewhere in HOME."""
    token = box.home / ".openclaw" / "clawchats" / "token"
    mtime = token.stat().st_mtime_ns
    response = await send(http_raw, box, method, f"{route}?path={target}", b"pwned" if method == "PUT" else b"")
    assert response.status == 403, response.body
    assert CANARY not in response.body
    assert token.read_bytes() == CANARY and token.stat().st_mtime_ns == mtime


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", "/api/file?path=~/missing.txt"),
        ("GET", "/api/workspace/file?path=~/missing.txt"),
        ("GET", "/api/workspace?path=~/missing"),
        ("DELETE", "/api/workspace/file?path=~/missing.txt"),
    ],
)
async def test_missing_is_not_found(box: Box, http_raw: Raw, method: str, target: str) -> None:
    assert (await send(http_raw, box, method, target)).status == 404


async def test_a_folder_swapped_for_a_link_between_check_and_write_writes_nothing_outside(
    box: Box, http_raw: Raw, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = box.snapshot()
    original = local_module._contained

    def contained_then_swap(path: PurePosixPath, roots: object) -> object:
        result = original(path, roots)  # type: ignore[arg-type]
        (box.home / "docs").rmdir()
        (box.home / "docs").symlink_to(box.outside)
        return result

    monkeypatch.setattr(local_module, "_contained", contained_then_swap)
    response = await send(http_raw, box, "PUT", "/api/workspace/file?path=~/docs/canary.txt", b"pwned")
    assert response.status == 403
    assert box.snapshot() == before
    assert (box.outside / "canary.txt").read_bytes() == CANARY


async def test_writes_inside_home_still_work(box: Box, http_raw: Raw) -> None:
    before = box.snapshot()
    response = await send(http_raw, box, "PUT", "/api/workspace/file?path=~/docs/new.md", "ok ✓".encode())
    assert (response.status, response.json()) == (200, {"ok": True})
    assert (box.home / "docs" / "new.md").read_text() == "ok ✓"
    deleted = await send(http_raw, box, "DELETE", "/api/workspace/file?path=~/docs/new.md")
    assert (deleted.status, deleted.json()) == (200, {"ok": True, "type": "file"})
    assert box.snapshot() == before


async def test_a_file_inside_home_is_served_with_its_type_and_nosniff(box: Box, http_raw: Raw) -> None:
    for route in ("/api/file", "/api/workspace/file"):
        response = await send(http_raw, box, "GET", f"{route}?path=~/notes.md")
        assert response.status == 200
        assert response.body == b"my notes"
        assert response.headers["content-type"].startswith("text/markdown")
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-length"] == str(len(b"my notes"))


async def test_a_range_of_a_file_is_served(box: Box, http_raw: Raw) -> None:
    lines = [
        "GET /api/workspace/file?path=~/notes.md HTTP/1.1",
        f"Host: 127.0.0.1:{box.server.port}",
        f"Authorization: Bearer {TOKEN}",
        "Range: bytes=3-7",
        "Connection: close",
    ]
    response = await http_raw(box.server.port, ("\r\n".join(lines) + "\r\n\r\n").encode())
    assert response.status == 206
    assert response.body == b"notes"


async def test_uploads_keep_only_the_base_name_and_never_leave_home(box: Box) -> None:
    before = box.snapshot()
    (box.home / "docs" / "canary.txt").write_text("mine")
    form = aiohttp.FormData()
    for name in ("../../outside/canary.txt", "canary.txt", "..\\..\\outside\\canary.txt"):
        form.add_field("files", b"uploaded", filename=name, content_type="text/plain")
    async with aiohttp.ClientSession() as session:
        url = f"{box.server.url}/api/workspace/upload?path=~/docs"
        async with session.post(url, data=form, headers={"Authorization": f"Bearer {TOKEN}"}) as response:
            assert response.status == 200
            assert await response.json() == {
                "ok": True,
                "uploaded": [
                    {"name": "canary (1).txt", "size": 8},
                    {"name": "canary (2).txt", "size": 8},
                    {"name": "canary (3).txt", "size": 8},
                ],
            }
    assert (box.home / "docs" / "canary.txt").read_text() == "mine"
    assert (box.home / "docs" / "canary (3).txt").read_bytes() == b"uploaded"
    assert box.snapshot() == before


async def test_uploads_through_a_link_out_are_refused(box: Box) -> None:
    before = box.snapshot()
    form = aiohttp.FormData()
    form.add_field("files", b"pwned", filename="canary.txt", content_type="text/plain")
    async with aiohttp.ClientSession() as session:
        url = f"{box.server.url}/api/workspace/upload?path=~/link-out"
        async with session.post(url, data=form, headers={"Authorization": f"Bearer {TOKEN}"}) as response:
            assert response.status == 403
    assert box.snapshot() == before


# --- what is served is the file that was checked ----------------------------------------------------------------------


def _swap_after_check(monkeypatch: pytest.MonkeyPatch, change: Callable[[], None]) -> None:
    """Run `change` once the adapter has checked the file and before the transport opens it to stream it."""
    original = local_module._file_info

    def checked_then_swap(path: PurePosixPath, roots: object) -> object:
        result = original(path, roots)  # type: ignore[arg-type]
        change()
        return result

    monkeypatch.setattr(local_module, "_file_info", checked_then_swap)


def _replace_with_link(path: Path, target: Path) -> Callable[[], None]:
    def change() -> None:
        if path.is_dir() and not path.is_symlink():
            for child in path.iterdir():
                child.unlink()
            path.rmdir()
        else:
            path.unlink()
        path.symlink_to(target)

    return change


def _replace_with_fifo(path: Path) -> Callable[[], None]:
    def change() -> None:
        path.unlink()
        os.mkfifo(path)

    return change


SWAPS: list[tuple[str, str, Callable[[Box], Callable[[], None]]]] = [
    (
        "the file for a link out",
        "~/docs/a.txt",
        lambda b: _replace_with_link(b.home / "docs" / "a.txt", b.outside / "canary.txt"),
    ),
    ("a folder for a link out", "~/docs/canary.txt", lambda b: _replace_with_link(b.home / "docs", b.outside)),
    (
        "a folder for a link into the private data",
        "~/docs/token",
        lambda b: _replace_with_link(b.home / "docs", b.home / ".openclaw" / "clawchats"),
    ),
    ("the file for a FIFO", "~/docs/a.txt", lambda b: _replace_with_fifo(b.home / "docs" / "a.txt")),
]
CASES = [
    *((route, *swap) for route in ("/api/file", "/api/workspace/file") for swap in SWAPS),
    (
        "/api/file",
        "the file in /tmp for a FIFO",
        "{base}/tmp/a.txt",
        lambda b: _replace_with_fifo(b.base / "tmp" / "a.txt"),
    ),
]


@pytest.mark.parametrize(("route", "name", "target", "swap"), CASES, ids=[f"{c[0]} {c[1]}" for c in CASES])
async def test_a_file_swapped_between_check_and_open_is_refused(
    box: Box,
    http_raw: Raw,
    monkeypatch: pytest.MonkeyPatch,
    route: str,
    name: str,
    target: str,
    swap: Callable[[Box], Callable[[], None]],
) -> None:
    """The transport opens the checked path again to stream it: a link or a FIFO swapped in meanwhile (by anyone
    who may write in a read root) is refused, with JSON, and nothing outside or private goes out (a FIFO would
    also hang a worker thread for good, and the request with it, without `O_NONBLOCK`)."""
    for mine in (box.home / "docs" / name for name in ("a.txt", "canary.txt", "token")):
        mine.write_text("mine")
    (box.base / "tmp" / "a.txt").write_text("mine")
    _swap_after_check(monkeypatch, swap(box))
    response = await send(http_raw, box, "GET", f"{route}?path={target.format(base=box.base)}")
    assert response.status in {403, 404}, response.body
    assert set(response.json()) == {"error"}
    assert CANARY not in response.body and b"mine" not in response.body
    assert response.headers["content-type"].startswith("application/json")


async def test_a_file_swapped_for_another_regular_file_is_refused(
    box: Box, http_raw: Raw, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a link, not a FIFO, but not the file that was checked either (a rename over it): refused too."""
    checked, other = box.home / "docs" / "a.txt", box.home / "docs" / "b.txt"
    checked.write_text("checked")
    other.write_text("swapped in")

    def rename_over() -> None:
        other.replace(checked)

    _swap_after_check(monkeypatch, rename_over)
    response = await send(http_raw, box, "GET", "/api/file?path=~/docs/a.txt")
    assert (response.status, set(response.json())) == (403, {"error"})


# --- names, file system failures and the private data in listings ---------------------------------------------------


async def test_a_long_multibyte_name_is_written_and_uploaded(box: Box, http_raw: Raw) -> None:
    """Names up to the file system's 255 bytes, of two bytes a character: the temporary files beside them must
    fit as well."""
    written = "é" * 127
    response = await send(http_raw, box, "PUT", f"/api/workspace/file?path=~/docs/{quote(written)}", b"text")
    assert (response.status, response.json()) == (200, {"ok": True})
    assert (box.home / "docs" / written).read_bytes() == b"text"
    form = aiohttp.FormData()
    form.add_field("files", b"uploaded", filename="é" * 127, content_type="text/plain")
    async with aiohttp.ClientSession() as session:
        url = f"{box.server.url}/api/workspace/upload?path=~/docs"
        async with session.post(url, data=form, headers={"Authorization": f"Bearer {TOKEN}"}) as uploaded:
            assert uploaded.status == 200, await uploaded.text()
            (saved,) = (await uploaded.json())["uploaded"]
    assert (box.home / "docs" / saved["name"]).read_bytes() == b"uploaded"
    assert not [p.name for p in (box.home / "docs").iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    ("failing", "code", "status"),
    [
        ("replace", errno.EROFS, 403),
        ("replace", errno.EACCES, 403),
        ("replace", errno.ENOSPC, 503),
        ("mkdir", errno.EDQUOT, 503),
        ("mkdir", errno.EIO, 503),
    ],
)
async def test_a_file_system_failure_is_a_client_error_without_the_path(
    box: Box, http_raw: Raw, monkeypatch: pytest.MonkeyPatch, failing: str, code: int, status: int
) -> None:
    """A read-only or full disk (we run as root, so chmod would not stop us: the call itself fails here)."""

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code), str(box.outside / "secret-path"))

    monkeypatch.setattr(os, failing, fail)
    response = await send(http_raw, box, "PUT", "/api/workspace/file?path=~/new-folder/new.md", b"text")
    assert (response.status, set(response.json())) == (status, {"error"})
    assert b"secret-path" not in response.body and str(box.base).encode() not in response.body


async def test_a_listing_never_shows_what_is_inside_the_private_data(box: Box, http_raw: Raw) -> None:
    (box.home / "token-link").symlink_to(box.home / ".openclaw" / "clawchats" / "token")
    for folder in ("~/.openclaw", "~"):
        response = await send(http_raw, box, "GET", f"/api/workspace?path={folder}&depth=3&hidden=true")
        assert response.status == 200, response.body
        paths = [entry["path"] for entry in response.json()["files"]]
        assert "workspace" in paths or ".openclaw/workspace" in paths
        assert not [p for p in paths if "clawchats/" in p or p.endswith(("token-link", "data-link"))], paths
