"""A sliding-window budget of failed authentications per client, with bounded memory."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

__all__ = ["FailureLimiter"]


class FailureLimiter:
    """Counts failures per client key over a sliding window; a client that used up its budget is blocked until its
    oldest failure leaves the window.

    Memory is bounded twice: each client keeps at most `limit` timestamps, and at most `max_clients` clients are
    tracked (expired ones are dropped first, then the least recently failing). Nobody is exempt, loopback included:
    a web page can make a browser send requests to 127.0.0.1.
    """

    def __init__(
        self,
        limit: int,
        *,
        window_s: float = 60.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit <= 0 or window_s <= 0 or max_clients <= 0:
            raise ValueError("limit, window_s and max_clients must be positive")
        self._limit = limit
        self._window_s = window_s
        self._max_clients = max_clients
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        """How many clients are tracked right now."""
        return len(self._failures)

    def retry_after(self, key: str) -> float | None:
        """Seconds until `key` may try again, or None when it is not blocked."""
        failures = self._failures.get(key)
        if failures is None:
            return None
        now = self._clock()
        self._expire(failures, now)
        if not failures:
            del self._failures[key]
            return None
        if len(failures) < self._limit:
            return None
        return max(failures[0] + self._window_s - now, 0.0)

    def record_failure(self, key: str) -> None:
        now = self._clock()
        failures = self._failures.get(key)
        if failures is None:
            if len(self._failures) >= self._max_clients:
                self._make_room(now)
            failures = self._failures[key] = deque(maxlen=self._limit)
        else:
            self._failures.move_to_end(key)
        failures.append(now)

    def _expire(self, failures: deque[float], now: float) -> None:
        horizon = now - self._window_s
        while failures and failures[0] <= horizon:
            failures.popleft()

    def _make_room(self, now: float) -> None:
        """Drop clients whose last failure has expired, then the least recently failing ones until a slot is free.

        Clients are kept in order of their last failure, so the expired ones are all at the front: this costs
        only what it evicts.
        """
        horizon = now - self._window_s
        while self._failures:
            oldest = next(iter(self._failures.values()))
            if oldest[-1] > horizon and len(self._failures) < self._max_clients:
                break
            self._failures.popitem(last=False)
