"""Baseline servers, run in their own process.

``--mode aiohttp``: a bare aiohttp app doing the same JSON round trip as a pulsing ask
(``POST /echo`` with ``{"op", "args"}`` returns ``{"result": args}``) and the same NDJSON
stream as ``GET /v1/streams/{id}`` (``GET /stream?n=N``: ``{"seq": i, "data": {"i": i}}``
lines, produced one chunk at a time and written in batches of 512 lines, like the
daemon's journal commits).

``--loop uvloop`` runs either on uvloop instead of asyncio's own loop (the loop the
daemon runs on where uvloop is installed; the bare row stays on asyncio's, the issue's
baseline, and a second bare row on uvloop is ``info``).

``--mode canned``: a raw asyncio protocol that answers every request with a fixed
response and does no other work, to measure the load generator's own ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import json

BATCH = 512


async def _produce(n: int):  # type: ignore[no-untyped-def]
    for i in range(n):
        yield {"i": i}


def run_aiohttp(host: str, port: int) -> None:
    from aiohttp import web

    async def echo(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"result": body["args"]})

    async def stream(request: web.Request) -> web.StreamResponse:
        n = int(request.query.get("n", "1000"))
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        dumps = json.dumps
        lines: list[str] = []
        seq = 0
        async for chunk in _produce(n):
            lines.append(f'{{"seq":{seq},"data":{dumps(chunk, separators=(",", ":"))}}}\n')
            seq += 1
            if len(lines) >= BATCH:
                await response.write("".join(lines).encode())
                lines = []
        if lines:
            await response.write("".join(lines).encode())
        await response.write(b'{"end":true}\n')
        await response.write_eof()
        return response

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/echo", echo)
    app.router.add_get("/stream", stream)
    app.router.add_get("/v1/health", health)
    web.run_app(app, host=host, port=port, access_log=None, print=None, handle_signals=True)


class _Canned(asyncio.Protocol):
    RESPONSE = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 18\r\n\r\n"
        b'{"result":{"x":1}}'
    )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        out = []
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end].lower()
            i = head.find(b"content-length:")
            length = 0
            if i >= 0:
                j = head.find(b"\r\n", i)
                length = int(head[i + 15 : j if j >= 0 else len(head)])
            total = end + 4 + length
            if len(buf) < total:
                break
            buf = buf[total:]
            out.append(self.RESPONSE)
        self.buf = buf
        if out:
            self.transport.write(b"".join(out))  # type: ignore[attr-defined]


def run_canned(host: str, port: int) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Canned, host, port, reuse_address=True, backlog=2048)
        async with server:
            await server.serve_forever()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass


def use_loop(name: str) -> str:
    """Make new event loops ``name``'s (``uvloop``, ``asyncio``, or ``auto``: uvloop when
    installed, as the daemon does); returns the loop chosen."""
    if name == "asyncio":
        return name
    try:
        import uvloop
    except ImportError:
        if name == "uvloop":
            raise
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bare_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=("aiohttp", "canned"), default="aiohttp")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    ns = parser.parse_args()
    use_loop(ns.loop)
    if ns.mode == "aiohttp":
        run_aiohttp(ns.host, ns.port)
    else:
        run_canned(ns.host, ns.port)  # SIGTERM's default action ends it; nothing to clean


if __name__ == "__main__":
    main()
