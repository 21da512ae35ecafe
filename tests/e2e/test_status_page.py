"""The status page (issue 16) in a real headless browser: Debian's chromium driven by
Playwright, against a real daemon.

One browser for the module, a fresh context (cookies, sessionStorage) per test. Every
test records the browser's requests and checks that none left for another host.
Screenshots of each state land in the test's tmp dir (``*.png``).

Without ``/usr/bin/chromium`` (or ``$PULSING_CHROMIUM``) the tests skip on a developer's
machine and fail under CI (``$CI`` set): `.ci/run` installs the package.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

CHROMIUM = os.environ.get("PULSING_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 10_000  # every browser wait is bounded by this

ACTORS = """
[actors.worker]
class = "e2e_actors:Recorder"
max_restarts = 3
min_backoff = 0.05
max_backoff = 0.1

[actors.bad]
class = "e2e_actors:BadInit"
restart_policy = "never"
"""


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the browser tests (.ci/run installs chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[test]')")
    if not Path(CHROMIUM).exists():
        _missing(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield instance
        finally:
            instance.close()


class Page:
    """A browser page on a daemon, with the request log and a screenshot helper."""

    def __init__(self, browser: Any, d: Any, tmp_path: Path, **context: Any) -> None:
        self.d = d
        self.tmp_path = tmp_path
        self.context = browser.new_context(**context)
        self.context.set_default_timeout(WAIT_MS)
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.context.on("request", lambda request: self.requests.append(request.url))
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.shots = 0

    def open(self) -> Any:
        response = self.page.goto(f"http://127.0.0.1:{self.d.port}/")
        assert response is not None and response.status == 200
        return response

    def shot(self, name: str) -> None:
        self.shots += 1
        path = self.tmp_path / f"{self.shots:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)

    def row(self, actor: str) -> Any:
        return self.page.locator(f'tr[data-actor="{actor}"]')

    def cell(self, actor: str, label: str) -> Any:
        return self.row(actor).locator(f'td[data-label="{label}"]')

    def live(self) -> None:
        """Wait until the script has taken over the table and the event stream is open."""
        self.page.locator('tr[data-actor] button.name').first.wait_for()
        self.page.wait_for_function(
            "document.getElementById('live').textContent.startsWith('live')", timeout=WAIT_MS
        )

    def only_the_daemon_was_asked(self) -> None:
        hosts = {urlsplit(url).netloc for url in self.requests if not url.startswith("data:")}
        assert hosts == {f"127.0.0.1:{self.d.port}"}, hosts
        assert not self.errors, self.errors

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_page(browser: Any, tmp_path: Path) -> Iterator[Any]:
    pages: list[Page] = []

    def make(d: Any, **context: Any) -> Page:
        page = Page(browser, d, tmp_path, **context)
        pages.append(page)
        return page

    yield make
    for page in pages:
        page.close()


def expect_text(locator: Any, pattern: str) -> None:
    from playwright.sync_api import expect

    expect(locator).to_contain_text(re.compile(pattern), timeout=WAIT_MS)


def test_page_shows_actors_and_a_failure_arrives_live(daemon_factory: Any, open_page: Any) -> None:
    d = daemon_factory(ACTORS)
    d.wait_state("bad", "failed")
    p = open_page(d)
    response = p.open()
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    p.live()
    expect_text(p.cell("worker", "State"), "running")
    expect_text(p.cell("bad", "State"), "failed")
    expect_text(p.cell("bad", "Last error"), r"system\s+ValueError: cannot initialise")
    expect_text(p.page.locator("#d-health"), "degraded: bad failed")
    expect_text(p.page.locator("#daemon"), rf"pid {d.status()['daemon']['pid']}")
    expect_text(p.cell("worker", "Restarts"), r"0/3\s+\(operator 0\)")
    p.shot("loaded")

    p.page.evaluate("window.notReloaded = true")
    status_reads = sum(url.endswith("/v1/status") for url in p.requests)
    assert d.cli("ask", "worker", "crash", "message=injected").code == 4
    expect_text(p.cell("worker", "Restarts"), r"1/3")
    expect_text(p.cell("worker", "Last error"), r"system\s+RuntimeError: .*injected")
    expect_text(p.cell("worker", "Outcomes"), r"system 1")
    assert p.page.evaluate("window.notReloaded") is True
    p.shot("failure-live")
    # The last failure's traceback (status' last_failure.traceback) expands in place.
    p.cell("worker", "Last error").locator("summary").click()
    expect_text(p.cell("worker", "Last error"), r"Traceback[\s\S]*in crash[\s\S]*injected")
    # Live means the event stream, not polling: a handful of status reads, not one a second.
    assert sum(url.endswith("/v1/status") for url in p.requests) - status_reads <= 4
    p.only_the_daemon_was_asked()


def test_actions_restart_stop_with_confirmation_and_a_failing_action(
    daemon_factory: Any, open_page: Any
) -> None:
    d = daemon_factory(ACTORS)
    p = open_page(d)
    p.open()
    p.live()
    page = p.page
    page.get_by_role("button", name="restart worker", exact=True).click()
    expect_text(page.locator("#results"), r"restart worker: running → running")
    expect_text(p.cell("worker", "Restarts"), r"\(operator 1\)")
    assert d.actor("worker")["operator_restarts"] == 1

    page.get_by_role("button", name="restart bad", exact=True).click()
    expect_text(page.locator("#results li.fail").first, r"restart bad: failed — system: ValueError")
    p.shot("failing-action")

    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="stop worker", exact=True).click()
    expect_text(page.locator("#results li").first, r"stop worker: cancelled")
    assert d.actor("worker")["state"] == "running"

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="stop worker", exact=True).click()
    expect_text(p.cell("worker", "State"), "stopped")
    assert d.actor("worker")["state"] == "stopped"

    # A selection: start both; the good one runs, the bad one reports its category.
    page.get_by_label("select worker").check()
    page.get_by_label("select bad").check()
    page.get_by_role("button", name="Start selected", exact=True).click()
    expect_text(p.cell("worker", "State"), "running")
    expect_text(page.locator("#results"), r"start bad: failed — system")
    p.shot("actions")
    p.only_the_daemon_was_asked()


def test_token_is_asked_once_carried_everywhere_and_never_in_urls(
    daemon_factory: Any, open_page: Any
) -> None:
    secret = "s3cret-token-for-the-page"
    d = daemon_factory(ACTORS, token=secret)
    p = open_page(d)
    response = p.open()
    assert secret not in response.text()
    form = p.page.locator("#token-form")
    form.wait_for()
    assert p.page.locator("tr[data-actor]").count() == 0  # no data without the token
    p.shot("token-asked")

    p.page.locator("#token-input").fill("wrong-token")
    p.page.get_by_role("button", name="Use token").click()
    expect_text(p.page.locator("#token-hint"), "refused")
    assert "wrong-token" not in p.page.content()

    p.page.locator("#token-input").fill(secret)
    p.page.get_by_role("button", name="Use token").click()
    p.live()
    expect_text(p.cell("worker", "State"), "running")
    assert d.cli("ask", "worker", "crash").code == 4  # live over the fetch()-read stream
    expect_text(p.cell("worker", "Restarts"), "1/3")
    p.page.get_by_role("button", name="restart worker", exact=True).click()
    expect_text(p.page.locator("#results"), "restart worker: ")
    p.shot("token-accepted")

    p.page.reload()  # asked once: the tab keeps it
    p.live()
    assert p.page.locator("#token-form").is_hidden()
    assert secret not in p.page.content()

    for url in p.requests:
        assert secret not in url and "token" not in url.lower(), url
    assert secret not in d.log() and "wrong-token" not in d.log()
    p.only_the_daemon_was_asked()

    other = open_page(d)  # a fresh tab has no token: refused, asked again
    other.open()
    other.page.locator("#token-form").wait_for()
    assert other.page.locator("tr[data-actor]").count() == 0


def test_daemon_goes_away_and_comes_back(daemon_factory: Any, open_page: Any) -> None:
    d = daemon_factory(ACTORS)
    p = open_page(d)
    p.open()
    p.live()
    banner = p.page.locator("#banner")
    assert banner.is_hidden()
    assert d.stop() == 0
    expect_text(banner, "not answering")
    p.shot("daemon-gone")

    d.start()
    banner.wait_for(state="hidden")
    expect_text(p.page.locator("#live"), r"reconnected at .*, resumed after event #\d+")
    # The stream was reopened after the last event seen, not from the start.
    assert any(re.search(r"/v1/events\?since=\d+$", url) for url in p.requests), p.requests
    assert d.cli("ask", "worker", "crash").code == 4
    expect_text(p.cell("worker", "Restarts"), "1/3")
    expect_text(p.page.locator("#d-pid"), str(d.status()["daemon"]["pid"]))
    p.shot("daemon-back")
    p.only_the_daemon_was_asked()


def test_narrow_screen_and_keyboard(daemon_factory: Any, open_page: Any) -> None:
    d = daemon_factory(ACTORS)
    p = open_page(d, viewport={"width": 360, "height": 740})
    p.open()
    p.live()
    page = p.page
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"the page scrolls sideways at 360 px ({width} px wide)"
    # Cards: the cell's label is shown beside its value.
    label = page.evaluate(
        "getComputedStyle(document.querySelector('td[data-label=State]'), '::before').content"
    )
    assert "State" in label
    p.shot("narrow")

    # Keyboard only: Tab to the worker's restart button, Enter, then the drill-down.
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.getAttribute('aria-label')") == "restart worker":
            break
    else:
        raise AssertionError("Tab never reached the restart button")
    page.keyboard.press("Enter")
    expect_text(page.locator("#results"), "restart worker: running → running")
    page.get_by_role("button", name="details of worker").focus()
    page.keyboard.press("Enter")
    expect_text(page.locator("#drill-title"), "Actor worker")
    assert page.evaluate("document.activeElement.id") == "drill-title"
    expect_text(page.locator("#actor-events"), "operator")
    page.keyboard.press("Escape")
    page.locator("#drill").wait_for(state="hidden")
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "details of worker"
    p.only_the_daemon_was_asked()


def test_scripts_off_show_the_static_table(daemon_factory: Any, open_page: Any) -> None:
    d = daemon_factory(ACTORS)
    d.wait_state("bad", "failed")
    p = open_page(d, java_script_enabled=False)
    p.open()
    rows = p.page.locator("tr[data-actor]")
    assert rows.count() == 2
    assert "running" in p.cell("worker", "State").inner_text()
    assert "failed" in p.cell("bad", "State").inner_text()
    assert "ValueError" in p.cell("bad", "Last error").inner_text()
    assert "degraded" in p.page.locator("#d-health").inner_text()
    p.shot("no-script")
    p.only_the_daemon_was_asked()


def test_drill_down_logs_events_and_stream_tail(daemon_factory: Any, open_page: Any) -> None:
    d = daemon_factory(ACTORS + '\n[actors.p]\nclass = "stream_actors:Producer"\n')
    assert d.cli("stream", "p", "count", "n=5", "--key", "job-1").code == 0
    assert d.cli("ask", "worker", "crash").code == 4
    p = open_page(d)
    p.open()
    p.live()
    page = p.page
    page.get_by_role("button", name="details of worker").click()
    expect_text(page.locator("#actor-events"), r"failure .*RuntimeError")
    expect_text(page.locator("#logs"), r"RuntimeError")  # the failure, from the actor's log
    assert d.cli("ask", "worker", "crash", "message=second").code == 4
    expect_text(page.locator("#actor-events"), r"message=.*second")

    page.get_by_role("button", name="Refresh streams").click()
    stream_row = page.locator("#streams tr[data-stream]")
    wait = stream_row.locator("td").nth(4)
    expect_text(wait, "completed")
    cells = stream_row.locator("td").all_inner_texts()[1:6]
    assert cells == ["p", "count", "job-1", "completed", "4"]
    stream_row.get_by_role("button").click()
    page.locator("#tail-from").fill("2")
    page.get_by_role("button", name="Tail", exact=True).click()
    expect_text(page.locator("#tail"), r"^2 2\n3 3\n4 4\n— end of stream")
    p.shot("drill-down")
    p.only_the_daemon_was_asked()
