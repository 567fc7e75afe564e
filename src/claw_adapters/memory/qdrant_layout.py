"""How the Qdrant memory adapter shapes what it sends: point vectors that fit the collection, the mem0 payload, the
full-text index on `data` and the word filter built on it.

Kept apart from the store so that each rule can be read (and tested) on its own, without a client.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from qdrant_client import models

__all__ = [
    "DEFAULT_COLLECTION",
    "PLACEHOLDER_VECTOR_SIZE",
    "TEXT_FIELD",
    "DenseVector",
    "VectorLayout",
    "is_migration_collection",
    "local_words_filter",
    "query_words",
    "text_index_params",
    "text_tokens",
    "words_filter",
]

DEFAULT_COLLECTION = "memories"
"""The collection used when none is configured and the server holds none but mem0's migration collection."""

TEXT_FIELD = "data"
"""Where mem0 puts the text of a memory."""

PLACEHOLDER_VECTOR_SIZE = 1
"""Size of the vector of a collection this adapter creates without an embedder. mem0 collections always have a
vector, so ours do too (a one-float zero vector per point: Qdrant accepts it, and cosine distance scores it 0)."""

_WORD = re.compile(r"[^\W_]+")
"""A word as Qdrant's `word` tokenizer sees one: a run of letters and digits (qdrant-client's local mode uses the
same pattern, so a query splits into the same words on a server and in local mode)."""


def is_migration_collection(name: str) -> bool:
    """mem0 keeps its own bookkeeping in `mem0migrations`: never a collection of memories."""
    return "migration" in name.lower()


def text_tokens(text: str) -> list[str]:
    """Every word of a text as Qdrant's `word` tokenizer with `lowercase` makes them (`str.lower`, not the
    `casefold` of claw_core's `text_words`: a server's index keeps "straße" as it is), repeats included."""
    return [word.lower() for word in _WORD.findall(text)]


def query_words(query: str) -> list[str]:
    """The distinct words of a search query, in order. No words: the query matches nothing."""
    return list(dict.fromkeys(text_tokens(query)))


def words_filter(words: list[str]) -> models.Filter:
    """Every word must be in `data` (whole words, any case): evaluated by Qdrant, on its full-text index when there
    is one (see `text_index_params`), never by the client."""
    return models.Filter(
        must=[models.FieldCondition(key=TEXT_FIELD, match=models.MatchText(text=word)) for word in words]
    )


def local_words_filter(words: list[str]) -> models.Filter:
    """The same words as `words_filter`, in one MatchText: local mode requires every token of its text to be a whole
    token of `data` (the AND of the words), and tokenises each point's text once per condition, so one condition
    instead of one per word. Not sent to a server, whose MatchText follows the index's tokenizer (see ADR 0009)."""
    return models.Filter(must=[models.FieldCondition(key=TEXT_FIELD, match=models.MatchText(text=" ".join(words)))])


def text_index_params(*, scoring: bool) -> models.TextIndexParams:
    """The full-text index on `data`: Qdrant's default word tokenizer, lower-cased, no stemming nor stop words, so
    that a server matches exactly as local mode does. With `scoring`, the index also ranks by BM25."""
    return models.TextIndexParams(
        type=models.TextIndexType.TEXT,
        tokenizer=models.TokenizerType.WORD,
        lowercase=True,
        scoring=models.TextScoringParams(type=models.TextScoringType.BM25) if scoring else None,
    )


@dataclass(frozen=True, slots=True)
class DenseVector:
    """One dense vector of a collection. `name` is None for the unnamed vector (the layout mem0 creates)."""

    name: str | None
    size: int
    multi: bool = False

    def zeros(self) -> list[float] | list[list[float]]:
        return [[0.0] * self.size] if self.multi else [0.0] * self.size


@dataclass(frozen=True, slots=True)
class VectorLayout:
    """The dense vectors a point of the collection carries, read from the collection's own configuration, so that
    the points written here stay readable (and writable) by mem0 and by anything else that uses the collection."""

    vectors: tuple[DenseVector, ...]

    @classmethod
    def of(cls, config: models.VectorParams | Mapping[str, models.VectorParams] | None) -> VectorLayout:
        if config is None:
            return cls(())
        if isinstance(config, models.VectorParams):
            return cls((DenseVector(None, config.size, config.multivector_config is not None),))
        return cls(
            tuple(
                DenseVector(name, params.size, params.multivector_config is not None) for name, params in config.items()
            )
        )

    @property
    def unnamed(self) -> bool:
        return len(self.vectors) == 1 and self.vectors[0].name is None

    def target(self, dimensions: int) -> DenseVector | None:
        """The vector an embedder of `dimensions` fills and searches: the first single vector of that size."""
        return next((v for v in self.vectors if v.size == dimensions and not v.multi), None)

    def point_vector(self, embedding: list[float] | None) -> models.VectorStruct:
        """What a new point carries: the embedding in the target vector, zeros everywhere else."""
        target = None if embedding is None else self.target(len(embedding))
        values = {v.name: embedding if v is target and embedding is not None else v.zeros() for v in self.vectors}
        if self.unnamed:
            return values[None]
        return {str(name): value for name, value in values.items()}

    def target_update(self, embedding: list[float]) -> models.VectorStruct | None:
        """What replaces the vector of an edited point: only the target vector, or nothing when none fits."""
        target = self.target(len(embedding))
        if target is None:
            return None
        return embedding if target.name is None else {target.name: embedding}
