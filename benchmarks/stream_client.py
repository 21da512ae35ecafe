"""Baseline stream consumer: ``python -m benchmarks.stream_client URL > /dev/null``.

Reads an NDJSON stream with the same transport the CLI uses
(``pulsing_cli.transport.HTTPTransport.stream`` + ``iter_lines``) and writes each line
to stdout, so its whole-process wall time compares with ``pulsing stream --json``.
"""

from __future__ import annotations

import asyncio
import sys
from urllib.parse import urlsplit

from pulsing_cli.transport import HTTPTransport


async def main(url: str) -> int:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = 0
    async with HTTPTransport(f"http://{parts.netloc}") as transport:
        response = await transport.stream("GET", path, headers={"Accept": "application/x-ndjson"})
        if response.status != 200:
            sys.stderr.write(f"HTTP {response.status}\n")
            return 1
        write = sys.stdout.buffer.write
        async for line in response.iter_lines():
            if line:
                write(line + b"\n")
                lines += 1
    sys.stdout.flush()
    return 0 if lines else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1])))
