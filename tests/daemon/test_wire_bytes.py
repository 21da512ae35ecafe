"""The exact bytes of every body the daemon sends, through the real handlers.

Pinned before the bodies moved to ``pulsing_daemon.wire``: result, replayed result,
error envelope (live and replayed), an unencodable result, stream records and the
terminal record in NDJSON and SSE. The app runs in-process (aiohttp's TestServer)
with a real Supervisor and Journal.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from pulsing_daemon.config import parse_config
from pulsing_daemon.http import build_app
from pulsing_daemon.idempotency import IdempotencyStore
from pulsing_daemon.journal import Journal
from pulsing_daemon.streams import StreamManager
from pulsing_daemon.supervisor import Supervisor

HERE = Path(__file__).resolve().parent
BOUND = 5.0

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


@pytest.fixture(autouse=True)
def _restore_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))


def test_every_body_keeps_its_bytes(tmp_path: Path) -> None:
    text = (
        f"[daemon]\nstate_dir = {json.dumps(str(tmp_path / 'state'))}\n"
        f"pythonpath = [{json.dumps(str(HERE))}]\n"
        '\n[actors.s]\nclass = "store_actors:Store"\n'
    )
    config = parse_config(text, tmp_path / "pulsing.toml")
    config.daemon.state_dir.mkdir(parents=True)

    async def main() -> None:
        supervisor = Supervisor(config)
        journal = Journal(config.daemon.state_dir)
        streams = StreamManager(journal, supervisor, config.daemon)
        keys = IdempotencyStore(journal, 3600.0)
        supervisor.start()
        await asyncio.wait_for(supervisor.cell("s").settle(2.0), BOUND)
        app = build_app(supervisor, streams, keys, token=None, max_body=1 << 20, max_readers=4)
        try:
            async with TestClient(TestServer(app)) as client:
                await asyncio.wait_for(check(client), BOUND)
        finally:
            await asyncio.wait_for(supervisor.shutdown(1.0), BOUND)
            journal.close()

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
