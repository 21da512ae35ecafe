"""The exact bytes of every body the daemon sends, through the real handlers.

Pinned before the bodies moved to ``pulsing_daemon.wire``: result, replayed result,
error envelope (live and replayed), an unencodable result, stream records and the
terminal record in NDJSON and SSE. The app runs in-process (aiohttp's TestServer, on
the daemon's own runner: its error boundary is part of it) with a real Supervisor and
Journal.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from rooms import config_with, rooms

from pulsing_daemon.http import Runner, build_app

BOUND = 5.0


class DaemonTestServer(TestServer):
    """aiohttp's TestServer on the daemon's runner (``pulsing_daemon.http.Runner``)."""

    async def _make_runner(self, **kwargs: Any) -> Runner:
        return Runner(self.app, **kwargs)

# Non-ASCII, an astral character, a lone surrogate, escapes, a big int, a float.
VALUE = {"é": "ü😀\ud800", "n": 1.5, "big": 10**20, "l": [True, None], "s": 'a"b\\c\n'}
RESULT = (
    b'{"result":{"\\u00e9":"\\u00fc\\ud83d\\ude00\\ud800","n":1.5,"big":100000000000000000000,'
    b'"l":[true,null],"s":"a\\"b\\\\c\\n"}'
)
ACTOR = b'"actor":"s","state":"running","restarts":0,"max_restarts":5'
REFUSED = (
    b'{"error":{"category":"business","type":"PulsingBusinessError",'
    b'"message":"\\u00e9 is refused","recoverable":false,"code":"refused",'
    b'"details":{"token":"\\u00e9"},' + ACTOR
)
# A terminal record keeps its text as UTF-8 (it is stored in the journal as sent).
TERMINAL = (
    b'{"error":{"category":"business","type":"PulsingBusinessError",'
    b'"message":"\xc3\xa9\xf0\x9f\x98\x80","recoverable":false,"code":"refused",'
    b'"details":{"why":"\xc3\xa9\xf0\x9f\x98\x80"},' + ACTOR + b"}}"
)


def test_every_body_keeps_its_bytes(tmp_path: Path) -> None:
    config = config_with(tmp_path, {"s": "store_actors:Store"})

    async def main() -> None:
        async with rooms(config) as built:
            app = build_app(
                built.supervisor,
                built.streams,
                built.keys,
                token=None,
                max_body=1 << 20,
                max_readers=4,
            )
            async with TestClient(DaemonTestServer(app)) as client:
                await asyncio.wait_for(check(client), BOUND)

    async def ask(
        client: TestClient, body: dict[str, Any], key: str | None = None
    ) -> tuple[int, str | None, bytes]:
        headers = {"Idempotency-Key": key} if key else {}
        response = await client.post("/v1/actors/s/ask", data=json.dumps(body), headers=headers)
        return (
            response.status,
            response.headers.get("Idempotency-Replayed"),
            await response.read(),
        )

    async def check(client: TestClient) -> None:
        put = {"op": "put", "args": {"token": "t", "value": VALUE}}
        assert await ask(client, put) == (200, None, RESULT + b"}")
        assert await ask(client, put, "k") == (200, None, RESULT + b"}")
        assert await ask(client, put, "k") == (200, "true", RESULT + b',"replayed":true}')

        refuse = {"op": "refuse", "args": {"token": "é"}}
        assert await ask(client, refuse) == (422, None, REFUSED + b"}}")
        assert await ask(client, refuse, "k2") == (422, None, REFUSED + b"}}")
        assert await ask(client, refuse, "k2") == (422, None, REFUSED + b',"replayed":true}}')

        assert await ask(client, {"op": "nan"}) == (
            500,
            None,
            b'{"error":{"category":"system","type":"PulsingSystemError","message":'
            b'"the result of nan is not JSON-serializable: Out of range float values are not '
            b'JSON compliant","recoverable":false,' + ACTOR + b"}}",
        )

        started = await client.post(
            "/v1/actors/s/streams",
            data=json.dumps({"op": "count_then_refuse", "args": {"n": 2, "message": "é😀"}}),
        )
        stream = (await started.json())["stream"]
        ndjson = await client.get(
            f"/v1/streams/{stream}", headers={"Accept": "application/x-ndjson"}
        )
        assert await ndjson.read() == (
            b'{"seq":0,"data":0}\n{"seq":1,"data":1}\n' + TERMINAL + b"\n"
        )
        sse = await client.get(f"/v1/streams/{stream}")
        assert await sse.read() == (
            b'id: 0\ndata: {"seq":0,"data":0}\n\nid: 1\ndata: {"seq":1,"data":1}\n\n'
            b"data: " + TERMINAL + b"\n\n"
        )

    asyncio.run(main())


def test_the_openapi_document_names_every_api_route(tmp_path: Path) -> None:
    """Every route under /v1 and /metrics that the daemon serves has its entry (the
    status page's own files excepted), with the same methods."""
    from pulsing_daemon.openapi import document

    config = config_with(tmp_path, {"s": "store_actors:Store"})

    async def main() -> dict[str, set[str]]:
        async with rooms(config) as built:
            app = build_app(
                built.supervisor, built.streams, built.keys, token=None, max_body=1 << 20,
                max_readers=4,
            )  # fmt: skip
            served: dict[str, set[str]] = {}
            for route in app.router.routes():
                path = route.resource.canonical if route.resource is not None else ""
                if route.method == "HEAD" or not path.startswith(("/v1/", "/metrics")):
                    continue
                served.setdefault(path, set()).add(route.method.lower())
            return served

    served = asyncio.run(main())
    # aiohttp's canonical form of the control route keeps its regex alternatives.
    control = "/v1/actors/{name}/{action}"
    assert served.pop(control, None) == {"post"}
    for action in ("restart", "stop", "start"):
        served[f"/v1/actors/{{name}}/{action}"] = {"post"}
    documented = {path: set(entry) for path, entry in document("x")["paths"].items()}
    # server.py adds /v1/reload with the reloader (reload.add_routes); end to end in test_reload.
    assert documented.pop("/v1/reload") == {"post"}
    assert served == documented
