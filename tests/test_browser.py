"""The HTML report in a real browser: headless Chromium opens it from file:// with no network,
every plotly figure must render (its container holds the SVG), the console must stay free of
errors, and no request may leave file://. A screenshot is saved.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON
messages separated by NUL bytes on file descriptors 3 and 4), which needs no driver binary and
no websocket library. Skipped when no Chromium is installed (.ci/run installs Debian's).

The report checked is a synthetic one; ``SLTGEOM_REPORT=results/report.html pytest
tests/test_browser.py -s`` checks a real one instead (the screenshot's path is printed).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from report_fixtures import synthetic_report

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
RENDER_CHECK = """(() => {
  const divs = [...document.querySelectorAll('.plotly-graph-div')];
  const drawn = d => d.querySelector('svg.main-svg') !== null
    && d.querySelectorAll('.scatterlayer .trace').length > 0;
  return {total: divs.length, missing: divs.filter(d => !drawn(d)).map(d => d.id),
          plotly: typeof Plotly !== 'undefined'};
})()"""


def find_chromium() -> str | None:
    override = os.environ.get("SLTGEOM_CHROMIUM")
    if override:
        return override
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


class DevTools:
    """A minimal DevTools-protocol client over Chromium's debugging pipe."""

    def __init__(self, binary: str, profile: Path, log: Path):
        to_child, self._write = os.pipe()
        self._read, from_child = os.pipe()

        def wire_pipe():  # in the child: the protocol's fixed descriptors 3 (in) and 4 (out)
            high_in = fcntl.fcntl(to_child, fcntl.F_DUPFD_CLOEXEC, 10)
            high_out = fcntl.fcntl(from_child, fcntl.F_DUPFD_CLOEXEC, 10)
            os.dup2(high_in, 3)
            os.dup2(high_out, 4)

        args = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-default-apps",
            "--disable-extensions",
            "--disable-sync",
            "--no-first-run",
            "--no-default-browser-check",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile}",
            "about:blank",
        ]
        self._log = open(log, "wb")
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=wire_pipe,
            close_fds=False,  # keep 3 and 4 (our pipe ends are non-inheritable, PEP 446)
        )
        os.close(to_child)
        os.close(from_child)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout=30):
        """Send one command and return its result (events seen meanwhile are kept)."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, since: int = 0, timeout: float = 30) -> dict:
        """The first event ``method`` at or after index ``since`` of :attr:`events`."""
        deadline = time.monotonic() + timeout
        seen = since
        while True:
            for event in self.events[seen:]:
                if event.get("method") == method:
                    return event
            seen = len(self.events)
            self.events.append(self._receive(deadline))

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise ConnectionError("Chromium closed the debugging pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (OSError, RuntimeError, TimeoutError, ConnectionError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._read, self._write):
            os.close(fd)
        self._log.close()


def console_errors(events: list[dict]) -> list[str]:
    """Uncaught exceptions, console.error/assert calls and error-level log entries."""
    errors = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            errors.append(details.get("exception", {}).get("description") or details["text"])
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            errors.append(
                " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            )
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            errors.append(params["entry"]["text"])
    return errors


def outside_requests(events: list[dict]) -> list[str]:
    """URLs requested other than the report itself and inline data."""
    urls = [
        e["params"]["request"]["url"]
        for e in events
        if e.get("method") == "Network.requestWillBeSent"
    ]
    return [u for u in urls if not u.startswith(("file://", "data:", "about:", "blob:"))]


@pytest.fixture(scope="module")
def browser_page(tmp_path_factory):
    binary = find_chromium()
    if binary is None:
        pytest.skip("no Chromium found (apt-get install chromium; .ci/run installs it)")
    given = os.environ.get("SLTGEOM_REPORT")
    report = Path(given).resolve() if given else synthetic_report()
    folder = tmp_path_factory.mktemp("chromium")
    tools = DevTools(binary, folder / "profile", folder / "chromium.log")
    try:
        target = tools.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        attached = tools.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        session = attached["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            tools.send(f"{domain}.enable", session=session)
        metrics = {"width": 1280, "height": 1600, "deviceScaleFactor": 1, "mobile": False}
        tools.send("Emulation.setDeviceMetricsOverride", metrics, session=session)
        mark = len(tools.events)
        tools.send("Page.navigate", {"url": report.as_uri()}, session=session)
        tools.wait_event("Page.loadEventFired", since=mark, timeout=120)
        state = _wait_rendered(tools, session)
        shot = tools.send("Page.captureScreenshot", {"format": "png"}, session=session)
        screenshot = folder / "report.png"
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        yield {"state": state, "events": list(tools.events), "screenshot": screenshot}
    finally:
        tools.close()


def _wait_rendered(tools: DevTools, session: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        result = tools.send(
            "Runtime.evaluate",
            {"expression": RENDER_CHECK, "returnByValue": True},
            session=session,
        )
        state = result["result"]["value"]
        if not state["missing"] or time.monotonic() > deadline:
            return state
        time.sleep(0.5)


def test_every_figure_renders(browser_page):
    state = browser_page["state"]
    assert state["plotly"], "plotly.js did not load"
    assert state["total"] >= 20
    assert state["missing"] == []


def test_no_console_errors(browser_page):
    assert console_errors(browser_page["events"]) == []


def test_no_request_leaves_the_file(browser_page):
    assert outside_requests(browser_page["events"]) == []


def test_screenshot_saved(browser_page):
    png = browser_page["screenshot"].read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    print(f"screenshot: {browser_page['screenshot']}")
