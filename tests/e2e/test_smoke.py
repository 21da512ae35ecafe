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


def test_metrics_count_asks_by_outcome_and_time_them(daemon_factory) -> None:
    d = daemon_factory(
        """
        [actors.echo]
        class = "pulsing_daemon.demo:Echo"
        """
    )
    for _ in range(3):
        assert d.ask("echo", "ping")[0] == 200
    assert d.ask("echo", "nosuch")[0] == 404
    assert d.http("POST", "/v1/actors/echo/restart")[0] == 200
    status, headers, text = d.http("GET", "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    assert samples['pulsing_asks_total{actor="echo",op="ping",outcome="ok"}'] == 3
    assert samples['pulsing_asks_total{actor="echo",op="_unsupported",outcome="unsupported"}'] == 1
    assert samples['pulsing_ask_duration_seconds_count{actor="echo"}'] == 4
    assert samples['pulsing_ask_duration_seconds_bucket{actor="echo",le="+Inf"}'] == 4
    assert samples['pulsing_ask_duration_seconds_bucket{actor="echo",le="30.0"}'] == 4
    assert 0 < samples['pulsing_ask_duration_seconds_sum{actor="echo"}'] < 4 * 30
    buckets = [v for k, v in samples.items() if k.startswith("pulsing_ask_duration_seconds_bucket")]
    assert buckets == sorted(buckets)  # cumulative
    assert samples['pulsing_restarts_total{actor="echo",cause="operator"}'] == 1
    assert samples['pulsing_actor_state{actor="echo",state="running"}'] == 1
