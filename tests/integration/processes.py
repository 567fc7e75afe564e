"""Starting and stopping real `claw` processes for tests: free loopback ports, readiness by polling, stop by pid."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOKEN = "integration-test-token"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def claw_env(home: Path, **extra: str) -> dict[str, str]:
    """An environment that isolates the connector from the real user's files."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CLAW", "OPENCLAW", "GATEWAY"))}
    env.update({"HOME": str(home), "OPENCLAW_STATE_DIR": str(home / ".openclaw"), "CLAWCHATS_AUTH_TOKEN": TOKEN})
    env.update(extra)
    return env


def claw_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "claw_app", *args]


@dataclass
class ClawProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(
        self, method: str, path: str, body: Any = None, *, token: str = TOKEN, workspace: str | None = None
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {token}")
        if workspace is not None:
            request.add_header("X-Workspace", workspace)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self, signum: int = signal.SIGKILL) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout=20)


def start_claw(home: Path, *, port: int | None = None, args: tuple[str, ...] = (), **env: str) -> ClawProcess:
    port = port or free_port()
    log_path = home / f"claw-{port}-{time.monotonic_ns()}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            claw_command("serve", "--port", str(port), *args),
            env=claw_env(home, **env),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    claw = ClawProcess(process, port, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"claw serve exited with {process.returncode}:\n{claw.log()}")
        try:
            with urllib.request.urlopen(claw.url + "/api/health", timeout=1):
                return claw
        except OSError:
            time.sleep(0.05)
    claw.kill()
    raise RuntimeError(f"claw serve did not answer within 30 s:\n{claw.log()}")
