"""Performance benchmarks of pulsing, each measured against a baseline in the same run.

Run ``python -m benchmarks [--quick] [--only NAME ...] [--json PATH] [--profile]``
from the repository root. Every benchmark starts what it needs on 127.0.0.1 (free
ports, temporary config and state directories), alternates rounds of the baseline
and of pulsing, and reports medians; see ``benchmarks/__main__.py``.

Layout:

- ``harness``     processes (daemon, bare server), ports, /proc readings, statistics
- ``loadgen``     the load generator (its own process): N keep-alive connections on raw
                  asyncio streams with pre-built HTTP/1.1 requests
- ``bare_server`` the baselines: an aiohttp JSON echo / NDJSON server, and a canned
                  raw-asyncio server that measures the load generator's ceiling
- ``actors``      the actor classes the benchmark configs host
- ``suites``      the benchmarks themselves
- ``profiling``   py-spy sampling of the daemon under load (``--profile``)
"""
