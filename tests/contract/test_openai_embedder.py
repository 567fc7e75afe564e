"""The OpenAI-compatible embedder against a small fake embeddings server on a free loopback port.

The fake (`fake_embeddings.py`) answers its vectors in the reverse order of the input and fails on demand. The last
test runs semantic search end to end: Qdrant (local mode) ranking by the fake's vectors.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator

import pytest

from claw_adapters.memory.openai_embedder import DIMENSIONS_PROBE, OpenAICompatibleEmbedder
from claw_adapters.memory.qdrant import QdrantMemoryStore
from claw_core.errors import ClawError, Unavailable, UpstreamError
from tests.contract.fake_embeddings import FakeEmbeddings, derived_vector, serve_fake_embeddings

API_KEY = "sk-test-0123456789abcdef-secret"
MODEL = "nomic-embed-text"


@pytest.fixture
async def fake() -> AsyncIterator[FakeEmbeddings]:
    async with serve_fake_embeddings() as state:
        yield state


@pytest.fixture
async def embedder(fake: FakeEmbeddings) -> AsyncIterator[OpenAICompatibleEmbedder]:
    client = OpenAICompatibleEmbedder(base_url=fake.base_url, model=MODEL, api_key=API_KEY)
    yield client
    await client.close()


def exception_chain(error: BaseException | None) -> list[BaseException]:
    """`error` and every exception it was raised from or during (a traceback would show them all)."""
    chain = []
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


# --- answers ---------------------------------------------------------------------------------------------------------


async def test_vectors_come_back_in_the_order_of_the_input(
    fake: FakeEmbeddings, embedder: OpenAICompatibleEmbedder
) -> None:
    texts = ["alpha", "beta gamma", "delta"]
    assert await embedder.embed(texts) == [derived_vector(t) for t in texts]
    assert embedder.dimensions == 3  # learned from the answer
    [(_, body)] = fake.requests
    assert body == {"model": MODEL, "input": texts}


async def test_many_texts_go_in_batches_and_keep_their_order(fake: FakeEmbeddings) -> None:
    client = OpenAICompatibleEmbedder(base_url=fake.base_url + "/", model=MODEL, batch_size=64)
    try:
        texts = [f"memory number {n}" for n in range(150)]
        assert await client.embed(texts) == [derived_vector(t) for t in texts]
    finally:
        await client.close()
    assert [len(body["input"]) for _, body in fake.requests] == [64, 64, 22]


async def test_no_texts_make_no_request(fake: FakeEmbeddings, embedder: OpenAICompatibleEmbedder) -> None:
    assert await embedder.embed([]) == []
    assert fake.requests == []


async def test_the_api_key_goes_as_a_bearer_token_and_only_when_given(fake: FakeEmbeddings) -> None:
    with_key = OpenAICompatibleEmbedder(base_url=fake.base_url, model=MODEL, api_key=API_KEY)
    without_key = OpenAICompatibleEmbedder(base_url=fake.base_url, model=MODEL)
    try:
        await with_key.embed(["x"])
        await without_key.embed(["x"])
    finally:
        await with_key.close()
        await without_key.close()
    assert fake.requests[0][0]["Authorization"] == f"Bearer {API_KEY}"
    assert "Authorization" not in fake.requests[1][0]
    assert API_KEY not in repr(with_key)


# --- failures --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "error", "expected"),
    [
        ("unauthorized", UpstreamError, "answered HTTP 401 (check the API key)"),
        ("server error", UpstreamError, "answered HTTP 500"),
        ("redirect", UpstreamError, "answered HTTP 302"),
        ("not json", UpstreamError, "answered with something that is not JSON"),
        ("no data", UpstreamError, 'answered with JSON without a "data" list'),
        ("one short", UpstreamError, "answered with 1 embeddings for 2 texts"),
        ("ragged", UpstreamError, "answered with vectors of different sizes"),
        ("not numbers", UpstreamError, "not a list of finite numbers"),
        ("duplicate index", UpstreamError, "answered with embeddings with wrong indexes"),
    ],
)
async def test_a_bad_answer_is_a_short_error_without_the_key(
    fake: FakeEmbeddings, embedder: OpenAICompatibleEmbedder, mode: str, error: type[ClawError], expected: str
) -> None:
    fake.mode = mode
    with pytest.raises(error) as caught:
        await embedder.embed(["first", "second"])
    message = str(caught.value)
    assert expected in message
    assert message.startswith("The embedder at http://127.0.0.1:")
    assert not [e for e in exception_chain(caught.value) if API_KEY in str(e)]


async def test_an_endpoint_that_does_not_answer_in_time_is_unavailable(fake: FakeEmbeddings) -> None:
    fake.mode = "hang"
    client = OpenAICompatibleEmbedder(base_url=fake.base_url, model=MODEL, api_key=API_KEY, timeout_s=0.2)
    try:
        with pytest.raises(Unavailable, match=r"did not answer within 0\.2 s") as caught:
            await client.embed(["x"])
    finally:
        await client.close()
    assert not [e for e in exception_chain(caught.value) if API_KEY in str(e)]


async def test_an_endpoint_that_refuses_connections_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again at once: nothing listens there
    client = OpenAICompatibleEmbedder(base_url=f"http://127.0.0.1:{port}/v1", model=MODEL, api_key=API_KEY)
    try:
        with pytest.raises(Unavailable, match=f"The embedder at http://127.0.0.1:{port} cannot be reached") as caught:
            await client.embed(["x"])
    finally:
        await client.close()
    assert not [e for e in exception_chain(caught.value) if API_KEY in str(e)]


async def test_vectors_of_another_size_than_configured_are_refused(fake: FakeEmbeddings) -> None:
    client = OpenAICompatibleEmbedder(base_url=fake.base_url, model=MODEL, dimensions=768)
    try:
        assert client.dimensions == 768
        with pytest.raises(UpstreamError, match="vectors of 3 numbers, not 768"):
            await client.embed(["x"])
    finally:
        await client.close()


# --- the vector size, the session ------------------------------------------------------------------------------------


async def test_an_unknown_size_is_learned_by_a_probe_in_the_background(
    fake: FakeEmbeddings, embedder: OpenAICompatibleEmbedder
) -> None:
    with pytest.raises(Unavailable, match="has not told its vector size yet"):
        _ = embedder.dimensions
    await fake.wait_for_requests(1)
    assert await embedder.ensure_dimensions() == 3  # the probe's answer, not a request of its own
    assert embedder.dimensions == 3
    assert [body["input"] for _, body in fake.requests] == [[DIMENSIONS_PROBE]]


async def test_a_failed_probe_is_logged_without_the_key_and_tried_again(
    fake: FakeEmbeddings, embedder: OpenAICompatibleEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    fake.mode = "unauthorized"
    with caplog.at_level(logging.WARNING, logger="claw_adapters.memory.openai_embedder"):
        embedder.prefetch_dimensions()
        await fake.wait_for_requests(1)
        with pytest.raises(UpstreamError):
            await embedder.ensure_dimensions()  # waits for the failed probe, then asks again itself
    assert "Cannot learn the embedder's vector size: The embedder at" in caplog.text
    assert "answered HTTP 401" in caplog.text
    assert API_KEY not in caplog.text
    fake.mode = "ok"
    with pytest.raises(Unavailable, match="has not told its vector size yet"):
        _ = embedder.dimensions  # starts the probe again
    await fake.wait_for_requests(3)
    assert await embedder.ensure_dimensions() == 3
    assert len(fake.requests) == 3


async def test_constructing_connects_nowhere_and_close_is_final(fake: FakeEmbeddings) -> None:
    client = OpenAICompatibleEmbedder(base_url=fake.base_url, model=MODEL, dimensions=3)
    assert client.dimensions == 3
    await client.close()  # never used: nothing to close
    assert fake.requests == []
    client = OpenAICompatibleEmbedder(base_url=fake.base_url, model=MODEL)
    await client.embed(["x"])
    await client.close()
    await client.close()
    with pytest.raises(Unavailable, match="closed"):
        await client.embed(["x"])
    assert len(fake.requests) == 1


def test_a_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        OpenAICompatibleEmbedder(base_url="ftp://127.0.0.1/v1", model=MODEL)


# --- end to end: semantic search in Qdrant -------------------------------------------------------------------------


async def test_qdrant_search_ranks_by_the_embedders_vectors(fake: FakeEmbeddings) -> None:
    # Both memories hold the query word; by word counts the car one wins (two "pet"s), by meaning the kitten one.
    kitten = "my pet kitten sleeps on the sofa"
    car = "pet insurance and pet cover for the car renew in May"
    fake.vectors = {kitten: [1.0, 0.0, 0.1], car: [0.0, 1.0, 0.1], "pet": [0.9, 0.1, 0.1]}
    embedder = OpenAICompatibleEmbedder(base_url=fake.base_url, model=MODEL)
    store = QdrantMemoryStore(url=None, path=":memory:", collection="memories", embedder=embedder)
    try:
        await embedder.ensure_dimensions()
        for text in (car, kitten):
            await store.add(text)
        found = await store.search("pet", limit=10)
        assert (await store.status()).semantic
    finally:
        await store.close()
        await embedder.close()
    assert [item.data for item in found] == [kitten, car]
    assert [body["input"] for _, body in fake.requests][-1] == ["pet"]
