"""The real OpenClaw gateway as a test fixture: one process on a free loopback port, isolated in a temp HOME.

    with FakeModel() as model, GatewayProcess.for_model(model, tmp_path) as gateway:
        ...  # gateway.url, gateway.token; the gateway's agent answers through `model`

Startup takes 10-14 s and the processes about 1 GB of memory, so tests share ONE gateway per session
(`session_gateway`, wrapped by the `openclaw_gateway` fixture) and start their own only to break it (kill, restart).

Isolation and the network: HOME, OPENCLAW_STATE_DIR, OPENCLAW_CONFIG_PATH and TMPDIR point into the temp dir;
channels, Bonjour/mDNS, update checks, telemetry and the hosted model catalog are off; and OpenClaw's managed
forward proxy points at the fake model's egress trap, so any HTTP/WebSocket request of the gateway to a
non-loopback host ends on 127.0.0.1 with a 403 and is recorded in `FakeModel.egress_attempts`.

The gateway is stopped by pid (SIGTERM, then SIGKILL after a timeout), and so is every process it started: the harness
records its process tree (pid and start time, from /proc) and kills what is left. An atexit hook kills whatever a
failed test session left running.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ipaddress
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect_async
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect as ws_connect

from tests.support.fake_model import FakeModel
from tests.support.openclaw_install import OPENCLAW_VERSION, ensure_installed, node_env, openclaw_command

__all__ = [
    "CONNECT_SCOPES",
    "MODEL_REF",
    "GatewayError",
    "GatewayProcess",
    "GatewayRpcError",
    "RawGatewayClient",
    "chat_event",
    "connect_params",
    "free_port",
    "gateway_config",
    "session_fake_model",
    "session_gateway",
]

MODEL_REF = "fake/fake-1"
CONNECT_SCOPES = ("operator.read", "operator.write", "operator.admin")
STARTUP_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0
KILL_WAIT_S = 10.0
REAP_GRACE_S = 0.5
# Environment of the gateway: the documented embedding preset plus everything that would reach the internet off.
GATEWAY_ENV = {
    "OPENCLAW_DISABLE_BONJOUR": "1",
    "OPENCLAW_NO_RESPAWN": "1",
    "OPENCLAW_SKIP_CHANNELS": "1",
    "OPENCLAW_EXEC_SHELL_SNAPSHOT": "0",
    "OPENCLAW_NO_AUTO_UPDATE": "1",
    "CLAWHUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "NO_COLOR": "1",
    "FORCE_COLOR": "0",
}
_DROPPED_ENV_PREFIXES = ("OPENCLAW", "CLAWHUB", "CLAWDHUB", "CLAW_", "NODE_OPTIONS")
_DROPPED_ENV = {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "ws_proxy", "wss_proxy"}

_running: weakref.WeakSet[GatewayProcess] = weakref.WeakSet()


class GatewayError(RuntimeError):
    """The gateway did not start, or did not stop, as expected; the message carries the tail of its log."""


class _NotReady(Exception):
    """The gateway answered, but is still starting (`UNAVAILABLE`, retryable)."""


def free_port() -> int:
    """A port of 127.0.0.1 free right now whose neighbour +2 (the gateway's browser-control port) is free too."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port + 2 < 65536 and _port_free(port + 2):
            return port
    raise GatewayError("no free loopback port pair found")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def gateway_config(
    *, port: int, token: str, model_base_url: str, egress_proxy_url: str | None, log_file: Path
) -> dict[str, Any]:
    """The openclaw.json of a test gateway (the recipe of reference/openclaw-gateway.md plus the network guards)."""
    config: dict[str, Any] = {
        "gateway": {"mode": "local", "port": port, "bind": "loopback", "auth": {"mode": "token", "token": token}},
        "models": {
            "mode": "replace",
            "catalogRefresh": {"enabled": False},
            "providers": {
                "fake": {
                    "baseUrl": model_base_url,
                    "apiKey": "fake-key",
                    "api": "openai-completions",
                    "models": [
                        {
                            "id": "fake-1",
                            "name": "Fake",
                            "reasoning": False,
                            "input": ["text"],
                            "contextWindow": 32000,
                            "maxTokens": 1000,
                        }
                    ],
                }
            },
        },
        "agents": {"defaults": {"model": {"primary": MODEL_REF}}},
        "update": {"checkOnStart": False},
        "telemetry": {"enabled": False},
        "discovery": {"mdns": {"mode": "off"}},
        "logging": {"file": str(log_file)},
    }
    if egress_proxy_url is not None:
        config["proxy"] = {"proxyUrl": egress_proxy_url}
    return config


def connect_params(
    token: str, *, client_id: str = "gateway-client", scopes: tuple[str, ...] = CONNECT_SCOPES
) -> dict[str, Any]:
    """The `connect` params verified against 2026.9.6: a trusted local backend client with the shared token."""
    return {
        "minProtocol": 3,
        "maxProtocol": 4,
        "client": {"id": client_id, "version": "0.1.0", "platform": "linux", "mode": "backend"},
        "role": "operator",
        "scopes": list(scopes),
        "caps": [],
        "auth": {"token": token},
        "locale": "en-US",
        "userAgent": "claw-connector-tests/0.1.0",
    }


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class GatewayProcess:
    """One real `openclaw gateway run` process; `start()` returns once an authenticated `connect` gets hello-ok.

    root: a directory of its own (a pytest tmp dir); HOME is `root/home`, the state dir `root/home/.openclaw`.
    port/token: fixed by the first `start()` and kept by `restart()`, so sessions and clients carry over.
    extra_config: deep-merged into openclaw.json (e.g. `{"agents": {"defaults": {"timeoutSeconds": 30}}}`).
    provider_max_retries: the agent's same-model retries after a failed model request. OpenClaw's default retries a
        500 eight times with backoff (about 83 s before the run fails); 0, the default here, fails the run after one
        request (about 5 s). None keeps OpenClaw's default. Written to the main agent's `settings.json`, a private
        file layout of 2026.9.6 (test-only; the connector must never rely on it).
    """

    def __init__(
        self,
        root: Path,
        *,
        model_base_url: str,
        egress_proxy_url: str | None = None,
        port: int | None = None,
        token: str | None = None,
        extra_config: Mapping[str, Any] | None = None,
        provider_max_retries: int | None = 0,
        startup_timeout_s: float = STARTUP_TIMEOUT_S,
    ) -> None:
        self.root = root
        self.home = root / "home"
        self.state_dir = self.home / ".openclaw"
        self.config_path = self.state_dir / "openclaw.json"
        self.log_path = root / "gateway.log"
        self.file_log_path = root / "openclaw-file.log"
        self.port = port or free_port()
        self.token = token or secrets.token_urlsafe(24)
        self.model_base_url = model_base_url
        self.egress_proxy_url = egress_proxy_url
        self.extra_config = dict(extra_config or {})
        self.provider_max_retries = provider_max_retries
        self.startup_timeout_s = startup_timeout_s
        self.hello: dict[str, Any] = {}
        self.startup_seconds = 0.0
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    def for_model(cls, model: FakeModel, root: Path, **options: Any) -> GatewayProcess:
        """A gateway whose agent talks to `model` and whose other egress ends in `model`'s trap."""
        return cls(root, model_base_url=model.base_url, egress_proxy_url=model.egress_proxy_url, **options)

    # what tests read

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def log(self) -> str:
        """stdout and stderr of every start of this gateway, in order."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    # lifecycle

    def start(self) -> GatewayProcess:
        if self.running:
            return self
        ensure_installed(progress=False)
        self._write_config()
        started = time.monotonic()
        with self.log_path.open("ab") as log_file:
            log_file.write(f"\n=== start {time.strftime('%H:%M:%S')} port {self.port} ===\n".encode())
            log_file.flush()
            self._process = subprocess.Popen(
                openclaw_command("gateway", "run", "--port", str(self.port), "--bind", "loopback"),
                env=self._env(),
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() reaches the gateway's children too
            )
        _running.add(self)
        try:
            self.hello = self._wait_ready(started + self.startup_timeout_s)
        except BaseException:
            self.kill()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM to the gateway, SIGKILL to it and its descendants after `timeout_s`, then SIGKILL to any of them
        still alive a moment after it exited; returns the exit status (143 after SIGTERM; None if never started)."""
        process = self._process
        if process is None:
            return None
        tree = self._tree()
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                _kill_processes(tree | self._tree())
                process.wait(KILL_WAIT_S)
        _reap(tree)
        _running.discard(self)
        return process.returncode

    def kill(self) -> int | None:
        """SIGKILL to the gateway and its descendants at once (a crash, as far as clients can tell)."""
        process = self._process
        if process is None:
            return None
        tree = self._tree()
        _kill_processes(tree)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(KILL_WAIT_S)
        _reap(tree)
        _running.discard(self)
        return process.returncode

    def restart(self, *, hard: bool = False) -> GatewayProcess:
        """Stop (or with `hard`, kill) and start again on the same port with the same HOME, so sessions persist."""
        if hard:
            self.kill()
        else:
            self.stop()
        return self.start()

    def restart_in_process(self, timeout_s: float = STARTUP_TIMEOUT_S) -> GatewayProcess:
        """SIGUSR2: the gateway's own in-process restart (same pid). Clients get a `shutdown` event with
        `restartExpectedMs` and a 1012 close. Returns when a handshake reaches the new boot (`server.bootId` changed).
        While a run is active the gateway defers this restart (observed: not within 30 s with a hanging model)."""
        process = self._process
        if process is None or process.poll() is not None:
            raise GatewayError("restart_in_process needs a running gateway")
        old_boot = self.hello.get("server", {}).get("bootId")
        process.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            hello = self._wait_ready(deadline)
            if hello.get("server", {}).get("bootId") != old_boot:
                self.hello = hello
                return self
            time.sleep(0.2)
        raise GatewayError(f"no new boot within {timeout_s:.0f} s after SIGUSR2:\n{self.log_tail()}")

    async def restart_async(self, *, hard: bool = False) -> GatewayProcess:
        """`restart` off the event loop, for async tests that keep clients running meanwhile."""
        return await asyncio.to_thread(self.restart, hard=hard)

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def process_ids(self) -> list[int]:
        """Every live process of the gateway: itself, its descendants (the spawn broker runs in a process group of
        its own) and its process group (workers)."""
        return sorted(self._tree())

    def foreign_connections(self) -> list[str]:
        """Remote `address:port` of every TCP connection of the gateway's processes that is not on loopback
        (Linux /proc; a listening or unconnected socket has no remote and is not listed). Tests assert it is empty."""
        inodes: set[str] = set()
        for pid in self.process_ids():
            with contextlib.suppress(OSError):
                for fd in Path(f"/proc/{pid}/fd").iterdir():
                    with contextlib.suppress(OSError):
                        target = os.readlink(fd)
                        if target.startswith("socket:["):
                            inodes.add(target[8:-1])
        return [remote for inode, remote in _tcp_remotes() if inode in inodes and not _is_loopback(remote)]

    # internals

    def _write_config(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(exist_ok=True)
        config = gateway_config(
            port=self.port,
            token=self.token,
            model_base_url=self.model_base_url,
            egress_proxy_url=self.egress_proxy_url,
            log_file=self.file_log_path,
        )
        self.config_path.write_text(json.dumps(_deep_merge(config, self.extra_config), indent=2))
        self.config_path.chmod(0o600)
        if self.provider_max_retries is not None:
            agent_dir = self.state_dir / "agents" / "main" / "agent"
            agent_dir.mkdir(parents=True, exist_ok=True)
            settings = {"retry": {"provider": {"maxRetries": self.provider_max_retries}}}
            (agent_dir / "settings.json").write_text(json.dumps(settings))

    def _env(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(_DROPPED_ENV_PREFIXES) and key.lower() not in _DROPPED_ENV
        }
        env.update(GATEWAY_ENV)
        env.update(
            {
                "HOME": str(self.home),
                "OPENCLAW_STATE_DIR": str(self.state_dir),
                "OPENCLAW_CONFIG_PATH": str(self.config_path),
                "TMPDIR": str(self.root / "tmp"),
            }
        )
        return node_env(env)

    def _wait_ready(self, deadline: float) -> dict[str, Any]:
        """Poll until a token `connect` gets hello-ok (a refused port, a dropped socket or a retryable
        `UNAVAILABLE` during startup mean: not yet)."""
        last_error = "no attempt"
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                code = None if self._process is None else self._process.returncode
                raise GatewayError(f"openclaw gateway exited with {code} during startup:\n{self.log_tail()}")
            try:
                return self._handshake(min(5.0, max(0.5, deadline - time.monotonic())))
            except (OSError, TimeoutError, WebSocketException, _NotReady) as error:
                last_error = f"{type(error).__name__}: {error}"
            time.sleep(0.2)
        raise GatewayError(
            f"openclaw {OPENCLAW_VERSION} on {self.url} not ready within {self.startup_timeout_s:.0f} s "
            f"({last_error}):\n{self.log_tail()}"
        )

    def _handshake(self, timeout_s: float) -> dict[str, Any]:
        with ws_connect(self.url, open_timeout=timeout_s, close_timeout=1, max_size=None) as socket_:
            challenge = json.loads(socket_.recv(timeout_s))
            if challenge.get("event") != "connect.challenge":
                raise _NotReady(f"expected connect.challenge, got {challenge}")
            request_id = str(uuid.uuid4())
            socket_.send(
                json.dumps({"type": "req", "id": request_id, "method": "connect", "params": connect_params(self.token)})
            )
            end = time.monotonic() + timeout_s
            while time.monotonic() < end:
                frame = json.loads(socket_.recv(max(0.1, end - time.monotonic())))
                if frame.get("type") == "res" and frame.get("id") == request_id:
                    if not frame.get("ok"):
                        error = frame.get("error") or {}
                        if error.get("retryable") or error.get("code") == "UNAVAILABLE":
                            raise _NotReady(str(error))
                        raise GatewayError(f"connect refused: {error}\n{self.log_tail()}")
                    payload = frame.get("payload")
                    if not isinstance(payload, dict):
                        raise GatewayError(f"connect answered without payload: {frame}")
                    return payload
            raise TimeoutError("no connect response")

    def _tree(self) -> dict[int, int]:
        """pid -> start time of the gateway, its descendants and its process group, from /proc."""
        if self._process is None:
            return {}
        root = self._process.pid
        table = _process_table()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        running = self._process.poll() is None  # once reaped, its pid may belong to someone else
        frontier = [pid for pid, (_, group, _) in table.items() if (running and pid == root) or group == root]
        tree: dict[int, int] = {}
        while frontier:
            pid = frontier.pop()
            if pid in tree or pid not in table:
                continue
            tree[pid] = table[pid][2]
            frontier.extend(children.get(pid, []))
        return tree


def _tcp_remotes() -> Iterator[tuple[str, str]]:
    """(inode, remote "ip:port") of every TCP socket with a remote peer in this network namespace."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            remote_hex, port_hex = fields[2].split(":")
            if int(port_hex, 16) == 0:
                continue
            raw = bytes.fromhex(remote_hex)
            # /proc shows each 32-bit word in host (little-endian) order
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            address = ipaddress.ip_address(words)
            yield fields[9], f"{address}:{int(port_hex, 16)}"


def _is_loopback(remote: str) -> bool:
    address = ipaddress.ip_address(remote.rsplit(":", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _process_table() -> dict[int, tuple[int, int, int]]:
    """pid -> (ppid, process group, start time in clock ticks) of every process, from /proc/<pid>/stat."""
    table: dict[int, tuple[int, int, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()  # after "pid (comm)"
        except (OSError, IndexError):
            continue
        table[int(entry.name)] = (int(fields[1]), int(fields[2]), int(fields[19]))
    return table


def _alive(tree: Mapping[int, int]) -> dict[int, int]:
    """The processes of `tree` still running (same pid AND same start time, so a reused pid is never signalled)."""
    table = _process_table()
    return {pid: started for pid, started in tree.items() if pid in table and table[pid][2] == started}


def _kill_processes(tree: Mapping[int, int]) -> None:
    for pid in _alive(tree):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _reap(tree: Mapping[int, int]) -> None:
    """Give what the gateway started REAP_GRACE_S to end on its own, then SIGKILL it and wait (bounded)."""
    deadline = time.monotonic() + REAP_GRACE_S
    while _alive(tree) and time.monotonic() < deadline:
        time.sleep(0.05)
    deadline = time.monotonic() + KILL_WAIT_S
    while (left := _alive(tree)) and time.monotonic() < deadline:
        _kill_processes(left)
        time.sleep(0.05)


@atexit.register
def _kill_leftovers() -> None:
    for gateway in list(_running):
        gateway.kill()


# Plain generator functions for pytest fixtures (see the conftest snippet in docs/gateway-protocol-notes.md).


def session_fake_model() -> Iterator[FakeModel]:
    """One fake model for the whole test session."""
    with FakeModel() as model:
        yield model


def session_gateway(model: FakeModel, root: Path, **options: Any) -> Iterator[GatewayProcess]:
    """One real gateway for the whole test session, talking to `model`; stopped by pid at the end."""
    gateway = GatewayProcess.for_model(model, root, **options)
    try:
        gateway.start()
        yield gateway
    finally:
        gateway.stop()


class GatewayRpcError(Exception):
    """A `res` frame with ok:false; `code`, `message` and `details` are the gateway's."""

    def __init__(self, method: str, error: Mapping[str, Any]) -> None:
        self.method = method
        self.code = str(error.get("code", ""))
        self.message = str(error.get("message", ""))
        details = error.get("details")
        self.details: dict[str, Any] = dict(details) if isinstance(details, Mapping) else {}
        self.error = dict(error)
        super().__init__(f"{method}: {self.code}: {self.message}")


class RawGatewayClient:
    """A bare protocol client over `websockets` for tests that look at the wire itself (not the connector's client).

        async with RawGatewayClient(gateway.url, gateway.token) as client:  # challenge, connect, hello-ok
            payload = await client.call("chat.send", {...})
            final = await client.wait_event(lambda f: f["event"] == "chat" and f["payload"]["state"] == "final")

    Every frame received is kept in `frames`; events also go to a queue read by `wait_event`/`events_until`.
    """

    def __init__(self, url: str, token: str, *, params: Mapping[str, Any] | None = None) -> None:
        self.url = url
        self.token = token
        self.params = dict(params) if params is not None else connect_params(token)
        self.frames: list[dict[str, Any]] = []
        self.challenge: dict[str, Any] = {}
        self.hello: dict[str, Any] = {}
        self.close_code: int | None = None
        self.close_reason: str = ""
        self.closed = asyncio.Event()
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._socket: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RawGatewayClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self, timeout_s: float = 10.0) -> dict[str, Any]:
        """Open the socket and return the `connect.challenge` event (no connect sent yet)."""
        self._socket = await ws_connect_async(self.url, open_timeout=timeout_s, max_size=None, close_timeout=2)
        self.challenge = json.loads(await asyncio.wait_for(self._socket.recv(), timeout_s))
        self.frames.append(self.challenge)
        self._reader = asyncio.create_task(self._read())
        return self.challenge

    async def connect(self, timeout_s: float = 10.0) -> dict[str, Any]:
        """Challenge, `connect`, and the hello-ok payload (raises GatewayRpcError when refused)."""
        await self.open(timeout_s)
        self.hello = await self.call("connect", self.params, timeout_s=timeout_s)
        return self.hello

    async def request(self, method: str, params: Mapping[str, Any], *, timeout_s: float = 30.0) -> dict[str, Any]:
        """Send a `req` and return the whole `res` frame, ok or not."""
        if self._socket is None:
            raise RuntimeError("not open")
        request_id = str(uuid.uuid4())
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        await self._socket.send(json.dumps({"type": "req", "id": request_id, "method": method, "params": params}))
        try:
            return await asyncio.wait_for(future, timeout_s)
        finally:
            self._pending.pop(request_id, None)

    async def call(self, method: str, params: Mapping[str, Any], *, timeout_s: float = 30.0) -> dict[str, Any]:
        """`request`, returning the payload of an ok response and raising GatewayRpcError otherwise."""
        frame = await self.request(method, params, timeout_s=timeout_s)
        if not frame.get("ok"):
            raise GatewayRpcError(method, frame.get("error") or {})
        payload = frame.get("payload")
        return payload if isinstance(payload, dict) else {}

    async def wait_event(self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 60.0) -> dict[str, Any]:
        """The next event matching `predicate` (events before it are consumed)."""
        return (await self.events_until(predicate, timeout_s))[-1]

    async def events_until(
        self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 60.0
    ) -> list[dict[str, Any]]:
        """Every event up to and including the first one matching `predicate`; TimeoutError after `timeout_s`."""
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout_s):
            while True:
                event = await self._events.get()
                seen.append(event)
                if predicate(event):
                    return seen

    def drain_events(self) -> list[dict[str, Any]]:
        """The events queued right now, without waiting."""
        drained = []
        while not self._events.empty():
            drained.append(self._events.get_nowait())
        return drained

    async def wait_closed(self, timeout_s: float = 30.0) -> tuple[int | None, str]:
        await asyncio.wait_for(self.closed.wait(), timeout_s)
        return self.close_code, self.close_reason

    async def close(self) -> None:
        if self._socket is not None:
            await self._socket.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def _read(self) -> None:
        socket_ = self._socket
        if socket_ is None:
            return
        try:
            async for message in socket_:
                frame = json.loads(message)
                self.frames.append(frame)
                if frame.get("type") == "res":
                    future = self._pending.get(str(frame.get("id")))
                    if future is not None and not future.done():
                        future.set_result(frame)
                elif frame.get("type") == "event":
                    self._events.put_nowait(frame)
        except WebSocketException:
            pass
        finally:
            self.close_code = socket_.close_code
            self.close_reason = socket_.close_reason or ""
            self.closed.set()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"closed {self.close_code} {self.close_reason}"))


def chat_event(session_key: str, *states: str, run_id: str | None = None) -> Callable[[dict[str, Any]], bool]:
    """A predicate for `RawGatewayClient.wait_event`: a `chat` event of `session_key` in one of `states`."""

    def matches(frame: dict[str, Any]) -> bool:
        payload = frame.get("payload") or {}
        return (
            frame.get("event") == "chat"
            and payload.get("sessionKey") == session_key
            and (not states or payload.get("state") in states)
            and (run_id is None or payload.get("runId") == run_id)
        )

    return matches
