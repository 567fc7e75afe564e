"""The connector's settings: one typed, frozen object, built once at start-up.

Each value comes from the first of these that has it: a command-line flag (``overrides``), the environment, the
gateway's ``openclaw.json``, the connector's own TOML file, the default. Anything wrong in them is a `ConfigError`
whose message names the file or variable and the key, ready to show to the user as it is.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import secrets
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, TypedDict, TypeVar
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_GATEWAY_WS_URL",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_QDRANT_URL",
    "ConfigError",
    "MemoryProvider",
    "Settings",
    "SqliteSynchronous",
    "StorageBackend",
    "TokenSource",
    "ensure_auth_token",
    "load_settings",
    "read_token_file",
]

StorageBackend = Literal["sqlite", "memory"]
MemoryProvider = Literal["sqlite", "qdrant", "postgres", "memory"]
SqliteSynchronous = Literal["NORMAL", "FULL"]
# Where the local API token came from: the first three are a deliberate choice of the user, "token file" is the
# token the connector generated for itself (see `ensure_auth_token`).
TokenSource = Literal["flag", "env", "config file", "token file"]

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 3001
DEFAULT_GATEWAY_PORT: Final = 18789
DEFAULT_GATEWAY_WS_URL: Final = f"ws://127.0.0.1:{DEFAULT_GATEWAY_PORT}"
DEFAULT_QDRANT_PORT: Final = 6333
DEFAULT_QDRANT_URL: Final = f"http://127.0.0.1:{DEFAULT_QDRANT_PORT}"

_STORAGE_BACKENDS: Final[tuple[StorageBackend, ...]] = ("sqlite", "memory")
_SQLITE_SYNCHRONOUS: Final[tuple[SqliteSynchronous, ...]] = ("NORMAL", "FULL")
_LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Every key the connector's TOML file may hold; anything else is a typo worth reporting, not ignoring.
_TOML_KEYS: Final = {
    "host": None,
    "port": None,
    "auth_token": None,
    "data_dir": None,
    "gateway_ws_url": None,
    "gateway_token": None,
    "log_level": None,
    "allowed_hosts": None,
    "cors_origins": None,
    "file_roots": None,
    "storage": ("backend", "synchronous"),
    "memory": (
        "provider",
        "url",
        "host",
        "port",
        "collection",
        "pg_url",
        "qdrant_api_key",
        "embedder_url",
        "embedder_model",
        "embedder_api_key",
        "embedder_api_key_file",
        "embedder_dimensions",
    ),
}
_EXPLICIT_TOKEN_SOURCES: Final = ("flag", "env", "config file")
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_MEMORY_PROVIDERS: Final[dict[str, MemoryProvider]] = {
    "sqlite": "sqlite",
    "qdrant": "qdrant",
    "postgres": "postgres",
    "pgvector": "postgres",
    "memory": "memory",
}
_COLLECTION_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,62}")


class ConfigError(Exception):
    """The configuration cannot be used. ``str(error)`` says where and what, for the user; it never holds a token."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the connector is configured with. Build it with `load_settings`, never from scattered env reads."""

    state_dir: Path
    """The gateway's state directory (``OPENCLAW_STATE_DIR``, default ``~/.openclaw``)."""
    openclaw_config_path: Path
    """The gateway's ``openclaw.json`` (it may not exist)."""
    config_file: Path
    """The connector's own TOML file (it may not exist)."""
    data_dir: Path
    """Where the connector keeps its databases and its token file."""
    agent_workspace_dir: Path
    sessions_dir: Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    auth_token: str | None = field(default=None, repr=False)
    auth_token_source: TokenSource | None = None
    gateway_ws_url: str = DEFAULT_GATEWAY_WS_URL
    gateway_token: str | None = field(default=None, repr=False)
    storage_backend: StorageBackend = "sqlite"
    sqlite_synchronous: SqliteSynchronous = "NORMAL"
    allowed_hosts: tuple[str, ...] = ()
    """Host names accepted in the ``Host`` header besides the loopback ones."""
    cors_origins: tuple[str, ...] = ()
    """Browser origins allowed to call the API, as ``scheme://host[:port]``."""
    log_level: str = "INFO"
    home_dir: Path | None = None
    """The home folder the workspace browser is confined to: `HOME` (None, for settings built by hand: the home of
    the user running the connector)."""
    file_roots: tuple[Path, ...] = ()
    """Folders `/api/file` may read from (``CLAW_FILE_ROOTS``, ``file_roots``); empty means HOME and /tmp."""
    memory_provider: MemoryProvider = "sqlite"
    """Where the memory viewer reads: the embedded SQLite file, a Qdrant server, PostgreSQL, or (tests) memory."""
    memory_url: str | None = None
    """The Qdrant server (``QDRANT_URL``, or built from ``MEMORY_HOST``/``MEMORY_PORT``)."""
    memory_collection: str | None = None
    """The Qdrant collection or the table (None: the backend's default, see the memory adapters)."""
    memory_pg_url: str | None = field(default=None, repr=False)
    """The PostgreSQL connection URL (it may hold a password)."""
    memory_qdrant_api_key: str | None = field(default=None, repr=False)
    """The API key of a Qdrant server that asks for one (``QDRANT_API_KEY``)."""
    memory_embedder_url: str | None = None
    """An OpenAI-compatible embeddings endpoint, up to before ``/embeddings`` (e.g. ``http://127.0.0.1:11434/v1``):
    Qdrant and PostgreSQL then rank searches by meaning. None: by words."""
    memory_embedder_model: str | None = None
    """The embedding model, the one mem0 filled the store with (set exactly when `memory_embedder_url` is)."""
    memory_embedder_api_key: str | None = field(default=None, repr=False)
    """Sent as a Bearer token to the embedder; from ``MEMORY_EMBEDDER_API_KEY`` or a 0600 key file."""
    memory_embedder_dimensions: int | None = None
    """The size of the model's vectors; None: learned from the embedder's first answer."""

    @property
    def token_file(self) -> Path:
        """Where a generated local API token is kept (mode 0600)."""
        return self.data_dir / "token"

    @property
    def is_loopback_bind(self) -> bool:
        """True when `host` only accepts connections from this machine."""
        host = self.host.strip("[]")
        if host.lower() == "localhost":
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return address.ipv4_mapped.is_loopback
        return address.is_loopback

    @property
    def has_explicit_token(self) -> bool:
        """True when the user set the token (flag, environment or config file), rather than the connector making one."""
        return self.auth_token is not None and self.auth_token_source in _EXPLICIT_TOKEN_SOURCES

    def check_bind(self) -> None:
        """Refuse a non-loopback address unless the user set a token on purpose (a generated one is not enough)."""
        if self.is_loopback_bind or self.has_explicit_token:
            return
        raise ConfigError(
            f"refusing to listen on {self.host}:{self.port} without a token you set yourself: anyone who can reach"
            " that address could talk to your agent.\n"
            "Either listen on this machine only (the default, 127.0.0.1: drop --host, CLAW_HOST or `host` in"
            f" {self.config_file}),\n"
            "or set a token explicitly, for example:\n"
            "  export CLAWCHATS_AUTH_TOKEN=\"$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')\"\n"
            f'or put  auth_token = "<a long random string>"  in {self.config_file}'
        )


def load_settings(env: Mapping[str, str] | None = None, *, overrides: Mapping[str, object] | None = None) -> Settings:
    """Build the settings once. ``overrides`` are command-line flags keyed by `Settings` field name; None means unset.

    Raises `ConfigError` for anything malformed; a missing ``openclaw.json`` or TOML file is fine.
    """
    return _Loader(os.environ if env is None else env, overrides or {}).load()


def ensure_auth_token(settings: Settings) -> tuple[Settings, bool]:
    """Return settings that hold a local API token, and whether a new one was created just now.

    When none is configured, the token is read from `Settings.token_file`, or generated and written there (mode 0600,
    the data directory 0700). The token itself is never logged nor put in an error message.
    """
    if settings.auth_token is not None:
        return settings, False
    path = settings.token_file
    try:
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        token, created = _read_or_create_token(path)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read or create the token file: {error.strerror or error}") from error
    source: TokenSource = "token file"
    return dataclasses.replace(settings, auth_token=token, auth_token_source=source), created


# --- reading the sources --------------------------------------------------------------------------------------------

_T = TypeVar("_T")


@dataclass(frozen=True)
class _Value:
    """One raw value and where it came from, so that an error can point at it."""

    raw: object
    where: str
    origin: Literal["flag", "env", "openclaw.json", "config file"]
    base: Path | None = None
    """Relative paths resolve against this directory (the file's own); None means the working directory."""

    @property
    def is_text(self) -> bool:
        """Flags and environment variables arrive as text to parse; file values must already have the right type."""
        return self.origin in ("flag", "env") and isinstance(self.raw, str)

    def error(self, problem: str) -> ConfigError:
        return ConfigError(f"{self.where}: {problem}")


@dataclass(frozen=True)
class _Document:
    """A parsed configuration file: a tree of tables (TOML) or objects (JSON)."""

    path: Path
    data: Mapping[str, object]
    origin: Literal["openclaw.json", "config file"]
    table: str

    def get(self, dotted: str) -> _Value | None:
        node: object = self.data
        parts = dotted.split(".")
        for depth, part in enumerate(parts):
            if not isinstance(node, dict):
                parent = ".".join(parts[:depth])
                raise ConfigError(f"{self.path}: key {parent!r} must be {self.table}, not {_kind(node)}")
            node = node.get(part)
            if node is None:
                return None
        return _Value(node, f"{self.path}: key {dotted!r}", self.origin, self.path.parent)


class _MemorySettings(TypedDict):
    memory_provider: MemoryProvider
    memory_url: str | None
    memory_collection: str | None
    memory_pg_url: str | None
    memory_qdrant_api_key: str | None


class _EmbedderSettings(TypedDict):
    memory_embedder_url: str | None
    memory_embedder_model: str | None
    memory_embedder_api_key: str | None
    memory_embedder_dimensions: int | None


class _Loader:
    def __init__(self, env: Mapping[str, str], overrides: Mapping[str, object]) -> None:
        settable = {f.name for f in dataclasses.fields(Settings)} - {"auth_token_source"}
        unknown = sorted(set(overrides) - settable)
        if unknown:
            raise TypeError(f"unknown setting override(s): {', '.join(unknown)}")
        self.env = env
        self.overrides = overrides
        self.home = Path(env["HOME"]) if env.get("HOME") else Path.home()
        self.openclaw: _Document | None = None
        self.toml: _Document | None = None

    def load(self) -> Settings:
        state_dir = self.get("state_dir", self.path, self.home / ".openclaw", env="OPENCLAW_STATE_DIR")
        openclaw_path = self.get(
            "openclaw_config_path", self.path, state_dir / "openclaw.json", env="OPENCLAW_CONFIG_PATH"
        )
        config_file = self.get(
            "config_file", self.path, state_dir / "clawchats" / "connector.toml", env="CLAW_CONFIG_FILE"
        )
        self.openclaw = _read_json(openclaw_path)
        self.toml = _read_toml(config_file)

        token = self.find("auth_token", env="CLAWCHATS_AUTH_TOKEN", toml="auth_token")
        token_sources: dict[str, TokenSource] = {"flag": "flag", "env": "env", "config file": "config file"}
        return Settings(
            state_dir=state_dir,
            openclaw_config_path=openclaw_path,
            config_file=config_file,
            data_dir=self.get("data_dir", self.path, state_dir / "clawchats", env="CLAW_DATA_DIR", toml="data_dir"),
            agent_workspace_dir=self.get(
                "agent_workspace_dir", self.path, state_dir / "workspace", openclaw="agents.defaults.workspace"
            ),
            sessions_dir=self.get("sessions_dir", self.path, state_dir / "agents", env="OPENCLAW_SESSIONS_DIR"),
            host=self.get("host", _host, DEFAULT_HOST, env="CLAW_HOST", toml="host"),
            port=self.get("port", _listen_port, DEFAULT_PORT, env="PORT", toml="port"),
            auth_token=None if token is None else _string(token),
            auth_token_source=None if token is None else token_sources[token.origin],
            gateway_ws_url=self._gateway_ws_url(),
            gateway_token=self.get(
                "gateway_token",
                _string,
                None,
                env="OPENCLAW_GATEWAY_TOKEN",
                openclaw="gateway.auth.token",
                toml="gateway_token",
            ),
            storage_backend=self.get(
                "storage_backend", _storage_backend, "sqlite", env="CLAW_STORAGE", toml="storage.backend"
            ),
            sqlite_synchronous=self.get(
                "sqlite_synchronous", _sqlite_synchronous, "NORMAL", toml="storage.synchronous"
            ),
            allowed_hosts=self.get("allowed_hosts", _allowed_hosts, (), env="CLAW_ALLOWED_HOSTS", toml="allowed_hosts"),
            cors_origins=self.get("cors_origins", _cors_origins, (), env="CLAW_CORS_ORIGINS", toml="cors_origins"),
            log_level=self.get("log_level", _log_level, "INFO", env="CLAW_LOG_LEVEL", toml="log_level"),
            home_dir=self.get("home_dir", self.path, self.home),
            file_roots=self.get("file_roots", self._file_roots, (), env="CLAW_FILE_ROOTS", toml="file_roots"),
            **self._memory(config_file),
            **self._memory_embedder(config_file),
        )

    def find(
        self, name: str, *, env: str | None = None, openclaw: str | None = None, toml: str | None = None
    ) -> _Value | None:
        """The highest-priority raw value for setting ``name``: flag, environment, openclaw.json, TOML file."""
        flag = self.overrides.get(name)
        if flag is not None:
            return _Value(flag, f"command-line option --{name.replace('_', '-')}", "flag")
        text = self.env.get(env, "").strip() if env else ""
        if text:  # an empty variable counts as unset
            return _Value(text, f"environment variable {env}", "env")
        found = self.openclaw.get(openclaw) if openclaw and self.openclaw else None
        if found is None and toml and self.toml:
            found = self.toml.get(toml)
        return found

    def get(
        self,
        name: str,
        convert: Callable[[_Value], _T],
        default: _T,
        *,
        env: str | None = None,
        openclaw: str | None = None,
        toml: str | None = None,
    ) -> _T:
        found = self.find(name, env=env, openclaw=openclaw, toml=toml)
        return default if found is None else convert(found)

    def path(self, value: _Value) -> Path:
        raw = os.fspath(value.raw) if isinstance(value.raw, os.PathLike) else value.raw
        text = _string(dataclasses.replace(value, raw=raw))
        path = self.home / text[2:] if text == "~" or text.startswith("~/") else Path(text).expanduser()
        return path if path.is_absolute() else (value.base or Path.cwd()) / path

    def _memory(self, config_file: Path) -> _MemorySettings:
        """The memory settings. Without MEMORY_PROVIDER, a Qdrant URL or host, or a PostgreSQL URL, picks its backend
        (what a user of the Node connector has set); otherwise the embedded SQLite file."""
        # The environment first (a URL, else a host and port), then the TOML file the same way. Host and port are
        # not settings of their own (so never flags): they make up memory_url.
        url = self.find("memory_url", env="QDRANT_URL")
        host = self.find("memory_host", env="MEMORY_HOST") or self.find("memory_host", env="QDRANT_HOST")
        port = self.find("memory_port", env="MEMORY_PORT") or self.find("memory_port", env="QDRANT_PORT")
        if url is None and host is None and port is None:
            url = self.find("memory_url", toml="memory.url")
            host = self.find("memory_host", toml="memory.host")
            port = self.find("memory_port", toml="memory.port")
        pg_url = self.get("memory_pg_url", _pg_url, None, env="MEMORY_PG_URL", toml="memory.pg_url")
        qdrant_url = _http_url(url) if url is not None else _qdrant_url(host, port)

        provider: MemoryProvider
        provider_value = self.find("memory_provider", env="MEMORY_PROVIDER", toml="memory.provider")
        if provider_value is not None:
            provider = _memory_provider(provider_value)
        elif qdrant_url is not None and pg_url is None:
            provider = "qdrant"
        elif pg_url is not None and qdrant_url is None:
            provider = "postgres"
        else:
            provider = "sqlite"
        if provider == "postgres" and pg_url is None:
            where = f"environment variable MEMORY_PG_URL, or pg_url in [memory] of {config_file}"
            raise ConfigError(f"the memory provider is postgres, but no PostgreSQL URL is set ({where})")
        if provider == "qdrant" and qdrant_url is None:
            qdrant_url = DEFAULT_QDRANT_URL
        return _MemorySettings(
            memory_provider=provider,
            memory_url=qdrant_url,
            memory_collection=self.get(
                "memory_collection", _collection, None, env="MEMORY_COLLECTION", toml="memory.collection"
            ),
            memory_pg_url=pg_url,
            memory_qdrant_api_key=self.get(
                "memory_qdrant_api_key", _string, None, env="QDRANT_API_KEY", toml="memory.qdrant_api_key"
            ),
        )

    def _memory_embedder(self, config_file: Path) -> _EmbedderSettings:
        """The embedder of semantic memory search: a URL and a model, both or neither; an API key and the vector
        size are optional. The key is never quoted in an error (see `read_token_file` for a key file)."""
        url = self.get(
            "memory_embedder_url", _embedder_url, None, env="MEMORY_EMBEDDER_URL", toml="memory.embedder_url"
        )
        model = self.get(
            "memory_embedder_model", _string, None, env="MEMORY_EMBEDDER_MODEL", toml="memory.embedder_model"
        )
        key = self.find("memory_embedder_api_key", env="MEMORY_EMBEDDER_API_KEY", toml="memory.embedder_api_key")
        key_file = self.find(
            "memory_embedder_api_key_file", env="MEMORY_EMBEDDER_API_KEY_FILE", toml="memory.embedder_api_key_file"
        )
        dimensions = self.get(
            "memory_embedder_dimensions",
            _dimensions,
            None,
            env="MEMORY_EMBEDDER_DIMENSIONS",
            toml="memory.embedder_dimensions",
        )
        names = "MEMORY_EMBEDDER_URL and MEMORY_EMBEDDER_MODEL (or embedder_url and embedder_model in [memory]"
        where = f"{names} of {config_file})"
        if (url is None) != (model is None):
            missing = "model" if model is None else "URL"
            raise ConfigError(
                f"the memory embedder needs both a URL and a model (the one mem0 used), but its {missing} is not set:"
                f" set {where}"
            )
        if url is None and (key is not None or key_file is not None or dimensions is not None):
            raise ConfigError(f"an embedder API key or size is set, but no embedder: set {where}")
        api_key = None
        if key is not None:
            api_key = _string(key)
        elif key_file is not None:
            api_key = _read_key_file(self.path(key_file))
        return _EmbedderSettings(
            memory_embedder_url=url,
            memory_embedder_model=model,
            memory_embedder_api_key=api_key,
            memory_embedder_dimensions=dimensions,
        )

    def _file_roots(self, value: _Value) -> tuple[Path, ...]:
        """Absolute folders (``~`` allowed); in the environment separated by ``os.pathsep``, as in PATH."""
        if value.is_text:
            value = dataclasses.replace(value, raw=str(value.raw).split(os.pathsep))
        roots = []
        for text in _strings(value):
            if not (text.startswith(("/", "~/")) or text == "~"):
                raise value.error(f"file root {text!r} must be an absolute path or start with ~/")
            root = self.path(_Value(text, value.where, value.origin))
            if root == Path("/"):
                raise value.error("a file root of / would let the API read every file of this machine")
            roots.append(root)
        return tuple(dict.fromkeys(roots))

    def _gateway_ws_url(self) -> str:
        explicit = self.find("gateway_ws_url", env="GATEWAY_WS_URL")
        if explicit is not None:
            return _ws_url(explicit)
        if self.openclaw is not None:
            port = self.openclaw.get("gateway.port")
            host = self.openclaw.get("gateway.host")
            if port is not None or host is not None:
                port_number = DEFAULT_GATEWAY_PORT if port is None else _port(port, lowest=1)
                host_name = "127.0.0.1" if host is None else _host(host)
                if ":" in host_name and not host_name.startswith("["):
                    host_name = f"[{host_name}]"
                return f"ws://{host_name}:{port_number}"
        found = self.toml.get("gateway_ws_url") if self.toml else None
        return DEFAULT_GATEWAY_WS_URL if found is None else _ws_url(found)


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from error
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror or error}") from error


def _read_json(path: Path) -> _Document | None:
    text = _read_text(path)
    if text is None:
        return None
    try:
        data = json.loads(_blank_json_comments(text))
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"{path}: invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}"
            " (JSON with // and /* */ comments and trailing commas is understood; other JSON5, such as unquoted keys"
            " or single-quoted strings, is not)"
        ) from error
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must hold a JSON object at the top, not {_kind(data)}")
    return _Document(path, data, "openclaw.json", "an object")


def _read_toml(path: Path) -> _Document | None:
    text = _read_text(path)
    if text is None:
        return None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML: {error}") from error
    for key, value in data.items():
        if key not in _TOML_KEYS:
            raise ConfigError(f"{path}: unknown key {key!r} (known keys: {', '.join(sorted(_TOML_KEYS))})")
        subkeys = _TOML_KEYS[key]
        if subkeys is None:
            continue
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: key {key!r} must be a table ([{key}]), not {_kind(value)}")
        for subkey in value:
            if subkey not in subkeys:
                raise ConfigError(f"{path}: unknown key '{key}.{subkey}' (known keys in [{key}]: {', '.join(subkeys)})")
    return _Document(path, data, "config file", "a table")


def _blank_json_comments(text: str) -> str:
    """Blank out // and /* */ comments and trailing commas outside strings, keeping every line and column in place.

    OpenClaw reads its config as JSON5, so a hand-edited openclaw.json may carry these; the rest of JSON5 is refused.
    """
    out = list(text)

    def blank(start: int, end: int) -> None:
        for index in range(start, end):
            if out[index] not in "\r\n":
                out[index] = " "

    index, length, in_string, pending_comma = 0, len(text), False, -1
    while index < length:
        char = text[index]
        if in_string:
            if char == "\\":
                index += 1
            elif char == '"':
                in_string = False
        elif text.startswith(("//", "/*"), index):
            closer = "\n" if text[index + 1] == "/" else "*/"
            end = text.find(closer, index + 2)
            end = length if end < 0 else end + len(closer.strip())
            blank(index, end)
            index = end
            continue
        elif char == ",":
            pending_comma = index
        elif char in "}]" and pending_comma >= 0:
            out[pending_comma] = " "
            pending_comma = -1
        elif not char.isspace():
            in_string = char == '"'
            pending_comma = -1
        index += 1
    return "".join(out)


# --- converting raw values ------------------------------------------------------------------------------------------


def _kind(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}
    return "null" if value is None else names.get(type(value), f"a {type(value).__name__}")


def _string(value: _Value) -> str:
    if not isinstance(value.raw, str):
        raise value.error(f"must be a string, not {_kind(value.raw)}")
    text = value.raw.strip()
    if not text:
        raise value.error("must not be empty")
    return text


def _integer(value: _Value) -> int:
    raw = value.raw
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if value.is_text:
        text = str(raw).strip()
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        raise value.error(f"must be an integer, got {text!r}")
    raise value.error(f"must be an integer, not {_kind(raw)}")


def _port(value: _Value, *, lowest: int) -> int:
    number = _integer(value)
    if not lowest <= number <= 65535:
        raise value.error(f"port {number} is out of range ({lowest} to 65535)")
    return number


def _listen_port(value: _Value) -> int:
    return _port(value, lowest=0)  # 0 asks the system for any free port


def _host(value: _Value) -> str:
    host = _string(value)
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if not _HOSTNAME.fullmatch(host):
            raise value.error(f"{host!r} is not a host name or IP address (give the port separately)") from None
    return host


def _choice(value: _Value, choices: tuple[_T, ...], normalise: Callable[[str], str], what: str) -> _T:
    text = normalise(_string(value))
    for choice in choices:
        if choice == text:
            return choice
    raise value.error(f"unknown {what} {text!r} (choose one of: {', '.join(map(str, choices))})")


def _storage_backend(value: _Value) -> StorageBackend:
    return _choice(value, _STORAGE_BACKENDS, str.lower, "storage backend")


def _sqlite_synchronous(value: _Value) -> SqliteSynchronous:
    return _choice(value, _SQLITE_SYNCHRONOUS, str.upper, "SQLite synchronous mode")


def _log_level(value: _Value) -> str:
    return _choice(value, _LOG_LEVELS, str.upper, "log level")


def _memory_provider(value: _Value) -> MemoryProvider:
    """`pgvector` is another name for `postgres` (the adapter uses the extension when the database has it)."""
    text = _string(value).lower()
    if text not in _MEMORY_PROVIDERS:
        raise value.error(f"unknown memory provider {text!r} (choose one of: {', '.join(_MEMORY_PROVIDERS)})")
    return _MEMORY_PROVIDERS[text]


def _http_url(value: _Value, *, key_hint: str = "give Qdrant's API key in QDRANT_API_KEY") -> str:
    url = _string(value)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise value.error(f"{url!r} is not an http:// or https:// URL")
    try:
        _ = parts.port
    except ValueError as error:
        raise value.error(f"{url!r} has an invalid port") from error
    if parts.username or parts.password:
        raise value.error(f"must not hold a user name or password ({key_hint})")
    return url.rstrip("/")


def _embedder_url(value: _Value) -> str:
    return _http_url(value, key_hint="give the key in MEMORY_EMBEDDER_API_KEY or a key file")


def _dimensions(value: _Value) -> int:
    number = _integer(value)
    if not 1 <= number <= 65536:
        raise value.error(f"a vector size must be between 1 and 65536, not {number}")
    return number


def _qdrant_url(host: _Value | None, port: _Value | None) -> str | None:
    """The Qdrant URL from a host and a port given apart (MEMORY_HOST/MEMORY_PORT), None when neither is."""
    if host is None and port is None:
        return None
    host_name = "127.0.0.1" if host is None else _host(host)
    if ":" in host_name and not host_name.startswith("["):
        host_name = f"[{host_name}]"
    port_number = DEFAULT_QDRANT_PORT if port is None else _port(port, lowest=1)
    return f"http://{host_name}:{port_number}"


def _pg_url(value: _Value) -> str:
    url = _string(value)
    # Never quote the URL back: it may hold a password.
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise value.error("must be a postgresql:// URL (for example postgresql://user@localhost:5432/mem0)")
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when asked
    except ValueError:
        raise value.error("has a port that is not a number from 1 to 65535") from None
    return url


def _collection(value: _Value) -> str:
    name = _string(value)
    if not _COLLECTION_NAME.fullmatch(name):
        raise value.error(f"{name!r} is not a collection name (letters, digits, '_' and '-', at most 63)")
    return name


def _ws_url(value: _Value) -> str:
    url = _string(value)
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise value.error(f"{url!r} is not a ws:// or wss:// URL")
    try:
        _ = parts.port
    except ValueError as error:
        raise value.error(f"{url!r} has an invalid port") from error
    return url


def _strings(value: _Value) -> list[str]:
    raw = value.raw
    if value.is_text:
        items: list[object] = list(str(raw).split(","))
    elif isinstance(raw, list | tuple):
        items = list(raw)
    else:
        raise value.error(f"must be a list of strings, not {_kind(raw)}")
    result = []
    for item in items:
        if not isinstance(item, str):
            raise value.error(f"must be a list of strings, but holds {_kind(item)}")
        if item.strip():
            result.append(item.strip())
    return result


def _allowed_hosts(value: _Value) -> tuple[str, ...]:
    hosts = []
    for host in _strings(value):
        item = _Value(host, value.where, value.origin)
        hosts.append(_host(item).lower())
    return tuple(dict.fromkeys(hosts))


def _cors_origins(value: _Value) -> tuple[str, ...]:
    origins = []
    for origin in _strings(value):
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
            raise value.error(
                f"{origin!r} is not an origin like https://app.example.com (a wildcard or 'null' is never allowed)"
            )
        if parts.query or parts.fragment or parts.username or parts.password:
            raise value.error(f"{origin!r} is not an origin: only scheme://host[:port]")
        origins.append(f"{parts.scheme}://{parts.netloc}".lower())
    return tuple(dict.fromkeys(origins))


def _read_or_create_token(path: Path) -> tuple[str, bool]:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_token_file(path), False
    token = secrets.token_urlsafe(32)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(token + "\n")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return token, True


def read_token_file(path: Path) -> str:
    """A token kept in a file, refused when other users can read it."""
    token = _read_private_file(path, "token file")
    if not token:
        raise ConfigError(f"{path}: the token file is empty; delete it and a new token will be created")
    return token


def _read_key_file(path: Path) -> str:
    """An API key kept in a file (the user's), refused when other users can read it."""
    key = _read_private_file(path, "key file")
    if not key:
        raise ConfigError(f"{path}: the key file is empty")
    return key


def _read_private_file(path: Path, what: str) -> str:
    """The stripped text of a secret file; never quoted in an error."""
    try:
        if os.name == "posix" and path.stat().st_mode & 0o077:
            raise ConfigError(f"{path}: the {what} can be read by other users; fix it with: chmod 600 {path}")
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise ConfigError(f"{path}: cannot read the {what}: {reason or error}") from None
