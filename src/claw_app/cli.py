"""The `claw` command line: serve the connector, export and import a workspace's history, show the API token."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from claw_app import memory_copy, transfer_files
from claw_app.container import build_container
from claw_app.service import ConnectorService
from claw_app.settings import ConfigError, Settings, ensure_auth_token, load_settings, read_token_file
from claw_core.errors import ClawError, Unavailable

__all__ = ["main"]

log = logging.getLogger("claw")

_DESCRIPTION = """\
claw-connector: keeps your OpenClaw conversations in a local history and serves them to the ClawChats web app.

Configuration comes from, in order: these flags, the environment (PORT, CLAWCHATS_AUTH_TOKEN, CLAW_DATA_DIR, ...),
the gateway's openclaw.json, and ~/.openclaw/clawchats/connector.toml. See README.md for every setting."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="claw", description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-dir", type=Path, help="where history and the token live (default ~/.openclaw/clawchats)"
    )
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default INFO")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the connector until Ctrl-C or SIGTERM")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1; anything else needs a set token)")
    serve.add_argument("--port", type=int, help="port to listen on (default 3001; 0 picks a free one)")
    serve.add_argument(
        "--token-file",
        type=Path,
        help="read the API token from this file (a token is never taken on the command line, where `ps` shows it)",
    )
    serve.add_argument("--storage", choices=["sqlite", "memory"], help="history backend (default sqlite)")

    export = commands.add_parser("export", help="write a workspace's threads and messages as JSON")
    export.add_argument("--workspace", "-w", help="workspace name (default: the active one)")
    export.add_argument("--output", "-o", type=Path, help="file to write (default: stdout)")

    import_ = commands.add_parser("import", help="add the threads and messages of an export to a workspace")
    import_.add_argument("file", type=Path, help="an export written by `claw export` or GET /api/export")
    import_.add_argument("--workspace", "-w", help="workspace name (default: the active one)")

    commands.add_parser("token", help="print the API token clients must send as `Authorization: Bearer ...`")

    memory = commands.add_parser("memory", help="the memory store: copy it to another backend")
    memory_actions = memory.add_subparsers(dest="memory_action", required=True, metavar="ACTION")
    copy = memory_actions.add_parser(
        "copy",
        help="copy every memory from one backend to another (resumable, counts checked)",
        description=memory_copy.SPEC_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    copy.add_argument("--from", dest="source", required=True, metavar="SPEC", help="the backend to read")
    copy.add_argument("--to", dest="target", required=True, metavar="SPEC", help="the backend to write")
    copy.add_argument("--batch-size", type=int, default=100, metavar="N", help="memories per page (default 100)")
    copy.add_argument("--resume", type=Path, metavar="FILE", help="keep the progress here, and continue from it")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides: dict[str, Any] = {
        key: value
        for key, value in {
            "data_dir": args.data_dir,
            "log_level": args.log_level,
            "host": getattr(args, "host", None),
            "port": getattr(args, "port", None),
            "storage_backend": getattr(args, "storage", None),
        }.items()
        if value is not None
    }
    try:
        token_file: Path | None = getattr(args, "token_file", None)
        if token_file is not None:
            overrides["auth_token"] = read_token_file(token_file.expanduser())
        settings = load_settings(overrides=overrides)
        logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return int(asyncio.run(_run(args.command, args, settings)))
    except (ConfigError, ClawError) as error:
        print(f"claw: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


async def _run(command: str, args: argparse.Namespace, settings: Settings) -> int:
    if command == "serve":
        return await _serve(settings)
    if command == "token":
        settings, _ = ensure_auth_token(settings)
        print(settings.auth_token)
        return 0
    if command == "memory":
        resume = args.resume.expanduser() if args.resume is not None else None
        return await memory_copy.copy_command(
            args.source, args.target, settings, batch_size=args.batch_size, resume=resume
        )
    container = build_container(settings)
    workspaces = container.workspaces()
    await workspaces.start()
    try:
        workspace = workspaces.resolve(args.workspace)
        if command == "export":
            output = args.output.expanduser() if args.output is not None else None
            await transfer_files.export_to(container.transfer(), workspace, output, clock=container.clock())
        else:
            source = args.file.expanduser()
            await transfer_files.import_from(container.transfer(), workspace, source, clock=container.clock())
        return 0
    finally:
        await container.history_stores().close()


async def _serve(settings: Settings) -> int:
    settings.check_bind()
    settings, created = ensure_auth_token(settings)
    service = ConnectorService(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        try:
            url = await service.start()
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise
            raise Unavailable(
                f"cannot listen on {settings.host}:{settings.port}: the port is in use (another connector, or "
                "another program, already listens there; `--port` picks another)"
            ) from None
        log.info("listening on %s (history in %s)", url, settings.data_dir)
        log.info("API token %s %s", "created in" if created else "read from", settings.token_file)
        await stop.wait()
        log.info("shutting down")
    finally:
        await service.stop()
    return 0
