"""An `Embedder` over an OpenAI-compatible embeddings endpoint (OpenAI, Ollama, LM Studio, vLLM, llama.cpp ...).

`POST <base_url>/embeddings` with ``{"model": ..., "input": [...]}`` answers ``{"data": [{"embedding": [...],
"index": i}, ...]}``. A mem0 collection holds vectors of the model mem0 was configured with, so the query must be
embedded by that same model: the user names it (docs/adr/0011-embedder-by-configuration.md).

The stores read `dimensions` before they embed anything (to pick the vector of a collection, to create one), so a
size that is not configured is learned by embedding a probe text: `prefetch_dimensions()` starts that in the
background (the service does at start), and until an answer came `dimensions` raises `Unavailable` (and starts the
probe again if none is running). Nothing connects before the first embedding or probe.

Failures: the endpoint unreachable or too slow is `Unavailable` (503); an answer that is not a 2xx or not the
expected JSON is `UpstreamError` (502). Messages name the endpoint by scheme, host and port only, and never hold
the API key nor the endpoint's own error text (OpenAI's 401 quotes part of the key).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Sequence
from typing import Final
from urllib.parse import urlsplit

import aiohttp

from claw_core.errors import ClawError, Unavailable, UpstreamError

__all__ = ["BATCH_SIZE", "DIMENSIONS_PROBE", "TIMEOUT_S", "OpenAICompatibleEmbedder"]

log = logging.getLogger(__name__)

BATCH_SIZE: Final = 64
"""Texts per request: well under every server's limit (OpenAI takes 2,048), small enough for a local model."""
TIMEOUT_S: Final = 30.0
"""Per request. A local server loads its model on the first request, which can take seconds."""
DIMENSIONS_PROBE: Final = "dimensions probe"
"""The text embedded to learn the size of the model's vectors when it is not configured."""

_HINTS: Final = {
    401: " (check the API key)",
    403: " (check the API key)",
    404: " (check the URL, which ends before /embeddings, and the model name)",
    429: " (rate limited; try again later)",
}


class OpenAICompatibleEmbedder:
    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        dimensions: int | None = None,
        batch_size: int = BATCH_SIZE,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        """`base_url` is what comes before ``/embeddings`` (e.g. ``http://127.0.0.1:11434/v1`` for Ollama).
        `dimensions` None: learned from the first answer. Nothing connects here."""
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the embedder URL must be an http:// or https:// URL")
        if dimensions is not None and dimensions < 1:
            raise ValueError("dimensions must be at least 1")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.model = model
        self.endpoint = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        """Where the embedder is, for messages: scheme, host and port, nothing that could be a secret."""
        self._url = base_url.rstrip("/") + "/embeddings"
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._dimensions = dimensions
        self._batch_size = batch_size
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._probe: asyncio.Task[None] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"OpenAICompatibleEmbedder(endpoint={self.endpoint!r}, model={self.model!r})"

    @property
    def dimensions(self) -> int:
        """The size of the model's vectors: configured, or learned from an answer. Unknown yet: `Unavailable`."""
        if self._dimensions is None:
            self.prefetch_dimensions()
            raise Unavailable(f"The embedder at {self.endpoint} has not told its vector size yet; try again")
        return self._dimensions

    def prefetch_dimensions(self) -> None:
        """Start learning `dimensions` in the background, unless known or already under way. Needs a running loop;
        a failure is logged, and the next read of `dimensions` tries again."""
        if self._dimensions is not None or self._closed or (self._probe is not None and not self._probe.done()):
            return
        try:
            self._probe = asyncio.get_running_loop().create_task(self._learn_dimensions())
        except RuntimeError:  # no running loop: the next read of `dimensions` inside one starts it
            self._probe = None

    async def ensure_dimensions(self) -> int:
        """`dimensions`, waiting for the probe under way or asking the endpoint when it is not known."""
        if self._dimensions is None and self._probe is not None and not self._probe.done():
            await asyncio.wait([self._probe])  # never raises: a failed or cancelled probe is asked again below
        if self._dimensions is None:
            await self.embed([DIMENSIONS_PROBE])
        assert self._dimensions is not None
        return self._dimensions

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self._batch_size):
            vectors.extend(await self._embed_batch(list(texts[start : start + self._batch_size])))
        return vectors

    async def close(self) -> None:
        """Idempotent: stop the probe, close the HTTP session. Later calls are `Unavailable`."""
        self._closed = True
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- one request ----------------------------------------------------------------------------------------------

    async def _learn_dimensions(self) -> None:
        try:
            await self.embed([DIMENSIONS_PROBE])
        except ClawError as error:
            log.warning("Cannot learn the embedder's vector size: %s", error.message)

    async def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        answer = await self._post({"model": self.model, "input": texts})
        vectors = self._vectors(answer, len(texts))
        size = len(vectors[0])
        if self._dimensions is None:
            self._dimensions = size
        elif size != self._dimensions:
            raise self._malformed(f"vectors of {size} numbers, not {self._dimensions}")
        return vectors

    async def _post(self, body: dict[str, object]) -> object:
        if self._closed:
            raise Unavailable("The embedder is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        try:
            async with self._session.post(self._url, json=body, allow_redirects=False) as response:
                if not 200 <= response.status < 300:
                    raise UpstreamError(
                        f"The embedder at {self.endpoint} answered HTTP {response.status}"
                        f"{_HINTS.get(response.status, '')}",
                        code="EMBEDDER_ERROR",
                        retryable=response.status == 429 or response.status >= 500,
                    )
                raw = await response.read()
        except TimeoutError:
            raise Unavailable(f"The embedder at {self.endpoint} did not answer within {self._timeout_s:g} s") from None
        except aiohttp.ClientError as error:
            # `from None` and only the class name: aiohttp's messages can quote the request, headers included
            raise Unavailable(f"The embedder at {self.endpoint} cannot be reached ({type(error).__name__})") from None
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise self._malformed("something that is not JSON") from None

    def _vectors(self, answer: object, count: int) -> list[list[float]]:
        """The embeddings of `answer` in the order of the input, checked: one per text, all of one size, finite."""
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list):
            raise self._malformed('JSON without a "data" list')
        if len(data) != count:
            raise self._malformed(f"{len(data)} embeddings for {count} texts")
        by_index: dict[int, list[float]] = {}
        for position, item in enumerate(data):
            if not isinstance(item, dict):
                raise self._malformed("an embedding that is not an object")
            index = item.get("index", position)
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count or index in by_index:
                raise self._malformed("embeddings with wrong indexes")
            by_index[index] = self._vector(item.get("embedding"))
        vectors = [by_index[index] for index in range(count)]
        if len({len(vector) for vector in vectors}) != 1:
            raise self._malformed("vectors of different sizes")
        return vectors

    def _vector(self, raw: object) -> list[float]:
        if not isinstance(raw, list) or not raw:
            raise self._malformed("an embedding that is not a list of numbers")
        if not all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in raw):
            raise self._malformed("an embedding that is not a list of finite numbers")
        return [float(x) for x in raw]

    def _malformed(self, what: str) -> UpstreamError:
        return UpstreamError(f"The embedder at {self.endpoint} answered with {what}", code="EMBEDDER_ERROR")
