"""Relay benchmark: what the connector adds between the gateway and a browser.

A fake gateway and two observers run in this process: a client connected to the gateway directly, and a browser
connected through a real `claw serve` process. Each chat event is timestamped on arrival at both; the difference
is the latency the connector adds (its gateway client, the chat relay, persistence, the browser WebSocket).
Then 50 threads stream at once and the browser's event rate is measured. Prints figures, asserts nothing.
    .venv/bin/python bench/relay.py
Target: p99 added latency < 2 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakes.fake_gateway import FAKE_TOKEN, FakeGateway  # noqa: E402
from tests.integration.processes import free_port  # noqa: E402

from claw_adapters.gateway.client import GatewayClient  # noqa: E402
from claw_core.gateway import GatewayEvent  # noqa: E402

TOKEN = "bench-relay-token"


async def until(condition: Any, timeout_s: float = 120.0) -> None:
    """Poll (the bench observes other processes' effects; there is no event to wait on), bounded in time."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the relay benchmark stalled")
        await asyncio.sleep(0.001)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def start_connector(home: Path, gateway_url: str) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAW", "OPENCLAW", "GATEWAY"))}
    env.update(
        HOME=str(home),
        OPENCLAW_STATE_DIR=str(home / ".openclaw"),
        CLAWCHATS_AUTH_TOKEN=TOKEN,
        GATEWAY_WS_URL=gateway_url,
        OPENCLAW_GATEWAY_TOKEN=FAKE_TOKEN,
        CLAW_LOG_LEVEL="WARNING",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "claw_app", "serve", "--port", str(port), env=env, stdout=subprocess.DEVNULL
    )
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            try:
                async with session.get(f"http://127.0.0.1:{port}/api/health") as response:
                    if response.status == 200:
                        return process, port
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    process.kill()
    raise RuntimeError("claw serve did not start")


async def browser_frames(socket: aiohttp.ClientWebSocketResponse, arrivals: dict[tuple[str, int], float]) -> None:
    async for message in socket:
        if message.type is not aiohttp.WSMsgType.TEXT:
            continue
        frame = json.loads(message.data)
        payload = frame.get("payload") or {}
        if frame.get("event") == "chat" and payload.get("state") in ("delta", "final"):
            arrivals[(payload["runId"], payload["seq"])] = time.perf_counter()


async def direct_frames(client: GatewayClient, arrivals: dict[tuple[str, int], float]) -> None:
    async for item in client.subscribe(maxsize=1_000_000):
        if isinstance(item, GatewayEvent) and item.event == "chat" and item.payload.get("state") in ("delta", "final"):
            arrivals[(item.payload["runId"], item.payload["seq"])] = time.perf_counter()


async def run(threads: int, chunks: int, latency_runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="claw-relay-bench-") as directory:
        home = Path(directory)
        # A reply long enough to split into exactly `chunks` deltas.
        reply = "streamed words " * chunks
        async with FakeGateway(reply=lambda _: reply, chunks=chunks, chunk_delay_s=0.002) as gateway:
            process, port = await start_connector(home, gateway.url)
            direct = GatewayClient(gateway.url, FAKE_TOKEN, None, client_version="bench")
            direct_arrivals: dict[tuple[str, int], float] = {}
            relayed_arrivals: dict[tuple[str, int], float] = {}
            direct_task = asyncio.create_task(direct_frames(direct, direct_arrivals))
            await direct.start()
            try:
                async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session:
                    for index in range(threads):
                        await session.post(f"http://127.0.0.1:{port}/api/threads", json={"id": f"t{index}"})
                    socket = await session.ws_connect(f"http://127.0.0.1:{port}/ws", max_msg_size=0)
                    await socket.receive()
                    await socket.send_str(
                        json.dumps(
                            {"type": "req", "id": "c", "method": "connect", "params": {"auth": {"token": TOKEN}}}
                        )
                    )
                    reader = asyncio.create_task(browser_frames(socket, relayed_arrivals))
                    await until(lambda: gateway.connections >= 2)

                    async def send(thread: int, key: str) -> None:
                        frame = {
                            "type": "req",
                            "id": key,
                            "method": "chat.send",
                            "params": {
                                "sessionKey": f"agent:main:default:chat:t{thread}",
                                "message": "go",
                                "idempotencyKey": key,
                            },
                        }
                        await socket.send_str(json.dumps(frame))

                    # 1. latency: one stream at a time
                    final_seq = chunks + 4  # three status events, the deltas, then the final
                    for n in range(latency_runs):
                        await send(0, f"lat-{n}")
                        await until(lambda n=n: (f"lat-{n}", final_seq) in relayed_arrivals)
                    deltas = [
                        (relayed_arrivals[key] - direct_arrivals[key]) * 1000
                        for key in relayed_arrivals
                        if key in direct_arrivals and key[1] != final_seq
                    ]
                    finals = [
                        (relayed_arrivals[(f"lat-{n}", final_seq)] - direct_arrivals[(f"lat-{n}", final_seq)]) * 1000
                        for n in range(latency_runs)
                    ]
                    groups = {
                        "every chat event": deltas + finals,
                        "deltas": deltas,
                        "finals (stored, then shown)": finals,
                    }
                    for label, added in groups.items():
                        print(
                            f"added latency, {label} (connector vs direct, n={len(added)}): "
                            f"p50 {percentile(added, 0.5):.3f} ms, p99 {percentile(added, 0.99):.3f} ms, "
                            f"mean {statistics.fmean(added):.3f} ms"
                        )

                    # 2. throughput: many threads streaming at once
                    relayed_arrivals.clear()
                    direct_arrivals.clear()
                    expected = threads * (chunks + 1)
                    started = time.perf_counter()
                    await asyncio.gather(*(send(t, f"load-{t}") for t in range(threads)))
                    await until(lambda: len(relayed_arrivals) >= expected)
                    elapsed = max(relayed_arrivals.values()) - started
                    direct_elapsed = max(direct_arrivals.values()) - started
                    print(
                        f"{threads} concurrent streams: {len(relayed_arrivals):,} of {expected:,} chat events "
                        f"reached the browser in {elapsed:.2f} s "
                        f"({len(relayed_arrivals) / elapsed:,.0f} events/s through the connector; "
                        f"the direct client got them in {direct_elapsed:.2f} s, "
                        f"{len(direct_arrivals) / direct_elapsed:,.0f} events/s)"
                    )
                    reader.cancel()
                    await socket.close()
            finally:
                await direct.close()
                direct_task.cancel()
                process.send_signal(signal.SIGTERM)
                await asyncio.wait_for(process.wait(), 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=50)
    parser.add_argument("--chunks", type=int, default=40)
    parser.add_argument("--latency-runs", type=int, default=30)
    args = parser.parse_args()
    asyncio.run(run(args.threads, args.chunks, args.latency_runs))


if __name__ == "__main__":
    main()
