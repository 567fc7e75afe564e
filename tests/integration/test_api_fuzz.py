"""Fuzz every operation of the HTTP API from its own OpenAPI description, against a real connector.

The connector runs in this process on a free loopback port, with SQLite history and the default SQLite memory store
in temporary folders, HOME pointed at a small temporary tree (the only folder its file routes may read or write) and
no gateway (its address is a loopback port nobody listens on). The description is read from the live
`/api/openapi.json`; for each operation Schemathesis then sends its coverage cases (boundary values and wrong types
of each input in turn) and Hypothesis-generated valid (positive) and invalid (negative) requests.

What every answer must do: never be a 5xx other than 503 for a backend that is down (`/api/agents` without a gateway
is exactly that, so it is allowed there and only there), carry the content type the description announces, match
its documented schema (errors are `{error}`), and, for an error, be a JSON object with a string `error` (the house
rule: a client's bad input is a 4xx `{error}`).

Known ids are seeded before each operation (threads, a message, a memory, an upload, workspaces, files in HOME) and
substituted for the generated path parameters in a share of the positive cases, so the fuzzer reaches the code
behind a found thread and not only the 404s; the test fails if an operation never got past its refusals.

How the awkward operations are fuzzed:
- the two multipart uploads (`/api/threads/{id}/upload`, `/api/workspace/upload`): Schemathesis builds the
  multipart bodies from the described `files` field (binary items), and its negative cases send other fields,
  other media types and malformed parts;
- `PUT /api/workspace/file` takes raw UTF-8 text: described as `text/plain`, so Schemathesis sends strings;
- the file reads answer a `FileBody` (any type, `Range` honoured): described as `*/*` with 206 and 416;
- `/api/agents` can only answer 503 here (no gateway): it is fuzzed for its refusals, its success is not reached;
- `/api/openapi.json` is the description itself, which Schemathesis leaves out of the operations it loads;
- the browser relay WebSockets (`/`, `/ws`) are not HTTP API operations and are not in the description.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, BaseSchema, Case, GenerationMode
from schemathesis.checks import CheckContext
from schemathesis.core.failures import FailureGroup
from schemathesis.core.transport import Response

from claw_app.service import ConnectorService
from claw_app.settings import load_settings

pytestmark = [
    pytest.mark.integration,
    # Schemathesis' own strategies use `random`; that is its business, not a finding about the API.
    pytest.mark.filterwarnings("ignore:Do not use the `random` module:hypothesis.errors.HypothesisDeprecationWarning"),
]

TOKEN = "fuzz-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXAMPLES_PER_MODE = 30
"""Cases per operation and generation mode: with the ~900 coverage cases, about 25 s on two cores."""
EXTREME_PICK = 5
"""The share of positive cases (one in six) whose integers are pushed to extremes, see `with_extreme_numbers`."""
NEEDS_THE_GATEWAY = "GET /api/agents"
"""The one operation with no success here: it asks the gateway, and there is none (503, as documented)."""

SEED_THREADS = ("fuzz-thread-1", "fuzz-thread-2")
DEFAULT_WORKSPACE = "default"
SEED_WORKSPACE = "fuzz-ws"
SEED_MESSAGE = "fuzz-message-1"
SEED_PATHS = ("~/notes/todo.txt", "~/notes", "~/.openclaw/workspace/MEMORY.md", "~/.openclaw/workspace", "notes.md")
"""Paths the file routes may find (relative ones start at the agent's workspace)."""


# -- the checks ---------------------------------------------------------------------------------------------------


@schemathesis.check
def error_is_json_object(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every 4xx/5xx answer is `{"error": "<text>"}` as JSON."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), f"error {response.status_code} with type {content_type!r}"
    try:
        body = json.loads(response.content)
    except ValueError:
        raise AssertionError(f"error {response.status_code} is not JSON: {response.content[:200]!r}") from None
    assert isinstance(body, dict), f"error {response.status_code} is not a JSON object: {body!r}"
    assert isinstance(body.get("error"), str), f"error {response.status_code} has no string `error`: {body!r}"
    return True


@schemathesis.check
def server_error_only_for_a_down_backend(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """No 5xx, except 503 from `/api/agents`, whose backend (the gateway) is down on purpose here."""
    if response.status_code < 500:
        return None
    down = response.status_code == 503 and case.operation.label == NEEDS_THE_GATEWAY
    assert down, f"server error {response.status_code}: {response.content[:300]!r}"
    return True


CHECKS = [
    server_error_only_for_a_down_backend,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.response_schema_conformance,
    error_is_json_object,
]
"""`not_a_server_error` is ours with one exception: 503 for the missing gateway, which the description documents."""


CONFIG = schemathesis.Config.from_dict({"generation": {"with-security-parameters": False}})
"""Negative cases keep the token: a request without it is a 401 (tests/integration/test_http_security.py covers
that), and a few of them in a row trip the failed-authentication limiter, which then answers this client 429 to
everything and would leave the rest of the run fuzzing nothing."""


# -- the connector ------------------------------------------------------------------------------------------------


@contextmanager
def unused_loopback_port() -> Iterator[int]:
    """A loopback port held (bound, never listening) for the block, so connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


@asynccontextmanager
async def fuzz_connector(root: Path) -> AsyncIterator[ConnectorService]:
    home = root / "home"
    home.mkdir()
    with unused_loopback_port() as gateway_port:
        env = {
            "HOME": str(home),
            "OPENCLAW_STATE_DIR": str(home / ".openclaw"),
            "GATEWAY_WS_URL": f"ws://127.0.0.1:{gateway_port}",
        }
        overrides: dict[str, object] = {
            "data_dir": root / "data",
            "port": 0,
            "auth_token": TOKEN,
            "storage_backend": "sqlite",
            "file_roots": [str(home)],
            "log_level": "WARNING",
        }
        service = ConnectorService(load_settings(env=env, overrides=overrides))
        await service.start()
        try:
            yield service
        finally:
            await service.stop()


# -- seeding ------------------------------------------------------------------------------------------------------


@dataclass
class Known:
    """Values that exist on the server, by path (or query) parameter name."""

    values: dict[str, list[str]] = field(default_factory=dict)

    def add(self, name: str, value: str) -> None:
        if value not in self.values.setdefault(name, []):
            self.values[name].append(value)


def write_home_tree(home: Path) -> None:
    (home / "notes").mkdir(parents=True, exist_ok=True)
    (home / "notes" / "todo.txt").write_text("buy milk\n")
    (home / "notes" / "pic.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    workspace = home / ".openclaw" / "workspace"
    (workspace / "memory").mkdir(parents=True, exist_ok=True)
    (workspace / "MEMORY.md").write_text("# memory\n")
    (workspace / "memory" / "2026-01-01.md").write_text("a day\n")
    (workspace / "notes.md").write_text("notes\n")


class Seeder:
    """Puts the known workspaces, threads, message, memory and upload back before each operation is fuzzed (a
    fuzzed DELETE may have removed them, a fuzzed activate moved the threads' workspace), and says their ids."""

    def __init__(self, base_url: str, home: Path) -> None:
        self.base_url = base_url
        self.home = home
        self.session = requests.Session()
        self.session.headers.update(AUTH)
        self.memory_id: str | None = None
        self.upload_path: str | None = None

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, self.base_url + path, timeout=10, **kwargs)

    def seed(self) -> Known:
        known = Known()
        write_home_tree(self.home)
        for workspace in (DEFAULT_WORKSPACE, SEED_WORKSPACE):
            self.call("POST", "/api/workspaces", json={"name": workspace})
            known.add("name", workspace)
        self.ok("POST", f"/api/workspaces/{DEFAULT_WORKSPACE}/activate")
        for thread in SEED_THREADS:
            self.call("POST", "/api/threads", json={"id": thread})
            known.add("id", thread)
            known.add("threadId", thread)
        message = {"id": SEED_MESSAGE, "role": "user", "content": "hello fuzz", "timestamp": 1_700_000_000_000}
        self.ok("POST", f"/api/threads/{SEED_THREADS[0]}/messages", json=message)
        known.add("messageId", SEED_MESSAGE)
        if self.memory_id is None or self.call("GET", f"/api/memory/{self.memory_id}").status_code != 200:
            self.memory_id = self.ok("POST", "/api/memory", json={"data": "the user likes tea"})["memory"]["id"]
        known.add("id", self.memory_id)
        if self.upload_path is None or self.call("GET", self.upload_path).status_code != 200:
            files = {"files": ("a.txt", b"attached\n", "text/plain")}
            uploaded = self.ok("POST", f"/api/threads/{SEED_THREADS[0]}/upload", files=files)
            self.upload_path = uploaded["files"][0]["path"]
        known.add("fileId", self.upload_path.rsplit("/", 1)[-1])
        return known

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.call(method, path, **kwargs)
        assert response.status_code in (200, 201), (method, path, response.status_code, response.text)
        return response.json()


# -- the fuzzing --------------------------------------------------------------------------------------------------


def with_known_values(case: Case, known: Known, pick: int) -> Case:
    """When `pick` points at a known value, put it in place of each generated path parameter (and of the `path`
    query of the file routes, a `workspace` in the query or the body), and act on the active workspace, where the
    known threads are; otherwise leave the case as generated."""
    for name in list(case.path_parameters or {}):
        choices = known.values.get(name, [])
        if pick < len(choices):
            case.path_parameters[name] = choices[pick]
            if case.headers is not None:
                case.headers.pop("X-Workspace", None)
    if case.query is not None and "path" in case.query and pick < len(SEED_PATHS):
        case.query["path"] = SEED_PATHS[pick]
    workspaces = known.values.get("name", [])
    if pick < len(workspaces):
        if case.query is not None and "workspace" in case.query:
            case.query.pop("workspace")
        if isinstance(case.body, dict) and "workspace" in case.body:
            case.body["workspace"] = workspaces[pick]
    return case


@dataclass
class FuzzRun:
    """What a run found: the failures (operation and mode, then Schemathesis' account with a curl to reproduce)
    and the statuses each operation answered."""

    failures: list[str] = field(default_factory=list)
    statuses: dict[str, set[int]] = field(default_factory=dict)
    nothing_to_negate: set[str] = field(default_factory=set)
    """Operations Schemathesis could make no invalid request for (only free-form path segments, or nothing)."""


def with_extreme_numbers(case: Case) -> Case:
    """Every integer of the query and of a JSON object body pushed to +-10**30, far past what any store holds
    (Schemathesis draws mostly small numbers, and these once reached SQLite and answered 500), on the active
    workspace so that they get as far as the store."""
    if case.headers is not None:
        case.headers.pop("X-Workspace", None)
    for values in (case.query, case.body):
        if isinstance(values, dict):
            for name, value in values.items():
                if isinstance(value, int) and not isinstance(value, bool):
                    values[name] = -(10**30) if value < 0 else 10**30
    return case


def fuzz_operation(operation: APIOperation, mode: GenerationMode, base_url: str, known: Known, run: FuzzRun) -> None:
    @given(case=operation.as_strategy(generation_mode=mode), pick=st.integers(min_value=0, max_value=EXTREME_PICK))
    @settings(
        max_examples=EXAMPLES_PER_MODE,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: the first failing case is reported as it is
        suppress_health_check=list(HealthCheck),
    )
    def one_case(case: Case, pick: int) -> None:
        if mode is GenerationMode.POSITIVE:
            case = with_known_values(case, known, pick)
            if pick == EXTREME_PICK:
                case = with_extreme_numbers(case)
        response = case.call(base_url=base_url, headers=AUTH, timeout=10)
        run.statuses.setdefault(operation.label, set()).add(response.status_code)
        case.validate_response(response, checks=CHECKS, headers=AUTH)

    one_case()


def cover_operation(schema: BaseSchema, operation: APIOperation, base_url: str, known: Known, run: FuzzRun) -> None:
    """Schemathesis' coverage cases: for each input in turn, its boundary values (a minimum, one past it, a
    maximum), each wrong JSON type, a repeated query parameter, an unknown one, a body of another media type...,
    with the first known ids (so they get past the 404s)."""
    config = schema.config.generation_for(operation=operation)
    for case in schema.iter_coverage_cases(operation, generation_modes=list(GenerationMode), generation_config=config):
        with_known_values(case, known, 0)  # in place
        response = case.call(base_url=base_url, headers=AUTH, timeout=10)
        run.statuses.setdefault(operation.label, set()).add(response.status_code)
        case.validate_response(response, checks=CHECKS, headers=AUTH)


def fuzz_everything(port: int, home: Path) -> FuzzRun:
    """Fuzz each operation of the live description in both modes, the known values seeded afresh before each."""
    base_url = f"http://127.0.0.1:{port}"
    schema = schemathesis.openapi.from_url(
        f"{base_url}/api/openapi.json", config=CONFIG, headers={**AUTH, "Host": f"127.0.0.1:{port}"}, timeout=10
    )
    seeder = Seeder(base_url, home)
    run = FuzzRun()
    for result in schema.get_all_operations():
        operation = result.ok()
        try:
            cover_operation(schema, operation, base_url, seeder.seed(), run)
        except FailureGroup as error:
            run.failures.append(f"{operation.label} [coverage]: {error}")
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            known = seeder.seed()
            try:
                fuzz_operation(operation, mode, base_url, known, run)
            except Unsatisfiable:
                # Negative mode on an operation whose only inputs are path segments of any text (or which has none):
                # there is no invalid request to make. The test checks that no operation with more lands here.
                assert mode is GenerationMode.NEGATIVE, operation.label
                run.nothing_to_negate.add(operation.label)
            except (Exception, FailureGroup) as error:  # fuzz every operation, then report all failures together
                run.failures.append(f"{operation.label} [{mode.value}]: {error}")
    return run


async def test_every_operation_answers_within_the_house_rules(tmp_path: Path) -> None:
    async with fuzz_connector(tmp_path) as service:
        run = await asyncio.to_thread(fuzz_everything, service.port, tmp_path / "home")
        routes = service.router().routes
    assert not run.failures, "\n\n".join(run.failures)
    # Every route is described and fuzzed, but the description itself: Schemathesis leaves out the URL it loaded.
    assert set(run.statuses) == {f"{route.method} {route.path}" for route in routes} - {"GET /api/openapi.json"}
    with_inputs = {
        f"{route.method} {route.path}"
        for route in routes
        if route.query or route.headers or route.workspace_header or route.body_schema is not None
    }
    assert not run.nothing_to_negate & with_inputs, "an operation with inputs was never fuzzed with invalid ones"
    never_succeeded = sorted(
        label for label, seen in run.statuses.items() if not any(200 <= status < 300 for status in seen)
    )
    assert never_succeeded == [NEEDS_THE_GATEWAY], "the seeding no longer lets these reach their success path"
