"""Security defaults (CONTRACT §8): bearer token on every route but /v1/health, never
echoed; a non-loopback listen needs a token; Unix sockets are created 0600."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

from e2e_helpers import pulsing_command, raw_request

TOKEN = "s3cret-token"

ACTORS = """
[actors.rec]
class = "e2e_actors:Recorder"
"""


def test_token_required_everywhere_but_health(daemon_factory: Any) -> None:
    d = daemon_factory(ACTORS, token=TOKEN)

    status, _, raw = raw_request(d, "GET", "/v1/health")
    assert status == 200, raw

    ask_body = b'{"op": "mark", "args": {"tag": "x"}}'
    attempts = [
        ({}, "missing"),
        ({"Authorization": "Bearer wrong-token"}, "wrong"),
        ({"Authorization": TOKEN}, "no Bearer"),
        ({"Authorization": f"Bearer {TOKEN}x"}, "longer"),
        ({"Authorization": f"Bearer {TOKEN[:-1]}"}, "prefix"),
        ({"Authorization": f"Basic {TOKEN}"}, "basic"),
    ]
    routes = [
        ("GET", "/v1/status", None),
        ("GET", "/v1/actors/rec", None),
        ("POST", "/v1/actors/rec/ask", ask_body),
        ("POST", "/v1/actors/rec/stop", b""),
        ("GET", "/v1/openapi.json", None),
        ("GET", "/metrics", None),
        ("GET", "/v1/no/such/route", None),
    ]
    for headers, label in attempts:
        for method, path, body in routes:
            status, response_headers, raw = raw_request(d, method, path, body, headers)
            assert status == 401, (label, method, path, status, raw)
            error = json.loads(raw)["error"]
            assert error["category"] == "runtime", error
            assert {"type", "message", "recoverable"} <= set(error)
            assert TOKEN.encode() not in raw, (label, path, raw)
            assert TOKEN not in json.dumps(response_headers)
    # nothing got through: the actor was neither asked nor stopped
    entry = d.actor("rec")
    assert entry["state"] == "running"
    assert entry["counts"]["ok"] == 0

    status, _, body = d.http("POST", "/v1/actors/rec/ask", {"op": "mark", "args": {"tag": "in"}})
    assert (status, body) == (200, {"result": "in"})
    status, _, body = d.http("GET", "/v1/status")
    assert status == 200
    assert TOKEN not in json.dumps(body)
    assert TOKEN not in d.log()


def test_cli_without_or_with_wrong_token_exit_6(daemon_factory: Any) -> None:
    d = daemon_factory(ACTORS, token=TOKEN)
    none = d.cli("ask", "rec", "mark", "--json", env={"PULSING_TOKEN": ""})
    assert none.code == 6, (none.stdout, none.stderr)
    error = json.loads(none.stdout)["error"]
    assert error["category"] == "runtime"
    assert TOKEN not in none.stdout + none.stderr

    wrong = d.cli("ask", "rec", "mark", "--token", "not-it", env={"PULSING_TOKEN": ""})
    assert wrong.code == 6, (wrong.stdout, wrong.stderr)
    assert "runtime" in wrong.stderr
    assert TOKEN not in wrong.stdout + wrong.stderr
    assert "Traceback" not in wrong.stdout + wrong.stderr

    status = d.cli("status", env={"PULSING_TOKEN": ""})
    assert status.code == 6

    right = d.cli("ask", "rec", "mark", "tag=ok", "--token", TOKEN, env={"PULSING_TOKEN": ""})
    assert right.code == 0, (right.stdout, right.stderr)
    assert right.stdout.strip() == "ok"
    via_env = d.cli("ask", "rec", "mark", "tag=env")  # PULSING_TOKEN from the harness
    assert via_env.code == 0, (via_env.stdout, via_env.stderr)
    assert TOKEN not in d.log()


def test_non_loopback_listen_without_token_refuses_to_start(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "open.toml"
    config.write_text(
        "[daemon]\n"
        f'listen = "0.0.0.0:{port}"\n'
        f'state_dir = "{tmp_path / "state"}"\n'
        f'pythonpath = ["{Path(__file__).resolve().parent}"]\n'
        "\n" + ACTORS
    )
    proc = subprocess.Popen(
        [*pulsing_command(), "daemon", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    try:
        out, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=5)
        raise AssertionError("the daemon started on 0.0.0.0 without a token") from None
    assert proc.returncode != 0
    assert "token" in (out + err).lower(), (out, err)
    assert "Traceback" not in out + err


def test_listen_override_to_any_address_without_token_refuses(daemon_factory: Any) -> None:
    d = daemon_factory(ACTORS, start=False)  # loopback config, no token: valid as it is
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [
            *pulsing_command(),
            "daemon",
            "--config",
            str(d.config_path),
            "--listen",
            f"0.0.0.0:{port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    deadline = time.monotonic() + 15
    serving = False
    while proc.poll() is None and time.monotonic() < deadline and not serving:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                serving = True
        except OSError:
            time.sleep(0.05)
    if proc.poll() is None:
        proc.terminate()
    out, err = proc.communicate(timeout=10)
    assert not serving, f"started on 0.0.0.0:{port} without a token:\n{err}"
    assert proc.returncode != 0
    assert "token" in (out + err).lower(), (out, err)


def test_unix_socket_is_0600_and_cli_works(daemon_factory: Any) -> None:
    # The harness health check speaks TCP, so wait for the socket here.
    d = daemon_factory(ACTORS, unix=True, start=False)
    d.start(wait=False)
    sock_path = Path(d.endpoint.removeprefix("unix:"))
    deadline = time.monotonic() + 15
    while True:
        assert d.proc is not None and d.proc.poll() is None, d.log()
        if sock_path.exists():
            result = d.cli("--endpoint", d.endpoint, "status", "--json")
            if result.code == 0:
                break
        assert time.monotonic() < deadline, f"daemon never answered on {sock_path}:\n{d.log()}"
        time.sleep(0.05)

    mode = stat.S_IMODE(os.stat(sock_path).st_mode)
    assert stat.S_ISSOCK(os.stat(sock_path).st_mode)
    assert mode == 0o600, oct(mode)

    result = d.cli("ask", "rec", "mark", "tag=unix", "--endpoint", d.endpoint, "--json")
    assert result.code == 0, (result.stdout, result.stderr)
    assert result.json() == {"result": "unix"}
    status = d.cli("status", "rec", "--endpoint", d.endpoint, "--json")
    assert status.code == 0
    assert status.json()["actors"][0]["counts"]["ok"] == 1

    assert d.stop() == 0
    assert not sock_path.exists()  # cleaned up on exit


def test_token_file(daemon_factory: Any, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"  {TOKEN}\n")
    token_file.chmod(0o600)
    d = daemon_factory(ACTORS, f'token_file = "{token_file}"\n')
    status, _, raw = raw_request(d, "GET", "/v1/status")
    assert status == 401, raw
    assert TOKEN.encode() not in raw
    status, _, raw = raw_request(
        d, "GET", "/v1/status", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 200, raw
    result = d.cli("ask", "rec", "mark", "tag=tf", env={"PULSING_TOKEN": TOKEN})
    assert result.code == 0, (result.stdout, result.stderr)
    assert TOKEN not in d.log()
