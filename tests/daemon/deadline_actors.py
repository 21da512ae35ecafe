"""Async ops that meet their deadline in different ways (tests/daemon/test_deadline.py)."""

from __future__ import annotations

import asyncio

from pulsing_daemon.exceptions import PulsingBusinessError


class Stubborn:
    async def swallow(self, delay: float) -> str:
        """Catches the cancel at its deadline and answers anyway."""
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            return "kept going"
        return "slept"

    async def convert(self, delay: float) -> str:
        """Turns the cancel at its deadline into an error of its own."""
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            raise PulsingBusinessError("cleaned up and gave up") from None
        return "slept"

    async def timer(self, delay: float) -> str:
        """Its own asyncio.timeout inside the op's deadline: its TimeoutError is its own."""
        try:
            async with asyncio.timeout(delay):
                await asyncio.sleep(3600.0)
        except TimeoutError:
            return "own timeout"
        return "slept"

    async def sleep(self, delay: float) -> str:
        await asyncio.sleep(delay)
        return "slept"

    async def echo(self, x: object) -> object:
        return x
