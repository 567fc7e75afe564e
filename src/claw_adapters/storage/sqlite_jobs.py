"""Database jobs: functions of a connection run on a worker thread, what they hand back, and how the caller on
the event loop hears of it."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["Job", "Outcome", "settle"]

_T = TypeVar("_T")

Job = Callable[[sqlite3.Connection], _T]
"""Runs on the thread that owns the connection, and only there."""

Outcome = tuple[bool, Any]
"""(True, result) or (False, the exception the job raised)."""


def settle(future: asyncio.Future[Any], outcome: Outcome) -> None:
    """On the loop: give the job's result or exception to its caller, unless the caller was cancelled (the job
    ran, or not, all the same)."""
    if future.done():
        return
    succeeded, value = outcome
    if succeeded:
        future.set_result(value)
    else:
        future.set_exception(value)
