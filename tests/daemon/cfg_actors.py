"""Small actor classes for tests/daemon/test_config.py (imported through ``pythonpath``)."""

from pulsing_daemon.remote import remote


@remote(max_restarts=7, min_backoff=0.5, timeout=3.0, restart_policy="never")
class Decorated:
    def __init__(self, size: int = 1) -> None:
        self.size = size


@remote(max_backoff=-1.0, bogus=1, args={"size": 2})
class BadlyDecorated:
    pass


@remote
class BareDecorated:
    pass


class Plain:
    def __init__(self, name: str, *, level: int = 0) -> None:
        self.name = name
        self.level = level


NOT_A_CLASS = 42
