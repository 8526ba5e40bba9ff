"""A headless chromium for the page tests: find it (or skip), and drive it over the DevTools
protocol.

``browser()`` is the binary (``$CHROMIUM``, else the first of :data:`BROWSERS` on PATH); without
one the test is skipped with the reason. ``DevTools(binary, tmp_path, url)`` starts it with
``--remote-debugging-port=0``, reads the port it chose from ``DevToolsActivePort`` in its
profile folder, and connects to the page's websocket (websocket-client): ``call(method,
**params)`` sends one command and returns its result; ``evaluate(js)`` returns a JavaScript
value; ``wait_for(js)`` polls until it is truthy; ``click``/``drag``/``drag_within`` synthesize mouse events (:data:`SEVEN`: a drawn 7);
``screenshot(path)`` writes a PNG of the page.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

# a handwritten "7" on a drawing pad, as fractions of its width and height: a bar to the
# right, then down and to the left
SEVEN = ([(0.28 + 0.045 * i, 0.25 - 0.004 * i) for i in range(11)]
         + [(0.73 - 0.028 * i, 0.24 + 0.045 * i + 0.001 * i * i) for i in range(1, 12)])

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
HEADLESS_FLAGS = ("--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", "--no-first-run",
                  "--disable-extensions", "--mute-audio")


def browser() -> str:
    for name in ([os.environ["CHROMIUM"]] if os.environ.get("CHROMIUM") else []) + list(BROWSERS):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no chromium binary on PATH (apt-get install chromium, or set $CHROMIUM): "
                "the page is not checked in a browser here")


class DevTools:
    """One headless chromium showing ``url``, driven over the DevTools protocol."""

    def __init__(self, binary: str, tmp_path: Path, url: str, *, width: int = 1280,
                 height: int = 800, timeout: float = 30.0):
        import websocket  # websocket-client (the test extra)

        profile = tmp_path / "chromium-profile"
        self.log = tmp_path / "chromium.log"  # a file, not a pipe: a full pipe would stall it
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [binary, *HEADLESS_FLAGS, "--remote-debugging-port=0", f"--user-data-dir={profile}",
                 f"--window-size={width},{height}", url],
                stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, "HOME": str(tmp_path)})
        self.next_id = 0
        try:
            port = self._port(profile / "DevToolsActivePort", timeout)
            targets = self._poll(lambda: [t for t in json.load(urllib.request.urlopen(
                f"http://127.0.0.1:{port}/json/list", timeout=5)) if t.get("type") == "page"], timeout)
            self.socket = websocket.create_connection(targets[0]["webSocketDebuggerUrl"],
                                                      timeout=timeout, suppress_origin=True)
        except BaseException:
            self.close()
            raise

    def _port(self, file: Path, timeout: float) -> int:
        def read():
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited: {self.log.read_text(errors='replace')[-2000:]}")
            text = file.read_text() if file.exists() else ""
            return int(text.split()[0]) if text.strip() else None
        return self._poll(read, timeout)

    @staticmethod
    def _poll(probe, timeout: float, every: float = 0.1):
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = probe()
            except (OSError, ValueError):
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing after {timeout} s")
            time.sleep(every)

    def call(self, method: str, **params):
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:  # events arrive in between; the reply carries our id
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0):
        """The value of ``expression`` once it is truthy (polled every 0.1 s)."""
        try:
            return self._poll(lambda: self.evaluate(expression), timeout)
        except TimeoutError:
            raise AssertionError(f"{expression} stayed false for {timeout} s; the page shows: "
                                 f"{self.evaluate('document.body.innerText')[:2000]}") from None

    def mouse(self, kind: str, x: float, y: float, buttons: int = 1) -> None:
        self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left",
                  buttons=buttons, clickCount=1)

    def drag(self, points: list[tuple[float, float]]) -> None:
        """Press the left button at the first point, move through the others, release."""
        self.mouse("mousePressed", *points[0])
        for x, y in points[1:]:
            self.mouse("mouseMoved", x, y)
        self.mouse("mouseReleased", *points[-1], buttons=0)

    def drag_within(self, selector: str, points: list[tuple[float, float]]) -> None:
        """:meth:`drag` through ``points`` given as fractions of the element's width and height."""
        x, y, w, h = self.evaluate(f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
                                   f".getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; }})()")
        self.drag([(x + w * fx, y + h * fy) for fx, fy in points])

    def click(self, selector: str) -> None:
        box = self.evaluate(f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
                            f".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()")
        self.drag([tuple(box)])

    def set_file(self, selector: str, path: Path) -> None:
        """Choose ``path`` in the file input ``selector`` (fires its change event)."""
        root = self.call("DOM.getDocument")["root"]["nodeId"]
        node = self.call("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        self.call("DOM.setFileInputFiles", nodeId=node, files=[str(path)])

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        sock = getattr(self, "socket", None)
        if sock is not None:
            sock.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
