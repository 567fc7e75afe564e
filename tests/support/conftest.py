"""Fixtures of the harness smoke test: one fake model and one real OpenClaw gateway for the whole session.

The same fixtures, moved to tests/conftest.py, give every test directory one shared gateway."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fake_model import FakeModel
from tests.support.openclaw_gateway import GatewayProcess, session_fake_model, session_gateway


@pytest.fixture(scope="session")
def fake_model() -> Iterator[FakeModel]:
    yield from session_fake_model()


@pytest.fixture(scope="session")
def openclaw_gateway(fake_model: FakeModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    yield from session_gateway(fake_model, tmp_path_factory.mktemp("openclaw"))


@pytest.fixture
def model(fake_model: FakeModel) -> Iterator[FakeModel]:
    """The session's fake model, back to the echo default before and after the test."""
    fake_model.reset()
    yield fake_model
    fake_model.reset()
