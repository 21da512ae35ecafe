#!/usr/bin/env python
"""Fuzz the daemon's HTTP API with schemathesis, driven by the OpenAPI document it serves.

::

    python benchmarks/fuzz_api.py [--max-examples 100] [--workers 2] [--seed S]
                                  [--timeout 600] [--json PATH] [--keep]

Starts a daemon on a free loopback port hosting only ``pulsing_daemon.demo:Echo``
actors (whose ops accept any JSON, so no generated argument can legitimately end in
a system error), then runs ``st run http://127.0.0.1:PORT/v1/openapi.json --checks
all`` with this file as its hooks module (``SCHEMATHESIS_HOOKS``), which adds:

- the check ``error_envelope``: every 4xx/5xx body is the JSON envelope
  ``{"error": {"category", "type", "message", "recoverable"}}`` (category one of the five);
- ``before_call``: half of the generated actor names become a real actor (``echo``;
  ``victim`` for stop/restart/start, so ``echo`` keeps serving), so the ask and stream
  handlers see real actors, not only 404s; and a positive deadline below one second
  (``Pulsing-Timeout`` header or a ``timeout`` in the body) becomes 5 s -- a tiny
  deadline legitimately ends in 504 (category ``timeout``), which is not a server
  error to hunt for.

The daemon runs with a token and schemathesis sends it (``-H Authorization``), so the
auth checks (``ignored_auth``) test that every route but /v1/health enforces it.

Gating checks: ``not_a_server_error`` and ``error_envelope`` (exit 1 when either
failed, or when the daemon logged an internal error or stopped answering). The other
schemathesis checks (``--checks all``) are reported, not gating: e.g.
``positive_data_acceptance`` flags a 404 for a schema-valid but unknown actor name.
schemathesis is not a project dependency: ``pip install schemathesis``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

CATEGORIES = {"business", "system", "unsupported", "runtime", "timeout"}
GATING = {"not_a_server_error", "error_envelope"}
CONTROL_SUFFIXES = ("/restart", "/stop", "/start")


# ---------------------------------------------------------------------------- hooks
def envelope_problem(status: int, body: bytes) -> str | None:
    """Why an error response is not a well-formed envelope (None when it is)."""
    if status < 400:
        return None
    try:
        envelope = json.loads(body)
    except ValueError:
        return f"HTTP {status} body is not JSON: {body[:200]!r}"
    error = envelope.get("error") if isinstance(envelope, dict) else None
    if not isinstance(error, dict):
        return f'HTTP {status} body has no "error" object: {body[:200]!r}'
    if error.get("category") not in CATEGORIES:
        return f"HTTP {status} error category {error.get('category')!r} is not one of the five"
    if not isinstance(error.get("type"), str) or not error["type"]:
        return f"HTTP {status} error has no type"
    if not isinstance(error.get("message"), str):
        return f"HTTP {status} error has no message"
    if not isinstance(error.get("recoverable"), bool):
        return f"HTTP {status} error has no boolean recoverable"
    if b"Traceback" in body:
        return f"HTTP {status} error leaks a traceback"
    return None


def _clamp(value: Any) -> Any:
    """A positive deadline under 1 s becomes 5 s; anything else is left to the fuzzer."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return value
    if 0 < number < 1.0:
        return "5" if isinstance(value, str) else 5
    return value


def _register_hooks() -> None:
    import random

    import schemathesis

    @schemathesis.check
    def error_envelope(ctx: Any, response: Any, case: Any) -> bool | None:
        """Every error (>= 400) is a JSON error envelope."""
        if case.method.upper() == "HEAD":
            return None
        problem = envelope_problem(response.status_code, response.content or b"")
        if problem is not None:
            raise AssertionError(problem)
        return None

    rng = random.Random(os.environ.get("PULSING_FUZZ_SEED", "0"))

    @schemathesis.hook
    def before_call(ctx: Any, case: Any, kwargs: dict[str, Any]) -> None:
        params = case.path_parameters
        if params and isinstance(params.get("name"), str) and rng.random() < 0.5:
            control = case.operation.path.endswith(CONTROL_SUFFIXES)
            params["name"] = "victim" if control else "echo"
        headers = case.headers
        if headers:
            for name in list(headers):
                if name.lower() == "pulsing-timeout":
                    headers[name] = _clamp(headers[name])
        if isinstance(case.body, dict) and "timeout" in case.body:
            case.body["timeout"] = _clamp(case.body["timeout"])


if __name__ != "__main__":
    _register_hooks()


# ---------------------------------------------------------------------------- runner
def _main(argv: list[str] | None = None) -> int:
    import argparse
    import shutil
    import signal
    import socket
    import subprocess
    import tempfile
    import time
    import urllib.request
    from collections import Counter
    from pathlib import Path

    here = Path(__file__).resolve()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-examples", type=int, default=100)
    parser.add_argument("--workers", default="2")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="hard bound on the schemathesis run (seconds)"
    )
    parser.add_argument("--phases", default=None, help="e.g. examples,coverage,fuzzing,stateful")
    parser.add_argument("--json", dest="json_path", default=None, help="write the summary here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)

    st = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    if st is None:
        print("fuzz_api: schemathesis is not installed (pip install schemathesis)", file=sys.stderr)
        return 2
    version = subprocess.run([st, "--version"], capture_output=True, text=True).stdout.strip()

    work = Path(tempfile.mkdtemp(prefix="pulsing-fuzz-"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = work / "pulsing.toml"
    token = os.urandom(12).hex()
    config.write_text(
        "[daemon]\n"
        f'listen = "127.0.0.1:{port}"\n'
        f'state_dir = "{work / "state"}"\n'
        f'token = "{token}"\n'
        "\n[actors.echo]\n"
        'class = "pulsing_daemon.demo:Echo"\n'
        "\n[actors.victim]\n"
        'class = "pulsing_daemon.demo:Echo"\n'
    )
    log_path = work / "daemon.log"
    env = {k: v for k, v in os.environ.items() if k != "PULSING_TOKEN"}
    with open(log_path, "ab") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "pulsing_daemon", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{base}/v1/health", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    deadline = time.monotonic() + 15
    while not healthy():
        if daemon.poll() is not None or time.monotonic() > deadline:
            daemon.kill()
            print(f"fuzz_api: daemon did not start; see {log_path}", file=sys.stderr)
            return 2
        time.sleep(0.05)

    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big") % 10**8
    report_path = work / "events.ndjson"
    command = [
        st,
        "run",
        f"{base}/v1/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(args.max_examples),
        "--workers",
        str(args.workers),
        "--seed",
        str(seed),
        "--request-timeout",
        "15",
        "--header",
        f"Authorization: Bearer {token}",
        "--suppress-health-check",
        "all",
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(report_path),
    ]
    if args.phases:
        command += ["--phases", args.phases]
    run_env = {
        **env,
        "SCHEMATHESIS_HOOKS": str(here),
        "PULSING_FUZZ_SEED": str(seed),
        "NO_COLOR": "1",
    }
    print("fuzz_api:", " ".join(command), flush=True)
    started = time.monotonic()
    timed_out = False
    try:
        proc = subprocess.run(
            command, env=run_env, capture_output=True, text=True, timeout=args.timeout
        )
        output, st_code = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        timed_out = True
        output = (
            (exc.stdout or b"").decode(errors="replace")
            if isinstance(exc.stdout, bytes)
            else (exc.stdout or "")
        )
        st_code = None
    elapsed = time.monotonic() - started
    still_healthy = healthy()
    daemon.send_signal(signal.SIGTERM)
    try:
        exit_code: int | None = daemon.wait(15)
    except subprocess.TimeoutExpired:
        daemon.kill()
        exit_code = None
    log_text = log_path.read_text(errors="replace")
    internal = [line for line in log_text.splitlines() if "internal_error" in line]

    failures, cases, operations, errors = _parse_events(report_path)
    statuses = _statuses(report_path)
    by_check: Counter[str] = Counter(f["check"] for f in failures)
    gating = [f for f in failures if f["check"] in GATING]
    summary = {
        "schemathesis": version,
        "seed": seed,
        "max_examples": args.max_examples,
        "elapsed": round(elapsed, 1),
        "timed_out": timed_out,
        "st_exit_code": st_code,
        "operations": operations,
        "test_cases": cases,
        "recorded_responses_by_status": statuses,
        "failures_by_check": dict(by_check),
        "gating_failures": gating[:50],
        "other_failures": [f for f in failures if f["check"] not in GATING][:50],
        "errors": errors[:50],
        "daemon_healthy_after": still_healthy,
        "daemon_exit_code": exit_code,
        "daemon_internal_errors": len(internal),
        "internal_error_examples": internal[:10],
        "ok": not gating
        and not internal
        and not errors
        and still_healthy
        and exit_code == 0
        and not timed_out,
    }
    tail = "\n".join(output.strip().splitlines()[-40:])
    print(tail)
    print()
    print(
        f"fuzz_api: {version}, seed {seed}, {elapsed:.0f}s; operations {operations}, "
        f"test cases {cases}"
    )
    print(f"  recorded responses by status: {statuses}")
    print(f"  failures by check: {dict(by_check) or 'none'}")
    for failure in [f for f in failures if f["check"] not in GATING][:12]:
        print(
            f"    (not gating) {failure['check']} {failure['operation']}: "
            f"{failure['message'][:160]!r}"
        )
    print(
        f"  gating ({', '.join(sorted(GATING))}): {len(gating)}; schemathesis errors: {len(errors)}"
    )
    for error in errors[:5]:
        print(f"    ! {error}")
    for failure in gating[:10]:
        print(f"    - {failure['check']} {failure['operation']}: {failure['message'][:300]}")
    print(
        f"  daemon: healthy after {still_healthy}, internal errors {len(internal)}, "
        f"SIGTERM exit {exit_code}"
    )
    print(f"  RESULT: {'OK' if summary['ok'] else 'FAILED'}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(summary, indent=2) + "\n")
    if args.keep or not summary["ok"]:
        print(f"  workdir: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if summary["ok"] else 1


def _parse_events(path: Any) -> tuple[list[dict[str, Any]], int, int, list[str]]:
    """(failures, test cases, operations, errors) from schemathesis's NDJSON event report."""
    failures: list[dict[str, Any]] = []
    errors: list[str] = []
    seen: set[tuple[str, str, str]] = set()
    cases = 0
    operations: set[str] = set()
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return failures, 0, 0, errors
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        for name, payload in event.items():
            if name == "NonFatalError" and isinstance(payload, dict):
                value = payload.get("value") or {}
                errors.append(
                    f"{payload.get('label')}: {value.get('type')}: "
                    f"{str(value.get('message'))[:300]}"
                )
            if name != "ScenarioFinished" or not isinstance(payload, dict):
                continue
            recorder = payload.get("recorder") or {}
            label = recorder.get("label") or ""
            operations.add(label)
            cases += len(recorder.get("cases") or {})
            for checks in (recorder.get("checks") or {}).values():
                for check in checks:
                    if str(check.get("status", "")).lower() != "failure":
                        continue
                    failure = check.get("failure_info") or {}
                    info = failure.get("failure") or {}
                    message = str(info.get("title") or "") + ": " + str(info.get("message") or "")
                    key = (check.get("name", ""), label, message[:200])
                    if key in seen:
                        continue
                    seen.add(key)
                    failures.append(
                        {
                            "check": check.get("name", ""),
                            "operation": label,
                            "message": message.strip(": "),
                            "curl": failure.get("code_sample", ""),
                        }
                    )
    return failures, cases, len(operations), errors


def _statuses(path: Any) -> dict[str, int]:
    """HTTP statuses of the interactions schemathesis recorded (a sample of all calls)."""
    from collections import Counter

    counts: Counter[str] = Counter()
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    for line in lines:
        try:
            payload = json.loads(line).get("ScenarioFinished")
        except (ValueError, AttributeError):
            continue
        if not isinstance(payload, dict):
            continue
        for interaction in ((payload.get("recorder") or {}).get("interactions") or {}).values():
            status = (interaction.get("response") or {}).get("status_code")
            counts[str(status)] += 1
    return dict(sorted(counts.items()))


if __name__ == "__main__":
    sys.exit(_main())
