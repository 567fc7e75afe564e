"""HTTP throughput of the real connector: the server runs in this process, the load in another (the other core).

Each of N concurrent clients loops for a fixed time over GET /api/threads/:id/messages (the web app opening a
thread: last 100 messages) or POST /api/threads/:id/messages (storing a turn), on random threads.

The load comes from a lean Python client, and also from `wrk` when it is installed: both run on the same two
cores as the server, and wrk takes about half the CPU the Python client does, so its figure is closer to what
the server alone can do. Both are printed.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import random
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

TOKEN = "bench-token"
_RUN = f"{time.time_ns():x}"
"""Part of every posted message id, so that runs against the same database never collide."""


def _client_process(url: str, mode: str, threads: int, clients: int, seconds: float, out: Any) -> None:
    out.put(asyncio.run(_load(url, mode, threads, clients, seconds)))


async def _load(url: str, mode: str, threads: int, clients: int, seconds: float) -> tuple[int, int, list[float]]:
    """A lean keep-alive HTTP/1.1 client (asyncio protocols, no client library, no coroutine per line) so that the
    load generator costs the server's machine as little CPU as possible: the figure is the server's, not the
    client's."""
    host, port = url.removeprefix("http://").split(":")
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    finished: list[asyncio.Future[None]] = []

    class Client(asyncio.Protocol):
        def __init__(self, number: int) -> None:
            self.rng = random.Random(number)
            self.number = number
            self.sent = 0
            self.buffer = b""
            self.started = 0.0
            self.done: asyncio.Future[None] = loop.create_future()
            finished.append(self.done)

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport
            self.send()

        def send(self) -> None:
            if time.perf_counter() >= deadline:
                self.transport.close()
                self.done.set_result(None)
                return
            self.started = time.perf_counter()
            self.transport.write(_request(mode, self.rng, threads, self.number, self.sent))
            self.sent += 1

        def connection_lost(self, exc: Exception | None) -> None:
            nonlocal errors
            if not self.done.done():  # the server hung up on a request
                errors += 1
                self.done.set_result(None)

        def data_received(self, data: bytes) -> None:
            nonlocal errors
            self.buffer += data
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end]
            length_at = head.lower().find(b"content-length:")
            length = int(head[length_at + 15 : head.find(b"\r\n", length_at)]) if length_at >= 0 else 0
            if len(self.buffer) < head_end + 4 + length:
                return
            latencies.append((time.perf_counter() - self.started) * 1000)
            if int(head[9:12]) >= 300:
                errors += 1
            self.buffer = self.buffer[head_end + 4 + length :]
            self.send()

    started = time.perf_counter()
    for number in range(clients):
        await loop.create_connection(lambda number=number: Client(number), host, int(port))
    await asyncio.gather(*finished)
    elapsed = time.perf_counter() - started
    return int(len(latencies) / elapsed), errors, latencies


def _request(mode: str, rng: random.Random, threads: int, client: int, sent: int) -> bytes:
    path = f"/api/threads/t{rng.randrange(threads):06d}/messages"
    if mode == "get":
        return f"GET {path} HTTP/1.1\r\n{_HEADERS}\r\n".encode()
    # A real client's clock: the time a message is sent, in milliseconds.
    stamp = int(time.time() * 1000)
    body = json.dumps(
        {"id": f"load-{_RUN}-{client}-{sent}", "role": "user", "content": "hello there", "timestamp": stamp}
    ).encode()
    head = f"POST {path} HTTP/1.1\r\n{_HEADERS}Content-Type: application/json\r\n"
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


_HEADERS = f"Host: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nX-Workspace: bench\r\n"


def bench_http(data_dir: Path, threads: int, clients: int, seconds: float) -> None:
    asyncio.run(_serve_and_load(data_dir, threads, clients, seconds))


async def _serve_and_load(data_dir: Path, threads: int, clients: int, seconds: float) -> None:
    from claw_app.service import ConnectorService
    from claw_app.settings import load_settings

    settings = load_settings(
        env={"HOME": str(data_dir), "OPENCLAW_STATE_DIR": str(data_dir / "state")},
        overrides={"data_dir": data_dir, "port": 0, "auth_token": TOKEN, "log_level": "WARNING"},
    )
    service = ConnectorService(settings)
    url = await service.start()
    await service.container.workspaces().create("bench")
    wrk = shutil.which("wrk")
    try:
        for mode, label in (("get", "GET messages (last 100)"), ("post", "POST message")):
            queue: Any = multiprocessing.get_context("spawn").Queue()
            worker = multiprocessing.get_context("spawn").Process(
                target=_client_process, args=(url, mode, threads, clients, seconds, queue)
            )
            worker.start()
            rate, errors, latencies = await asyncio.to_thread(queue.get)
            await asyncio.to_thread(worker.join)
            latencies.sort()
            p50 = latencies[len(latencies) // 2]
            p99 = latencies[int(len(latencies) * 0.99)]
            print(
                f"HTTP {label}: {rate:,} requests/s with {clients} clients, "
                f"latency p50 {p50:.2f} ms, p99 {p99:.2f} ms, {errors} errors (Python client)"
            )
            if wrk is not None:
                print(f"HTTP {label}: {await asyncio.to_thread(_wrk, wrk, url, mode, threads, clients, seconds)}")
    finally:
        await service.stop()


_WRK_SCRIPT = """
wrk.headers["Authorization"] = "Bearer %(token)s"
wrk.headers["X-Workspace"] = "bench"
wrk.headers["Host"] = "127.0.0.1"
wrk.headers["Content-Type"] = "application/json"
local sent = 0
local run = "%(run)s"
request = function()
  local path = string.format("/api/threads/t%%06d/messages", math.random(0, %(last)d))
  if "%(mode)s" == "get" then
    return wrk.format("GET", path)
  end
  sent = sent + 1
  local body = string.format(
    '{"id":"wrk-%%s-%%d","role":"user","content":"hello there","timestamp":%%d}', run, sent, os.time() * 1000)
  return wrk.format("POST", path, nil, body)
end
"""


def _wrk(wrk: str, url: str, mode: str, threads: int, clients: int, seconds: float) -> str:
    """One wrk thread (the other core serves), `clients` connections, the same requests as the Python client."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        # A fresh id prefix per run: wrk's random numbers repeat from run to run, and a repeated id is an update,
        # not the insert this measures.
        run = f"{_RUN}-{time.time_ns():x}"
        script.write(_WRK_SCRIPT % {"token": TOKEN, "run": run, "last": threads - 1, "mode": mode})
        script.flush()
        command = [wrk, "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--latency", "-s", script.name, url]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rate = float(_wrk_field(output, r"Requests/sec:\s+([\d.]+)")[0])
    p50, p99 = (_wrk_latency_ms(output, percent) for percent in ("50%", "99%"))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return (
        f"{rate:,.0f} requests/s with {clients} clients, latency p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
        f"{errors.group(1) if errors else 0} errors (wrk)"
    )


def _wrk_latency_ms(output: str, percent: str) -> float:
    value, unit = _wrk_field(output, rf"{percent}\s+([\d.]+)(us|ms|s)")
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _wrk_field(output: str, pattern: str) -> tuple[str, ...]:
    found = re.search(pattern, output)
    if found is None:
        raise RuntimeError(f"unexpected wrk output (no {pattern!r}):\n{output}")
    return found.groups()
