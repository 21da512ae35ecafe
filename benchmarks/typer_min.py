"""The ``cli_startup`` baseline: a minimal Typer CLI doing what ``pulsing ask`` does, one
HTTP call, with Typer's defaults (``--install-completion`` / ``--show-completion`` on).

``typer_min ask ACTOR OP`` posts ``{"op": OP, "args": {}}`` to
``$PULSING_ENDPOINT/v1/actors/ACTOR/ask`` with ``http.client`` and prints the result.
The benchmark runs it from a console script like the one pip writes for ``pulsing``
(``main``), and a second time with Typer's parameter conversion replaced by the plain
one ``pulsing`` installs (``main_plain``): Typer 0.29 converts values through
pydantic, older Typers do not, and that variant is the stricter baseline.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
from urllib.parse import urlsplit

import typer

app = typer.Typer()


@app.callback()
def root() -> None:
    """A minimal client."""


@app.command()
def ask(actor: str, op: str, timeout: float = 30.0) -> None:
    """One ask: print its result."""
    url = urlsplit(os.environ.get("PULSING_ENDPOINT", "http://127.0.0.1:7480"))
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=timeout)
    conn.request(
        "POST",
        f"/v1/actors/{actor}/ask",
        body=json.dumps({"op": op, "args": {}}),
        headers={"Content-Type": "application/json"},
    )
    response = conn.getresponse()
    body = json.loads(response.read())
    if response.status != 200:
        print(body, file=sys.stderr)
        raise typer.Exit(1)
    print(json.dumps(body["result"]))


def main() -> None:
    """The console-script entry point."""
    app()


def main_plain() -> None:
    """The same CLI with ``pulsing``'s plain-type parameter conversion (no pydantic)."""
    from pulsing_cli.fastparams import install

    install()
    app()


if __name__ == "__main__":
    main()
