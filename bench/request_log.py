"""Cost of the per-request log line: RequestLog around a trivial ASGI app, against the bare app.

Prints µs per request for: the bare app, RequestLog with its line filtered out by the level
(LOG_LEVEL=WARNING), the bare app plus the uvicorn access line RequestLog replaces, and
RequestLog writing text and JSON lines to /dev/null. In-process, no sockets: it isolates the
middleware from HTTP parsing and the network.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import time

from starlette.types import Message, Receive, Scope, Send

from services.logs import configure_logging
from services.settings import Settings
from web.request_log import RequestLog

SCOPE: Scope = {
    "type": "http",
    "method": "POST",
    "path": "/graphql",
    "headers": [(b"content-type", b"application/json"), (b"x-request-id", b"bench-1")],
}


async def bare(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


ACCESS = logging.getLogger("bench.uvicorn.access")
DEVNULL = open(os.devnull, "w")


async def with_access_line(scope: Scope, receive: Receive, send: Send) -> None:
    """What uvicorn's access logger wrote per request before RequestLog took its place."""
    await bare(scope, receive, send)
    ACCESS.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "POST", "/graphql", "1.1", 200)


async def _receive() -> Message:
    return {"type": "http.request", "body": b""}


async def _send(message: Message) -> None:
    return None


async def per_request_us(app: object, requests: int, rounds: int = 9) -> float:
    """The best round's µs per request (the minimum shrugs off other processes' bursts)."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(requests // rounds):
            await app(dict(SCOPE), _receive, _send)  # type: ignore[operator]
        best = min(best, (time.perf_counter() - started) / (requests // rounds) * 1e6)
    return best


def configure(log_format: str, level: str) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    settings = dataclasses.replace(Settings.from_env({}), log_format=log_format, log_level=level)
    configure_logging(settings)
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(DEVNULL)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
    logged = RequestLog(bare)
    configure("text", "WARNING")
    baseline = await per_request_us(bare, args.requests)
    rows = [("bare app", baseline)]
    rows.append(
        ("RequestLog, line filtered (WARNING)", await per_request_us(logged, args.requests))
    )
    configure("text", "INFO")
    rows.append(
        (
            "bare app + uvicorn-style access line",
            await per_request_us(with_access_line, args.requests),
        )
    )
    rows.append(("RequestLog, text line", await per_request_us(logged, args.requests)))
    configure("json", "INFO")
    rows.append(("RequestLog, JSON line", await per_request_us(logged, args.requests)))
    print(f"{'variant':40} {'µs/request':>11} {'vs bare':>8} {'added µs':>9}")
    for name, micros in rows:
        print(f"{name:40} {micros:11.2f} {micros / baseline:7.1f}× {micros - baseline:9.2f}")


if __name__ == "__main__":
    asyncio.run(main())
