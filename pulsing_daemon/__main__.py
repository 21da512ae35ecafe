"""``python -m pulsing_daemon --config FILE`` (the same as ``pulsing daemon``)."""

from __future__ import annotations

import argparse
import sys

from pulsing_daemon.server import main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m pulsing_daemon")
    parser.add_argument("--config", "-c", default="pulsing.toml")
    parser.add_argument("--listen", default=None)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--json", action="store_true", help="log JSON lines")
    ns = parser.parse_args()
    sys.exit(main(ns.config, listen=ns.listen, log_level=ns.log_level, json_logs=ns.json))
