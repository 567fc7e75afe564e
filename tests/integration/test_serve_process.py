"""`claw serve` and friends as real processes: durability across kill -9, clean shutdown, clear start-up errors."""

from __future__ import annotations

import json
import signal
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from tests.integration.processes import TOKEN, claw_command, claw_env, start_claw

pytestmark = pytest.mark.integration


def test_a_message_answered_201_survives_kill_9(tmp_path: Path) -> None:
    claw = start_claw(tmp_path)
    assert claw.request("POST", "/api/threads", {"id": "t1"})[0] == 201
    for index in range(25):
        status, _ = claw.request(
            "POST",
            "/api/threads/t1/messages",
            {"id": f"m{index}", "role": "user", "content": f"n{index}", "timestamp": index},
        )
        assert status == 201
    assert claw.kill(signal.SIGKILL) == -signal.SIGKILL

    again = start_claw(tmp_path, port=claw.port)
    try:
        status, body = again.request("GET", "/api/threads/t1/messages?limit=500")
        assert status == 200
        assert [m["id"] for m in body["messages"]] == [f"m{i}" for i in range(25)]
        assert again.request("GET", "/api/threads/t1")[1]["thread"]["title"] == "n0"
    finally:
        again.kill(signal.SIGTERM)


def test_sigterm_shuts_down_cleanly_and_closes_the_databases(tmp_path: Path) -> None:
    claw = start_claw(tmp_path)
    claw.request("POST", "/api/threads", {"id": "t1"})
    assert claw.kill(signal.SIGTERM) == 0
    log = claw.log()
    assert f"listening on http://127.0.0.1:{claw.port}" in log
    assert "connector stopped" in log
    assert TOKEN not in log
    history = tmp_path / ".openclaw" / "clawchats" / "history"
    assert (history / "default.sqlite3").exists()
    # The last connection to close checkpoints the WAL and removes it: nothing is left half-written.
    assert not (history / "default.sqlite3-wal").exists()


def test_first_start_creates_a_private_token_file(tmp_path: Path) -> None:
    claw = start_claw(tmp_path, CLAWCHATS_AUTH_TOKEN="")
    try:
        token_file = tmp_path / ".openclaw" / "clawchats" / "token"
        token = token_file.read_text().strip()
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert len(token) >= 32 and token not in claw.log()
        assert str(token_file) in claw.log()
        assert claw.request("GET", "/api/threads")[0] == 401
        assert claw.request("GET", "/api/threads", token=token)[0] == 200
    finally:
        claw.kill(signal.SIGTERM)


def run_claw(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        claw_command(*args), env=claw_env(home, **env), capture_output=True, text=True, timeout=60, check=False
    )


def test_a_public_bind_without_a_configured_token_is_refused(tmp_path: Path) -> None:
    result = run_claw(tmp_path, "serve", "--host", "0.0.0.0", "--port", "0", CLAWCHATS_AUTH_TOKEN="")
    assert result.returncode == 2
    assert "token" in result.stderr.lower() and "Traceback" not in result.stderr


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_claw(tmp_path, "serve", "--port", str(port))
    assert result.returncode == 2
    assert f"127.0.0.1:{port}" in result.stderr and "in use" in result.stderr and "Traceback" not in result.stderr


def test_a_malformed_config_file_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "connector.toml"
    config.write_text("port = [unclosed\n")
    result = run_claw(tmp_path, "serve", CLAW_CONFIG_FILE=str(config))
    assert result.returncode == 2
    assert str(config) in result.stderr and "Traceback" not in result.stderr


def test_export_and_import_through_the_command_line(tmp_path: Path) -> None:
    claw = start_claw(tmp_path)
    claw.request("POST", "/api/workspaces", {"name": "copy", "agent": "other"})
    claw.request("POST", "/api/threads", {"id": "t1"})
    for index in range(3):
        claw.request(
            "POST", "/api/threads/t1/messages", {"id": f"m{index}", "role": "user", "content": "x", "timestamp": index}
        )
    claw.kill(signal.SIGTERM)

    exported = tmp_path / "export.json"
    result = run_claw(tmp_path, "export", "--output", str(exported))
    assert result.returncode == 0, result.stderr
    document = json.loads(exported.read_text())
    assert document["workspace"] == "default" and len(document["threads"][0]["messages"]) == 3

    result = run_claw(tmp_path, "import", str(exported), "--workspace", "copy")
    assert result.returncode == 0, result.stderr
    assert "imported 1 of 1 threads and 3 of 3 messages" in result.stderr
    result = run_claw(tmp_path, "import", str(exported), "--workspace", "copy")
    assert "imported 0 of 1 threads and 0 of 3 messages" in result.stderr

    again = start_claw(tmp_path)
    try:
        status, body = again.request("GET", "/api/threads/t1", workspace="copy")
        assert status == 200 and body["thread"]["session_key"] == "agent:other:copy:chat:t1"
        status, body = again.request("GET", "/api/threads/t1/messages", workspace="copy")
        assert [m["id"] for m in body["messages"]] == ["m0", "m1", "m2"]
    finally:
        again.kill(signal.SIGTERM)

    missing = run_claw(tmp_path, "import", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    unknown = run_claw(tmp_path, "export", "--workspace", "ghost")
    assert unknown.returncode == 2 and "Workspace not found" in unknown.stderr
