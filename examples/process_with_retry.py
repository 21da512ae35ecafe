"""The reliability page's ``process_with_retry`` example, run against a pulsing daemon.

Only the imports changed: ``pulsing.exceptions`` -> ``pulsing_daemon.exceptions``, and
the actor ref comes from ``pulsing_cli.client.connect``. Run it with the daemon on the
example config::

    pulsing daemon --config pulsing.toml.example &
    python examples/process_with_retry.py
"""

import asyncio
import sys

from pulsing_cli.client import connect
from pulsing_daemon.exceptions import (
    PulsingBusinessError,
    PulsingRuntimeError,
    PulsingSystemError,
    PulsingTimeoutError,
)


async def process_with_retry(actor, data, max_retries=3):
    for attempt in range(max_retries):
        try:
            return await actor.process(data)
        except PulsingBusinessError:
            # Don't retry business errors
            raise
        except PulsingSystemError as e:
            if not e.recoverable:
                raise
            # Wait for actor restart, then retry
            await asyncio.sleep(2**attempt)
        except PulsingTimeoutError:
            # Retry timeout errors
            if attempt < max_retries - 1:
                await asyncio.sleep(2**attempt)
                continue
            raise
        except PulsingRuntimeError:
            # Framework error - may need failover
            if attempt < max_retries - 1:
                await asyncio.sleep(2**attempt)
                continue
            raise


async def main() -> None:
    endpoint = sys.argv[1] if len(sys.argv) > 1 else None
    async with connect(endpoint) as client:
        flaky = client.actor("flaky")  # fails recoverably on every 3rd call
        for item in range(4):
            print(await process_with_retry(flaky, {"item": item}))


if __name__ == "__main__":
    asyncio.run(main())
