"""What a database job on a worker thread hands back to the event loop, and how its caller hears of it."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["Outcome", "settle"]

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
