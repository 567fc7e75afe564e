"""Export to and import from files, for `claw export` and `claw import`.

Export streams one thread at a time into a temporary file that replaces the target only when complete, so a
crash never leaves a truncated export where a good one was. Import commits in batches: a second run of the same
file after an interruption inserts only what is still missing (import skips existing threads and messages).
Both show a progress bar on stderr.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from claw_core.errors import Invalid
from claw_core.model import ThreadExport, Workspace
from claw_core.ports import Clock
from claw_core.services.transfer import TransferService, parse_export_threads

__all__ = ["IMPORT_BATCH_MESSAGES", "export_to", "import_from"]

IMPORT_BATCH_MESSAGES = 20_000
"""Messages per import transaction: big enough to be fast, small enough to show progress and bound a retry."""


async def export_to(transfer: TransferService, workspace: Workspace, output: Path | None, *, clock: Clock) -> None:
    total = await transfer.count_threads(workspace)
    if output is None:
        await _write_export(transfer, workspace, sys.stdout, total, clock)
        return
    descriptor, temporary = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            await _write_export(transfer, workspace, stream, total, clock)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, output)
    except BaseException:
        os.unlink(temporary)
        raise


async def _write_export(
    transfer: TransferService, workspace: Workspace, stream: IO[str], total: int, clock: Clock
) -> None:
    head = {"workspace": workspace.name, "exportedAt": clock.now_ms()}
    stream.write(json.dumps(head, ensure_ascii=False)[:-1] + ',"threads":[')
    with tqdm(total=total, unit="thread", desc="export", file=sys.stderr, disable=None) as progress:
        first = True
        async for thread in transfer.export_threads(workspace):
            stream.write(("" if first else ",") + "\n" + json.dumps(thread.to_json(), ensure_ascii=False))
            first = False
            progress.update(1)
    stream.write("\n]}\n")


async def import_from(transfer: TransferService, workspace: Workspace, source: Path, *, clock: Clock) -> None:
    document = await asyncio.to_thread(_read_export, source)
    threads = parse_export_threads(document.get("threads"), now=clock.now_ms())
    total_messages = sum(len(t.messages) for t in threads)
    imported_threads = imported_messages = 0
    with tqdm(total=total_messages, unit="msg", desc="import", file=sys.stderr, disable=None) as progress:
        for batch in _batches(threads, IMPORT_BATCH_MESSAGES):
            counts = await transfer.import_threads(workspace, batch)
            imported_threads += counts.threads
            imported_messages += counts.messages
            progress.update(sum(len(t.messages) for t in batch))
    print(
        f"imported {imported_threads} of {len(threads)} threads and {imported_messages} of {total_messages} messages "
        f"into workspace {workspace.name!r} (the rest were already there)",
        file=sys.stderr,
    )


def _read_export(source: Path) -> dict[str, Any]:
    try:
        with source.open("rb") as stream:
            document = json.load(stream)
    except OSError as error:
        raise Invalid(f"cannot read {source}: {error.strerror}") from None
    except ValueError as error:
        raise Invalid(f"{source} is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise Invalid(f"{source} is not an export (expected a JSON object with a threads array)")
    return document


def _batches(threads: Sequence[ThreadExport], max_messages: int) -> Iterator[Sequence[ThreadExport]]:
    """Consecutive runs of whole threads holding at most `max_messages` messages (one bigger thread goes alone)."""
    start = 0
    while start < len(threads):
        end, size = start, 0
        while end < len(threads) and (size == 0 or size + len(threads[end].messages) <= max_messages):
            size += len(threads[end].messages)
            end += 1
        yield threads[start:end]
        start = end
