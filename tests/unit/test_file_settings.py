"""The file roots setting and how the composition root turns the settings into the file routes' policy."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path, PurePosixPath

import pytest

from claw_app.service import ConnectorService
from claw_app.settings import ConfigError, load_settings
from claw_core.api.contract import ApiRequest


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


def test_file_roots_default_to_none_configured(home: Path) -> None:
    settings = load_settings({"HOME": str(home)})
    assert settings.file_roots == ()
    assert settings.home_dir == home


def test_file_roots_from_the_environment_are_a_path_list(home: Path) -> None:
    settings = load_settings({"HOME": str(home), "CLAW_FILE_ROOTS": "~/projects:/srv/shared:~/projects"})
    assert settings.file_roots == (home / "projects", Path("/srv/shared"))


def test_file_roots_from_the_toml_file(home: Path) -> None:
    config = home / ".openclaw" / "clawchats" / "connector.toml"
    config.parent.mkdir(parents=True)
    config.write_text('file_roots = ["~", "/data/files"]\n')
    assert load_settings({"HOME": str(home)}).file_roots == (home, Path("/data/files"))


@pytest.mark.parametrize(
    ("value", "problem"),
    [("/", "every file"), ("relative/dir", "absolute"), ("/ok:notes", "absolute")],
)
def test_bad_file_roots_are_config_errors(home: Path, value: str, problem: str) -> None:
    with pytest.raises(ConfigError, match="CLAW_FILE_ROOTS") as error:
        load_settings({"HOME": str(home), "CLAW_FILE_ROOTS": value})
    assert problem in error.value.message


def _service(home: Path, file_roots: tuple[Path, ...] = ()) -> ConnectorService:
    settings = load_settings({"HOME": str(home), "CLAWCHATS_AUTH_TOKEN": "t" * 24})
    return ConnectorService(dataclasses.replace(settings, home_dir=home, file_roots=file_roots))


def test_the_policy_takes_home_and_roots_from_the_settings(home: Path, tmp_path: Path) -> None:
    policy = _service(home).container.file_api().policy
    assert policy.home == PurePosixPath(home)
    assert policy.read_roots == (PurePosixPath(home), PurePosixPath("/tmp"))
    assert policy.agent_workspace == PurePosixPath(home / ".openclaw" / "workspace")
    for kept in (home, home / ".openclaw", home / ".openclaw" / "workspace", home / ".openclaw" / "clawchats"):
        assert PurePosixPath(kept) in policy.protected
    narrowed = _service(home, file_roots=(tmp_path / "only",)).container.file_api().policy
    assert narrowed.read_roots == (PurePosixPath(tmp_path / "only"),)


async def test_the_service_router_serves_the_file_routes_inside_the_configured_home(home: Path) -> None:
    (home / "docs").mkdir()
    (home / "docs" / "a.md").write_text("a")
    router = _service(home).router()
    response = await router.dispatch(ApiRequest("GET", "/api/workspace", query={"path": "~/docs"}))
    assert response.status == 200
    assert json.loads(response.encoded())["files"][0]["name"] == "a.md"
    memory = await router.dispatch(ApiRequest("GET", "/api/memory/files"))
    assert (memory.status, json.loads(memory.encoded())) == (200, {"files": []})
