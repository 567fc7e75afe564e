"""Settings: the priority of the four sources, every user-facing error, the token file, the bind-address check.

Every test runs against a temporary HOME passed in an explicit environment mapping: the real ~ is never read.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from claw_app.settings import (
    DEFAULT_GATEWAY_WS_URL,
    ConfigError,
    Settings,
    ensure_auth_token,
    load_settings,
)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def env(home: Path) -> dict[str, str]:
    return {"HOME": str(home)}


def write_openclaw(home: Path, content: object) -> Path:
    path = home / ".openclaw" / "openclaw.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def write_toml(home: Path, text: str) -> Path:
    path = home / ".openclaw" / "clawchats" / "connector.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def config_error(env: dict[str, str], **overrides: object) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(env, overrides=overrides)
    return str(caught.value)


# --- defaults -------------------------------------------------------------------------------------------------------


def test_defaults_with_an_empty_home(home: Path, env: dict[str, str]) -> None:
    settings = load_settings(env)

    state = home / ".openclaw"
    assert settings == Settings(
        state_dir=state,
        openclaw_config_path=state / "openclaw.json",
        config_file=state / "clawchats" / "connector.toml",
        data_dir=state / "clawchats",
        agent_workspace_dir=state / "workspace",
        sessions_dir=state / "agents",
        home_dir=home,
    )
    assert settings.host == "127.0.0.1"
    assert settings.port == 3001
    assert settings.auth_token is None
    assert settings.auth_token_source is None
    assert settings.gateway_ws_url == DEFAULT_GATEWAY_WS_URL == "ws://127.0.0.1:18789"
    assert settings.gateway_token is None
    assert settings.storage_backend == "sqlite"
    assert settings.sqlite_synchronous == "NORMAL"
    assert settings.allowed_hosts == ()
    assert settings.cors_origins == ()
    assert settings.log_level == "INFO"
    assert settings.token_file == state / "clawchats" / "token"
    assert settings.is_loopback_bind
    assert list(home.iterdir()) == []  # loading reads, it never creates anything


def test_settings_are_frozen(env: dict[str, str]) -> None:
    settings = load_settings(env)
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]


def test_repr_never_shows_tokens(home: Path, env: dict[str, str]) -> None:
    write_openclaw(home, {"gateway": {"auth": {"token": "gateway-secret"}}})
    settings = load_settings({**env, "CLAWCHATS_AUTH_TOKEN": "local-secret"})
    assert settings.auth_token == "local-secret"
    assert settings.gateway_token == "gateway-secret"
    assert "secret" not in repr(settings)


# --- where files are found ------------------------------------------------------------------------------------------


def test_state_dir_moves_both_files_and_every_default_path(tmp_path: Path, env: dict[str, str]) -> None:
    state = tmp_path / "elsewhere"
    (state / "clawchats").mkdir(parents=True)
    (state / "openclaw.json").write_text('{"gateway": {"port": 19999}}')
    (state / "clawchats" / "connector.toml").write_text("port = 4444\n")

    settings = load_settings({**env, "OPENCLAW_STATE_DIR": str(state)})

    assert settings.gateway_ws_url == "ws://127.0.0.1:19999"
    assert settings.port == 4444
    assert settings.data_dir == state / "clawchats"
    assert settings.agent_workspace_dir == state / "workspace"
    assert settings.sessions_dir == state / "agents"


def test_explicit_file_paths_and_directories(tmp_path: Path, env: dict[str, str]) -> None:
    openclaw = tmp_path / "gw.json"
    openclaw.write_text('{"gateway": {"host": "::1", "port": 20000}}')
    toml = tmp_path / "mine.toml"
    toml.write_text('data_dir = "data"\n')

    settings = load_settings(
        {
            **env,
            "OPENCLAW_CONFIG_PATH": str(openclaw),
            "CLAW_CONFIG_FILE": str(toml),
            "OPENCLAW_SESSIONS_DIR": "~/sessions",
        }
    )

    assert settings.openclaw_config_path == openclaw
    assert settings.config_file == toml
    assert settings.gateway_ws_url == "ws://[::1]:20000"
    assert settings.data_dir == tmp_path / "data"  # relative to the TOML file's directory
    assert settings.sessions_dir == tmp_path / "sessions"  # ~ is the HOME of the given environment


def test_workspace_from_openclaw_json_expands_home(home: Path, env: dict[str, str]) -> None:
    write_openclaw(home, {"agents": {"defaults": {"workspace": "~/my-agent"}}})
    assert load_settings(env).agent_workspace_dir == home / "my-agent"


def test_openclaw_json_with_comments_and_trailing_commas(home: Path, env: dict[str, str]) -> None:
    write_openclaw(
        home,
        """{
          // OpenClaw reads its config as JSON5; hand edits leave comments like this one
          "gateway": {
            "port": 18800, /* a block comment, "with quotes" */
            "auth": {"token": "tok//en/*not a comment*/,}",},
          },
        }""",
    )
    settings = load_settings(env)
    assert settings.gateway_ws_url == "ws://127.0.0.1:18800"
    assert settings.gateway_token == "tok//en/*not a comment*/,}"


# --- priority: flag, then environment, then openclaw.json, then the TOML file, then the default ----------------------

ALL_SOURCES = ("flag", "env", "openclaw.json", "toml")


@pytest.mark.parametrize("top", range(len(ALL_SOURCES) + 1))
def test_priority_across_the_four_sources(home: Path, env: dict[str, str], top: int) -> None:
    present = ALL_SOURCES[top:]
    overrides: dict[str, object] = {}
    if "flag" in present:
        overrides = {"gateway_ws_url": "ws://flag:1", "gateway_token": "from-flag"}
    if "env" in present:
        env |= {"GATEWAY_WS_URL": "ws://env:2", "OPENCLAW_GATEWAY_TOKEN": "from-env"}
    if "openclaw.json" in present:
        write_openclaw(home, {"gateway": {"host": "json", "port": 3, "auth": {"token": "from-json"}}})
    if "toml" in present:
        write_toml(home, 'gateway_ws_url = "ws://toml:4"\ngateway_token = "from-toml"\n')

    settings = load_settings(env, overrides=overrides)

    expected = {
        "flag": ("ws://flag:1", "from-flag"),
        "env": ("ws://env:2", "from-env"),
        "openclaw.json": ("ws://json:3", "from-json"),
        "toml": ("ws://toml:4", "from-toml"),
    }
    assert (settings.gateway_ws_url, settings.gateway_token) == (
        expected[present[0]] if present else (DEFAULT_GATEWAY_WS_URL, None)
    )


def test_flag_then_env_then_toml_for_connector_values(home: Path, env: dict[str, str]) -> None:
    write_toml(
        home,
        """
        host = "localhost"
        port = 4000
        auth_token = "toml-token"
        data_dir = "/srv/claw"
        log_level = "debug"
        allowed_hosts = ["Claw.Example"]
        cors_origins = ["https://App.Example/"]

        [storage]
        backend = "memory"
        synchronous = "full"
        """,
    )
    from_toml = load_settings(env)
    assert from_toml.host == "localhost"
    assert from_toml.port == 4000
    assert from_toml.auth_token == "toml-token"
    assert from_toml.auth_token_source == "config file"
    assert from_toml.data_dir == Path("/srv/claw")
    assert from_toml.log_level == "DEBUG"
    assert from_toml.allowed_hosts == ("claw.example",)
    assert from_toml.cors_origins == ("https://app.example",)
    assert from_toml.storage_backend == "memory"
    assert from_toml.sqlite_synchronous == "FULL"

    env |= {
        "CLAW_HOST": "::1",
        "PORT": "5000",
        "CLAWCHATS_AUTH_TOKEN": "env-token",
        "CLAW_DATA_DIR": "/var/claw",
        "CLAW_LOG_LEVEL": "warning",
        "CLAW_ALLOWED_HOSTS": "a.example, b.example,,",
        "CLAW_CORS_ORIGINS": "https://one.example,http://localhost:5173",
        "CLAW_STORAGE": "SQLite",
    }
    from_env = load_settings(env)
    assert from_env.host == "::1"
    assert from_env.port == 5000
    assert from_env.auth_token == "env-token"
    assert from_env.auth_token_source == "env"
    assert from_env.data_dir == Path("/var/claw")
    assert from_env.log_level == "WARNING"
    assert from_env.allowed_hosts == ("a.example", "b.example")
    assert from_env.cors_origins == ("https://one.example", "http://localhost:5173")
    assert from_env.storage_backend == "sqlite"
    assert from_env.sqlite_synchronous == "FULL"  # no variable for it: the TOML value stands

    from_flags = load_settings(
        env,
        overrides={
            "host": "0.0.0.0",
            "port": 6000,
            "auth_token": "flag-token",
            "storage_backend": "memory",
            "sqlite_synchronous": "NORMAL",
            "allowed_hosts": ["c.example"],
            "log_level": None,  # a flag left unset does not count
        },
    )
    assert from_flags.host == "0.0.0.0"
    assert from_flags.port == 6000
    assert from_flags.auth_token == "flag-token"
    assert from_flags.auth_token_source == "flag"
    assert from_flags.storage_backend == "memory"
    assert from_flags.sqlite_synchronous == "NORMAL"
    assert from_flags.allowed_hosts == ("c.example",)
    assert from_flags.log_level == "WARNING"


def test_empty_environment_variables_count_as_unset(home: Path, env: dict[str, str]) -> None:
    write_toml(home, 'auth_token = "toml-token"\n')
    settings = load_settings({**env, "CLAWCHATS_AUTH_TOKEN": "", "PORT": "  "})
    assert settings.auth_token == "toml-token"
    assert settings.port == 3001


def test_flags_given_as_text_are_parsed_like_the_environment(env: dict[str, str]) -> None:
    settings = load_settings(env, overrides={"port": "7000", "cors_origins": "https://a.example"})
    assert settings.port == 7000
    assert settings.cors_origins == ("https://a.example",)


def test_gateway_port_without_host_and_host_without_port(home: Path, env: dict[str, str]) -> None:
    write_openclaw(home, {"gateway": {"port": 18001}})
    assert load_settings(env).gateway_ws_url == "ws://127.0.0.1:18001"
    write_openclaw(home, {"gateway": {"host": "gw.lan"}})
    assert load_settings(env).gateway_ws_url == "ws://gw.lan:18789"


def test_unknown_override_is_a_programming_error(env: dict[str, str]) -> None:
    with pytest.raises(TypeError, match="prot"):
        load_settings(env, overrides={"prot": 1})


# --- errors: each names the file or variable, and the key -----------------------------------------------------------


def test_malformed_openclaw_json_names_file_line_and_column(home: Path, env: dict[str, str]) -> None:
    path = write_openclaw(home, '{\n  "gateway": {\n    port: 18789\n  }\n}\n')
    message = config_error(env)
    assert str(path) in message
    assert "line 3, column 5" in message
    assert "unquoted keys" in message


def test_openclaw_json_must_be_an_object(home: Path, env: dict[str, str]) -> None:
    path = write_openclaw(home, "[1, 2]")
    assert config_error(env) == f"{path}: must hold a JSON object at the top, not a list"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"gateway": {"port": "18789"}}, "key 'gateway.port': must be an integer, not a string"),
        ({"gateway": {"port": 70000}}, "key 'gateway.port': port 70000 is out of range (1 to 65535)"),
        ({"gateway": 5}, "key 'gateway' must be an object, not an integer"),
        ({"gateway": {"auth": {"token": 123}}}, "key 'gateway.auth.token': must be a string, not an integer"),
        ({"agents": {"defaults": {"workspace": ["x"]}}}, "key 'agents.defaults.workspace': must be a string"),
    ],
)
def test_wrong_types_in_openclaw_json(home: Path, env: dict[str, str], content: object, expected: str) -> None:
    path = write_openclaw(home, content)
    message = config_error(env)
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_malformed_toml_names_file_line_and_column(home: Path, env: dict[str, str]) -> None:
    path = write_toml(home, 'host = "127.0.0.1"\nport = = 3\n')
    message = config_error(env)
    assert message.startswith(f"{path}: invalid TOML")
    assert "line 2, column 8" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('port = "3001"', "key 'port': must be an integer, not a string"),
        ("port = true", "key 'port': must be an integer, not a boolean"),
        ("port = 65536", "key 'port': port 65536 is out of range (0 to 65535)"),
        ("auth_token = 42", "key 'auth_token': must be a string, not an integer"),
        ('auth_token = ""', "key 'auth_token': must not be empty"),
        ('allowed_hosts = "a.example"', "key 'allowed_hosts': must be a list of strings, not a string"),
        ("cors_origins = [1]", "key 'cors_origins': must be a list of strings, but holds an integer"),
        ('cors_origins = ["*"]', "key 'cors_origins': '*' is not an origin"),
        ('cors_origins = ["null"]', "key 'cors_origins': 'null' is not an origin"),
        ('cors_origins = ["https://a.example/path"]', "'https://a.example/path' is not an origin"),
        ('storage = "sqlite"', "key 'storage' must be a table ([storage]), not a string"),
        ('[storage]\nbackend = "postgres"', "key 'storage.backend': unknown storage backend 'postgres'"),
        ('[storage]\nsynchronous = "OFF"', "key 'storage.synchronous': unknown SQLite synchronous mode 'OFF'"),
        ('[storage]\nbakend = "sqlite"', "unknown key 'storage.bakend'"),
        ('auth_tokn = "x"', "unknown key 'auth_tokn'"),
        ('log_level = "LOUD"', "key 'log_level': unknown log level 'LOUD'"),
        ('host = "127.0.0.1:3001"', "key 'host': '127.0.0.1:3001' is not a host name or IP address"),
    ],
)
def test_wrong_values_in_the_toml_file(home: Path, env: dict[str, str], text: str, expected: str) -> None:
    path = write_toml(home, text + "\n")
    message = config_error(env)
    assert message.startswith(f"{path}: ")
    assert expected in message


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"PORT": "30o1"}, "environment variable PORT: must be an integer, got '30o1'"),
        ({"PORT": "-1"}, "environment variable PORT: port -1 is out of range (0 to 65535)"),
        ({"PORT": "65536"}, "environment variable PORT: port 65536 is out of range (0 to 65535)"),
        ({"CLAW_STORAGE": "redis"}, "environment variable CLAW_STORAGE: unknown storage backend 'redis'"),
        ({"GATEWAY_WS_URL": "http://x:1"}, "environment variable GATEWAY_WS_URL: 'http://x:1' is not a ws://"),
        ({"GATEWAY_WS_URL": "ws://x:port"}, "environment variable GATEWAY_WS_URL: 'ws://x:port' has an invalid port"),
        ({"CLAW_ALLOWED_HOSTS": "*"}, "environment variable CLAW_ALLOWED_HOSTS: '*' is not a host name"),
    ],
)
def test_wrong_values_in_the_environment(env: dict[str, str], variables: dict[str, str], expected: str) -> None:
    assert config_error({**env, **variables}).startswith(expected)


def test_wrong_flag_values_name_the_option(env: dict[str, str]) -> None:
    assert config_error(env, port=99999) == "command-line option --port: port 99999 is out of range (0 to 65535)"
    assert "command-line option --storage-backend: unknown storage backend 'x'" in config_error(
        env, storage_backend="x"
    )


def test_unreadable_config_file(home: Path, env: dict[str, str]) -> None:
    path = write_toml(home, "")
    path.unlink()
    path.mkdir()  # a directory where the file should be
    assert config_error(env).startswith(f"{path}: cannot read")


def test_config_file_that_is_not_utf8(home: Path, env: dict[str, str]) -> None:
    path = write_openclaw(home, "")
    path.write_bytes(b'{"gateway": "\xff"}')
    assert config_error(env).startswith(f"{path}: not UTF-8 text")


# --- the token file -------------------------------------------------------------------------------------------------


def test_token_file_is_created_0600_in_a_0700_directory_then_reused(home: Path, env: dict[str, str]) -> None:
    settings = load_settings(env)

    first, created = ensure_auth_token(settings)

    assert created
    assert first.auth_token is not None
    assert len(first.auth_token) >= 43  # 32 random bytes, url-safe base64
    assert first.auth_token_source == "token file"
    assert not first.has_explicit_token
    assert stat.S_IMODE(settings.token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(settings.data_dir.stat().st_mode) == 0o700
    assert settings.token_file.read_text().strip() == first.auth_token

    again, created_again = ensure_auth_token(load_settings(env))
    assert not created_again
    assert again.auth_token == first.auth_token


def test_configured_token_skips_the_token_file(env: dict[str, str]) -> None:
    settings = load_settings({**env, "CLAWCHATS_AUTH_TOKEN": "mine"})
    same, created = ensure_auth_token(settings)
    assert same is settings
    assert not created
    assert not settings.token_file.exists()


def test_a_token_file_others_can_read_is_refused(env: dict[str, str]) -> None:
    settings = load_settings(env)
    ensure_auth_token(settings)
    os.chmod(settings.token_file, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        ensure_auth_token(settings)


def test_an_empty_token_file_is_refused(env: dict[str, str]) -> None:
    settings = load_settings(env)
    settings.data_dir.mkdir(parents=True)
    settings.token_file.touch(mode=0o600)
    with pytest.raises(ConfigError, match="empty; delete it"):
        ensure_auth_token(settings)


def test_a_data_dir_that_cannot_be_created_is_a_config_error(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "blocker").write_text("a file, not a directory")
    settings = load_settings({**env, "CLAW_DATA_DIR": str(tmp_path / "blocker" / "data")})
    with pytest.raises(ConfigError, match="cannot read or create the token file"):
        ensure_auth_token(settings)


# --- the bind address -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("my-host.example", False),
    ],
)
def test_is_loopback_bind(env: dict[str, str], host: str, loopback: bool) -> None:
    assert load_settings(env, overrides={"host": host}).is_loopback_bind is loopback


def test_loopback_needs_no_explicit_token(env: dict[str, str]) -> None:
    load_settings(env).check_bind()


def test_exposed_bind_without_a_token_says_how_to_fix_it(env: dict[str, str]) -> None:
    settings = load_settings(env, overrides={"host": "0.0.0.0"})
    with pytest.raises(ConfigError) as caught:
        settings.check_bind()
    message = str(caught.value)
    assert "0.0.0.0:3001" in message
    assert "CLAWCHATS_AUTH_TOKEN" in message
    assert "127.0.0.1" in message
    assert str(settings.config_file) in message


def test_exposed_bind_with_only_a_generated_token_is_refused(env: dict[str, str]) -> None:
    generated, _ = ensure_auth_token(load_settings(env, overrides={"host": "0.0.0.0"}))
    with pytest.raises(ConfigError):
        generated.check_bind()


@pytest.mark.parametrize(
    ("variables", "overrides"),
    [
        ({"CLAWCHATS_AUTH_TOKEN": "a-long-token"}, {}),
        ({}, {"auth_token": "a-long-token"}),
    ],
)
def test_exposed_bind_with_an_explicit_token_is_allowed(
    env: dict[str, str], variables: dict[str, str], overrides: dict[str, object]
) -> None:
    load_settings({**env, **variables, "CLAW_HOST": "0.0.0.0"}, overrides=overrides).check_bind()


def test_exposed_bind_with_a_token_in_the_toml_file_is_allowed(home: Path, env: dict[str, str]) -> None:
    write_toml(home, 'host = "0.0.0.0"\nauth_token = "a-long-token"\n')
    load_settings(env).check_bind()


# --- memory backend ---------------------------------------------------------------------------------------------------


def test_memory_defaults_to_the_embedded_sqlite_file(env: dict[str, str]) -> None:
    settings = load_settings(env)
    assert settings.memory_provider == "sqlite"
    assert settings.memory_url is None
    assert settings.memory_collection is None
    assert settings.memory_pg_url is None


@pytest.mark.parametrize(
    ("value", "provider"),
    [
        ("qdrant", "qdrant"),
        ("POSTGRES", "postgres"),
        ("pgvector", "postgres"),
        ("memory", "memory"),
        ("sqlite", "sqlite"),
    ],
)
def test_memory_provider_from_the_environment(env: dict[str, str], value: str, provider: str) -> None:
    env |= {"MEMORY_PROVIDER": value, "MEMORY_PG_URL": "postgresql://me@localhost/mem0"}
    assert load_settings(env).memory_provider == provider


def test_qdrant_defaults_to_the_local_server(env: dict[str, str]) -> None:
    settings = load_settings(env | {"MEMORY_PROVIDER": "qdrant", "MEMORY_COLLECTION": "mem0-memories"})
    assert settings.memory_url == "http://127.0.0.1:6333"
    assert settings.memory_collection == "mem0-memories"


def test_qdrant_url_comes_first_then_memory_host_then_qdrant_host(env: dict[str, str]) -> None:
    hosts = {"MEMORY_HOST": "memhost", "MEMORY_PORT": "7000", "QDRANT_HOST": "qhost", "QDRANT_PORT": "7001"}
    assert load_settings(env | hosts | {"QDRANT_URL": "https://q.example:6334/"}).memory_url == "https://q.example:6334"
    assert load_settings(env | hosts).memory_url == "http://memhost:7000"
    assert load_settings(env | {"QDRANT_HOST": "qhost", "QDRANT_PORT": "7001"}).memory_url == "http://qhost:7001"
    assert load_settings(env | {"MEMORY_HOST": "::1"}).memory_url == "http://[::1]:6333"


def test_a_qdrant_url_or_a_postgres_url_alone_picks_its_provider(env: dict[str, str]) -> None:
    assert load_settings(env | {"QDRANT_URL": "http://localhost:6333"}).memory_provider == "qdrant"
    assert load_settings(env | {"MEMORY_HOST": "localhost"}).memory_provider == "qdrant"
    assert load_settings(env | {"MEMORY_PG_URL": "postgres://u@h/db"}).memory_provider == "postgres"
    both = {"QDRANT_URL": "http://localhost:6333", "MEMORY_PG_URL": "postgres://u@h/db"}
    assert load_settings(env | both).memory_provider == "sqlite"  # ambiguous: MEMORY_PROVIDER decides


def test_memory_settings_from_the_toml_file(home: Path, env: dict[str, str]) -> None:
    write_toml(
        home,
        '[memory]\nprovider = "pgvector"\npg_url = "postgresql://me@db.internal/mem0"\ncollection = "memories_2"\n',
    )
    settings = load_settings(env)
    assert settings.memory_provider == "postgres"
    assert settings.memory_pg_url == "postgresql://me@db.internal/mem0"
    assert settings.memory_collection == "memories_2"
    assert "db.internal" not in repr(settings)


def test_memory_host_in_the_toml_file_yields_to_the_environment(home: Path, env: dict[str, str]) -> None:
    write_toml(home, '[memory]\nprovider = "qdrant"\nhost = "filehost"\nport = 6400\n')
    assert load_settings(env).memory_url == "http://filehost:6400"
    assert load_settings(env | {"QDRANT_URL": "http://envhost:1"}).memory_url == "http://envhost:1"


def test_postgres_without_a_url_is_a_clear_error(home: Path, env: dict[str, str]) -> None:
    message = config_error(env | {"MEMORY_PROVIDER": "postgres"})
    assert "postgres" in message
    assert "MEMORY_PG_URL" in message
    assert str(home / ".openclaw" / "clawchats" / "connector.toml") in message


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"MEMORY_PROVIDER": "redis"}, "environment variable MEMORY_PROVIDER: unknown memory provider 'redis'"),
        ({"QDRANT_URL": "ftp://q:6333"}, "environment variable QDRANT_URL: 'ftp://q:6333' is not an http://"),
        ({"QDRANT_URL": "http://q:99999"}, "has an invalid port"),
        ({"MEMORY_PORT": "abc"}, "environment variable MEMORY_PORT: must be an integer"),
        ({"QDRANT_PORT": "0"}, "environment variable QDRANT_PORT: port 0 is out of range"),
        ({"MEMORY_HOST": "http://q"}, "environment variable MEMORY_HOST: 'http://q' is not a host name"),
        ({"MEMORY_COLLECTION": "a b"}, "environment variable MEMORY_COLLECTION: 'a b' is not a collection name"),
        ({"MEMORY_COLLECTION": "x" * 64}, "is not a collection name"),
    ],
)
def test_bad_memory_values_are_clear_errors(env: dict[str, str], variables: dict[str, str], expected: str) -> None:
    assert expected in config_error(env | variables)


def test_a_bad_postgres_url_is_refused_without_echoing_it(env: dict[str, str]) -> None:
    message = config_error(env | {"MEMORY_PG_URL": "mysql://root:s3cret@db/x"})
    assert "MEMORY_PG_URL" in message
    assert "postgresql://" in message
    assert "s3cret" not in message


def test_the_qdrant_api_key_is_read_and_never_shown(env: dict[str, str]) -> None:
    settings = load_settings(env | {"QDRANT_URL": "https://q.example:6333", "QDRANT_API_KEY": "k-s3cret"})
    assert settings.memory_provider == "qdrant" and settings.memory_qdrant_api_key == "k-s3cret"
    assert "k-s3cret" not in repr(settings)


def test_a_postgres_url_with_a_bad_port_is_refused_without_echoing_it(env: dict[str, str]) -> None:
    message = config_error(env | {"MEMORY_PG_URL": "postgresql://root:s3cret@db:99999/x"})
    assert "port" in message and "s3cret" not in message


def test_a_qdrant_url_with_credentials_is_refused(env: dict[str, str]) -> None:
    message = config_error(env | {"QDRANT_URL": "http://admin:s3cret@q:6333"})
    assert "QDRANT_URL" in message
    assert "s3cret" not in message


def test_an_unknown_key_in_the_memory_table_is_reported(home: Path, env: dict[str, str]) -> None:
    write_toml(home, '[memory]\nprovder = "qdrant"\n')
    assert "unknown key 'memory.provder'" in config_error(env)


# --- memory embedder --------------------------------------------------------------------------------------------------

EMBEDDER_KEY = "sk-embed-0123456789-secret"


def test_no_embedder_by_default(env: dict[str, str]) -> None:
    settings = load_settings(env)
    assert settings.memory_embedder_url is None
    assert settings.memory_embedder_model is None
    assert settings.memory_embedder_api_key is None
    assert settings.memory_embedder_dimensions is None


def test_embedder_from_the_environment_keeps_its_key_out_of_repr(env: dict[str, str]) -> None:
    settings = load_settings(
        env
        | {
            "MEMORY_EMBEDDER_URL": "http://127.0.0.1:11434/v1/",
            "MEMORY_EMBEDDER_MODEL": "nomic-embed-text",
            "MEMORY_EMBEDDER_API_KEY": EMBEDDER_KEY,
            "MEMORY_EMBEDDER_DIMENSIONS": "768",
        }
    )
    assert settings.memory_embedder_url == "http://127.0.0.1:11434/v1"
    assert settings.memory_embedder_model == "nomic-embed-text"
    assert settings.memory_embedder_api_key == EMBEDDER_KEY
    assert settings.memory_embedder_dimensions == 768
    assert EMBEDDER_KEY not in repr(settings)


def test_embedder_from_the_toml_file_with_a_key_file(home: Path, env: dict[str, str]) -> None:
    key_file = home / "embedder.key"
    key_file.write_text(EMBEDDER_KEY + "\n", encoding="utf-8")
    key_file.chmod(0o600)
    write_toml(
        home,
        '[memory]\nprovider = "qdrant"\nembedder_url = "https://api.openai.com/v1"\n'
        f'embedder_model = "text-embedding-3-small"\nembedder_api_key_file = "{key_file}"\n',
    )
    settings = load_settings(env)
    assert settings.memory_embedder_url == "https://api.openai.com/v1"
    assert settings.memory_embedder_model == "text-embedding-3-small"
    assert settings.memory_embedder_api_key == EMBEDDER_KEY
    # The environment comes first, as for every setting.
    assert load_settings(env | {"MEMORY_EMBEDDER_MODEL": "other"}).memory_embedder_model == "other"


def test_a_key_file_other_users_can_read_is_refused_without_quoting_it(home: Path, env: dict[str, str]) -> None:
    key_file = home / "embedder.key"
    key_file.write_text(EMBEDDER_KEY, encoding="utf-8")
    key_file.chmod(0o644)
    embedder = {"MEMORY_EMBEDDER_URL": "http://127.0.0.1:8000/v1", "MEMORY_EMBEDDER_MODEL": "bge-m3"}
    message = config_error(env | embedder | {"MEMORY_EMBEDDER_API_KEY_FILE": str(key_file)})
    assert f"{key_file}: the key file can be read by other users" in message
    assert EMBEDDER_KEY not in message


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"MEMORY_EMBEDDER_URL": "http://127.0.0.1:11434/v1"}, "needs both a URL and a model"),
        ({"MEMORY_EMBEDDER_MODEL": "nomic-embed-text"}, "but its URL is not set"),
        ({"MEMORY_EMBEDDER_API_KEY": EMBEDDER_KEY}, "an embedder API key or size is set, but no embedder"),
        (
            {"MEMORY_EMBEDDER_URL": "127.0.0.1:11434", "MEMORY_EMBEDDER_MODEL": "m"},
            "environment variable MEMORY_EMBEDDER_URL: '127.0.0.1:11434' is not an http://",
        ),
        (
            {"MEMORY_EMBEDDER_URL": "http://u:pw@h/v1", "MEMORY_EMBEDDER_MODEL": "m"},
            "must not hold a user name or password (give the key in MEMORY_EMBEDDER_API_KEY or a key file)",
        ),
        (
            {"MEMORY_EMBEDDER_URL": "http://h/v1", "MEMORY_EMBEDDER_MODEL": "m", "MEMORY_EMBEDDER_DIMENSIONS": "0"},
            "environment variable MEMORY_EMBEDDER_DIMENSIONS: a vector size must be between 1 and 65536",
        ),
    ],
)
def test_bad_embedder_settings_are_clear_errors(env: dict[str, str], variables: dict[str, str], expected: str) -> None:
    message = config_error(env | variables)
    assert expected in message
    assert EMBEDDER_KEY not in message


def test_half_an_embedder_in_the_toml_file_names_its_keys(home: Path, env: dict[str, str]) -> None:
    path = write_toml(home, '[memory]\nembedder_model = "nomic-embed-text"\n')
    message = config_error(env)
    assert "embedder_url and embedder_model in [memory]" in message
    assert str(path) in message
