"""The fixture itself: a daemon starts, answers, and stops cleanly on SIGTERM."""

from __future__ import annotations


def test_daemon_answers_and_stops_cleanly(daemon_factory) -> None:
    d = daemon_factory(
        """
        [actors.rec]
        class = "e2e_actors:Recorder"
        """
    )
    result = d.cli("ask", "rec", "mark", "tag=hello")
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == "hello"
    assert d.stop() == 0
