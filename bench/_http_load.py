"""HTTP throughput of the real connector: the server runs in this process, the load in another (the other core).

Each of N concurrent clients loops for a fixed time over GET /api/threads/:id/messages (the web app opening a
thread: last 100 messages) or POST /api/threads/:id/messages (storing a turn), on random threads.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import random
import time
from pathlib import Path
from typing import Any

TOKEN = "bench-token"


def _client_process(url: str, mode: str, threads: int, clients: int, seconds: float, out: Any) -> None:
    out.put(asyncio.run(_load(url, mode, threads, clients, seconds)))


async def _load(url: str, mode: str, threads: int, clients: int, seconds: float) -> tuple[int, int, list[float]]:
    """A lean keep-alive HTTP/1.1 client (asyncio streams, no client library) so that the load generator costs
    the server's machine as little CPU as possible: the figure is the server's, not the client's."""
    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def client(number: int) -> None:
        nonlocal errors
        rng = random.Random(number)
        reader, writer = await asyncio.open_connection(host, int(port))
        sent = 0
        while time.perf_counter() < deadline:
            thread_id = f"t{rng.randrange(threads):06d}"
            path = f"/api/threads/{thread_id}/messages"
            if mode == "get":
                request = f"GET {path} HTTP/1.1\r\n{_HEADERS}\r\n".encode()
            else:
                sent += 1
                # A real client's clock: the time a message is sent, in milliseconds.
                stamp = int(time.time() * 1000)
                body = json.dumps(
                    {"id": f"load-{number}-{sent}", "role": "user", "content": "hello there", "timestamp": stamp}
                ).encode()
                head = f"POST {path} HTTP/1.1\r\n{_HEADERS}Content-Type: application/json\r\n"
                request = f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
            started = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append((time.perf_counter() - started) * 1000)
            if int(status_line.split()[1]) >= 300:
                errors += 1
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    elapsed = time.perf_counter() - started
    return int(len(latencies) / elapsed), errors, latencies


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
                f"latency p50 {p50:.2f} ms, p99 {p99:.2f} ms, {errors} errors"
            )
    finally:
        await service.stop()
