"""The composition root: the one place that decides which adapter serves which port.

Swapping a backend is a configuration value read by a `Selector`, never a code edit; tests swap providers with
`container.override(...)` instead of monkeypatching.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dependency_injector import containers, providers

from claw_adapters.files import LocalDiskFiles
from claw_adapters.gateway.client import GatewayClient
from claw_adapters.gateway.identity import DEFAULT_FILE_NAME, DeviceIdentity
from claw_adapters.gateway.transcripts import SessionTranscriptFiles
from claw_adapters.memory.in_memory import InMemoryMemoryStore
from claw_adapters.memory.openai_embedder import OpenAICompatibleEmbedder
from claw_adapters.memory.sqlite import DEFAULT_FILE_NAME as MEMORY_FILE
from claw_adapters.memory.sqlite import SqliteMemoryStore
from claw_adapters.storage.memory import InMemoryHistoryStores
from claw_adapters.storage.pending_sessions import JsonFilePendingSessions
from claw_adapters.storage.sqlite import SqliteHistoryStores
from claw_adapters.storage.uploads import FileUploadStore
from claw_adapters.storage.workspace_file import InMemoryWorkspaceRegistry, JsonFileWorkspaceRegistry
from claw_app.settings import Settings
from claw_core import __version__
from claw_core.api.file_routes import FileApi
from claw_core.ports import Embedder, MemoryStore
from claw_core.services.browser_session import BrowserSession
from claw_core.services.chat_relay import ChatRelay
from claw_core.services.clock import SystemClock
from claw_core.services.events import ClientEvents
from claw_core.services.file_policy import FilePolicy
from claw_core.services.history import ActiveThreads, HistoryService
from claw_core.services.sessions import SessionJanitor
from claw_core.services.titles import FirstMessageTitles
from claw_core.services.transfer import TransferService
from claw_core.services.workspaces import WorkspaceService

__all__ = ["Container", "build_container"]

WORKSPACES_FILE = "workspaces.json"
UPLOADS_DIR = "uploads"
PENDING_SESSIONS_FILE = "pending-session-cleanups.json"


# The Qdrant and Postgres adapters are imported only when chosen: their client libraries take a while to load, and
# the default (SQLite) needs neither.


def _qdrant_store(
    url: str | None, collection: str | None, embedder: Embedder | None, api_key: str | None
) -> MemoryStore:
    from claw_adapters.memory.qdrant import QdrantMemoryStore

    return QdrantMemoryStore(url=url, path=None, collection=collection, embedder=embedder, api_key=api_key)


def _postgres_store(dsn: str, collection: str | None, embedder: Embedder | None) -> MemoryStore:
    from claw_adapters.memory.postgres import PostgresMemoryStore

    return PostgresMemoryStore(dsn=dsn, collection=collection, embedder=embedder)


def _embedder(
    url: str | None, model: str | None, api_key: str | None, dimensions: int | None
) -> OpenAICompatibleEmbedder | None:
    """The configured embedder (settings give a URL and a model together, or neither); None: search by words."""
    if url is None or model is None:
        return None
    return OpenAICompatibleEmbedder(base_url=url, model=model, api_key=api_key, dimensions=dimensions)


def configured_embedder(settings: Settings) -> OpenAICompatibleEmbedder | None:
    """The embedder the settings name, for code outside the container (`claw memory copy`)."""
    return _embedder(
        settings.memory_embedder_url,
        settings.memory_embedder_model,
        settings.memory_embedder_api_key,
        settings.memory_embedder_dimensions,
    )


def _in_data_dir(data_dir: Any, name: str) -> Any:
    """A provider of `<data_dir>/<name>`: a file or folder the connector keeps in its data directory."""
    return providers.Callable(_joined, data_dir, name)


def _joined(directory: str | Path, name: str) -> Path:
    return Path(directory) / name


class Container(containers.DeclarativeContainer):
    config = providers.Configuration(strict=True)

    clock = providers.Singleton(SystemClock)
    events = providers.Singleton(ClientEvents)
    titles = providers.Singleton(FirstMessageTitles)
    active_threads = providers.Singleton(ActiveThreads)

    history_stores = providers.Selector(
        config.storage_backend,
        sqlite=providers.Singleton(
            SqliteHistoryStores,
            data_dir=config.data_dir,
            synchronous=config.sqlite_synchronous,
        ),
        memory=providers.Singleton(InMemoryHistoryStores),
    )
    workspace_registry = providers.Selector(
        config.storage_backend,
        sqlite=providers.Singleton(
            JsonFileWorkspaceRegistry,
            path=_in_data_dir(config.data_dir, WORKSPACES_FILE),
        ),
        memory=providers.Singleton(InMemoryWorkspaceRegistry),
    )

    # Files, whatever the history backend: the agent opens attachments by their path on this machine.
    uploads = providers.Singleton(
        FileUploadStore,
        root=_in_data_dir(config.data_dir, UPLOADS_DIR),
    )

    workspaces = providers.Singleton(WorkspaceService, registry=workspace_registry, stores=history_stores, clock=clock)
    history = providers.Singleton(
        HistoryService,
        stores=history_stores,
        clock=clock,
        events=events,
        titles=titles,
        active=active_threads,
    )
    transfer = providers.Singleton(TransferService, stores=history_stores)

    # Semantic search in the stores that hold vectors (Qdrant, PostgreSQL with pgvector); SQLite and the in-memory
    # store have none, so they get no embedder. Constructing one never connects (docs/adr/0011).
    configured_embedder = providers.Singleton(
        _embedder,
        config.memory_embedder_url,
        config.memory_embedder_model,
        config.memory_embedder_api_key,
        config.memory_embedder_dimensions,
    )
    embedder = providers.Selector(
        config.memory_provider,
        qdrant=configured_embedder,
        postgres=configured_embedder,
        sqlite=providers.Object(None),
        memory=providers.Object(None),
    )

    # Constructing a memory store never connects: the connector starts (and says so in /api/memory/status) while
    # the chosen backend is down.
    memory_store = providers.Selector(
        config.memory_provider,
        sqlite=providers.Singleton(
            SqliteMemoryStore,
            path=_in_data_dir(config.data_dir, MEMORY_FILE),
            collection=config.memory_collection,
        ),
        memory=providers.Singleton(InMemoryMemoryStore),
        qdrant=providers.Singleton(
            _qdrant_store, config.memory_url, config.memory_collection, embedder, config.memory_qdrant_api_key
        ),
        postgres=providers.Singleton(_postgres_store, config.memory_pg_url, config.memory_collection, embedder),
    )

    # The file routes: HOME, the read roots and the folders a delete must spare come from `_file_settings`.
    file_api = providers.Singleton(
        FileApi,
        policy=providers.Singleton(
            FilePolicy.create,
            home=config.files.home,
            read_roots=config.files.read_roots,
            agent_workspace=config.files.agent_workspace,
            protected=config.files.protected,
            private=config.files.private,
        ),
        files=providers.Singleton(LocalDiskFiles, private=config.files.private),
    )

    gateway_identity = providers.Singleton(
        DeviceIdentity.load_or_create,
        _in_data_dir(config.data_dir, DEFAULT_FILE_NAME),
    )
    gateway = providers.Singleton(
        GatewayClient,
        url=config.gateway_ws_url,
        token=config.gateway_token,
        identity=gateway_identity,
        client_version=__version__,
    )
    chat_relay = providers.Singleton(
        ChatRelay,
        workspaces=workspaces,
        stores=history_stores,
        history=history,
        gateway=gateway,
        clock=clock,
        clients=events,
        uploads=uploads,
    )
    session_janitor = providers.Singleton(
        SessionJanitor,
        gateway=gateway,
        transcripts=providers.Singleton(SessionTranscriptFiles, config.sessions_dir),
        kept=providers.Selector(
            config.storage_backend,
            sqlite=providers.Singleton(
                JsonFilePendingSessions,
                path=_in_data_dir(config.data_dir, PENDING_SESSIONS_FILE),
            ),
            memory=providers.Object(None),
        ),
    )
    browser_session = providers.Factory(
        BrowserSession,
        token=config.auth_token,
        gateway=gateway,
        relay=chat_relay,
        clients=events,
        active=active_threads,
        clock=clock,
        server_version=__version__,
    )


def build_container(settings: Settings) -> Container:
    container = Container()
    container.config.from_dict(
        {
            "storage_backend": settings.storage_backend,
            "data_dir": settings.data_dir,
            "sqlite_synchronous": settings.sqlite_synchronous,
            "gateway_ws_url": settings.gateway_ws_url,
            "gateway_token": settings.gateway_token,
            "auth_token": settings.auth_token,
            "sessions_dir": settings.sessions_dir,
            "files": _file_settings(settings),
            "memory_provider": settings.memory_provider,
            "memory_url": settings.memory_url,
            "memory_collection": settings.memory_collection,
            "memory_pg_url": settings.memory_pg_url,
            "memory_qdrant_api_key": settings.memory_qdrant_api_key,
            "memory_embedder_url": settings.memory_embedder_url,
            "memory_embedder_model": settings.memory_embedder_model,
            "memory_embedder_api_key": settings.memory_embedder_api_key,
            "memory_embedder_dimensions": settings.memory_embedder_dimensions,
        }
    )
    return container


def _file_settings(settings: Settings) -> dict[str, object]:
    """HOME (the configured one, else the running user's), the read roots (HOME and /tmp unless configured), and the
    folders no delete may remove: the gateway's state, the agent's workspace and the connector's own data."""
    home = settings.home_dir or Path.home()
    roots = settings.file_roots or (home, Path("/tmp"))  # noqa: S108 - /tmp is a documented read root, never written
    return {
        "home": str(home),
        "read_roots": [str(root) for root in roots],
        "agent_workspace": str(settings.agent_workspace_dir),
        "protected": [str(settings.state_dir), str(settings.agent_workspace_dir), str(settings.data_dir)],
        "private": [str(settings.data_dir)],
    }
