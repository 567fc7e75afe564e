"""A bag-of-words embedder by the hashing trick: offline, deterministic, and blind to meaning.

Each word (letters and digits, lower-cased) lands in one of `dimensions` buckets chosen by a hash of the word, with
a sign also chosen by the hash; the counts are scaled to unit length. The cosine of two such vectors grows with the
words two texts share, so it ranks the memory sharing the most words with a query first. It knows nothing of
synonyms: it is here to exercise the vector path of the memory adapters without a model, not to understand text.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from claw_core.services.memory_payloads import text_words

__all__ = ["HashingEmbedder"]


class HashingEmbedder:
    def __init__(self, dimensions: int = 256) -> None:
        if dimensions < 1:
            raise ValueError("dimensions must be at least 1")
        self._dimensions = dimensions

    @property
    def dimensions(self) -> int:
        return self._dimensions

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.embed_one(text) for text in texts]

    def embed_one(self, text: str) -> list[float]:
        """The unit vector of `text`; all zeros for a text without words."""
        vector = [0.0] * self._dimensions
        for word in text_words(text):
            digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
            bucket = int.from_bytes(digest[:7], "big") % self._dimensions
            vector[bucket] += 1.0 if digest[7] & 1 else -1.0
        norm = math.sqrt(sum(value * value for value in vector))
        return vector if norm == 0.0 else [value / norm for value in vector]
