"""The README's screenshot of ``cnnbench serve`` (docs/serve.png), taken as a visitor sees it.

    python scripts/serve_screenshot.py RUNS_DIR docs/serve.png

Serves every model under RUNS_DIR (on a free port of 127.0.0.1), opens the page in headless
chromium, draws a 7 on the canvas with the mouse, waits until every model has answered and
saves a screenshot. The browser is driven with the tests' DevTools helper
(tests/browser_fixtures.py; needs chromium and websocket-client, the `test` extra).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from browser_fixtures import SEVEN, DevTools, browser  # noqa: E402
from cnnbench.inference.server import ModelBoard, make_server  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", help="the folder `cnnbench serve --runs` gets")
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--width", type=int, default=1100)
    parser.add_argument("--height", type=int, default=560)
    args = parser.parse_args()

    board = ModelBoard(args.runs)
    server, sock, url = make_server(board, port=0)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    scratch = args.out.parent / ".serve-screenshot"
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        with DevTools(browser(), scratch, url, width=args.width, height=args.height) as page:
            page.wait_for(f"document.querySelectorAll('.model').length === {len(board.models)}")
            page.drag_within("#pad", SEVEN)
            page.wait_for(f"document.querySelectorAll('.model li.answer').length === "
                          f"{3 * len(board.models)}")
            page.call("Emulation.setDeviceMetricsOverride", width=args.width, height=args.height,
                      deviceScaleFactor=1, mobile=False)
            page.screenshot(args.out)
            print(page.evaluate("document.getElementById('answers').innerText"))
    finally:
        server.should_exit = True
        thread.join(10)
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
