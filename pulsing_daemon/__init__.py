"""pulsing daemon: hosts actors declared in a TOML file and supervises them.

Importing this package is cheap (the CLI imports ``pulsing_daemon.exceptions``);
the aiohttp server lives in ``pulsing_daemon.http`` and is imported only by the daemon.
"""

from pulsing_daemon.remote import nonblocking, remote

__version__ = "0.1.0"
__all__ = ["__version__", "nonblocking", "remote"]
