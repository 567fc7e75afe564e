"""The composition root: the one place that decides which adapter serves which port.

Swapping a backend is a configuration value read by a `Selector`, never a code edit; tests swap providers with
`container.override(...)` instead of monkeypatching.
"""

from __future__ import annotations

from pathlib import Path

from dependency_injector import containers, providers

from claw_adapters.gateway.client import GatewayClient
from claw_adapters.gateway.identity import DEFAULT_FILE_NAME, DeviceIdentity
from claw_adapters.gateway.transcripts import SessionTranscriptFiles
from claw_adapters.storage.memory import InMemoryHistoryStores
from claw_adapters.storage.pending_sessions import JsonFilePendingSessions
from claw_adapters.storage.sqlite import SqliteHistoryStores
from claw_adapters.storage.uploads import FileUploadStore
from claw_adapters.storage.workspace_file import InMemoryWorkspaceRegistry, JsonFileWorkspaceRegistry
from claw_app.settings import Settings
from claw_core import __version__
from claw_core.services.browser_session import BrowserSession
from claw_core.services.chat_relay import ChatRelay
from claw_core.services.clock import SystemClock
from claw_core.services.events import ClientEvents
from claw_core.services.history import ActiveThreads, HistoryService
from claw_core.services.sessions import SessionJanitor
from claw_core.services.titles import FirstMessageTitles
from claw_core.services.transfer import TransferService
from claw_core.services.workspaces import WorkspaceService

__all__ = ["Container", "build_container"]

WORKSPACES_FILE = "workspaces.json"
UPLOADS_DIR = "uploads"
PENDING_SESSIONS_FILE = "pending-session-cleanups.json"


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
            path=providers.Callable(lambda data_dir: Path(data_dir) / WORKSPACES_FILE, config.data_dir),
        ),
        memory=providers.Singleton(InMemoryWorkspaceRegistry),
    )

    # Files, whatever the history backend: the agent opens attachments by their path on this machine.
    uploads = providers.Singleton(
        FileUploadStore,
        root=providers.Callable(lambda data_dir: Path(data_dir) / UPLOADS_DIR, config.data_dir),
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

    gateway_identity = providers.Singleton(
        DeviceIdentity.load_or_create,
        providers.Callable(lambda data_dir: Path(data_dir) / DEFAULT_FILE_NAME, config.data_dir),
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
                path=providers.Callable(lambda data_dir: Path(data_dir) / PENDING_SESSIONS_FILE, config.data_dir),
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
        }
    )
    return container
