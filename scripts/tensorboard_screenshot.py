"""The README's screenshot of TensorBoard's HParams table (docs/tensorboard-hparams.png).

    python scripts/tensorboard_screenshot.py results/search-lenet5-mnist docs/tensorboard-hparams.png

Starts ``tensorboard --logdir FOLDER`` on a free port of 127.0.0.1, opens its HParams tab in
headless chromium (``--screenshot``, the same flags as the browser tests) and saves the page;
then stops TensorBoard. FOLDER is a study's or a search's output folder: its runs wrote their
HParams records, the folder the experiment's list of options (``write_hparams_experiment``).
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests")]

from browser_fixtures import HEADLESS_FLAGS, browser  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="the folder TensorBoard reads (--logdir)")
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=560)
    args = parser.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    board = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", args.folder,
                              "--host", "127.0.0.1", "--port", str(port)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/data/plugins_listing", timeout=2).read()
                break
            except OSError:
                if time.time() > deadline or board.poll() is not None:
                    raise SystemExit("TensorBoard did not start")
                time.sleep(0.3)
        with tempfile.TemporaryDirectory() as profile:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([browser(), *HEADLESS_FLAGS, f"--user-data-dir={profile}",
                            f"--window-size={args.width},{args.height}",
                            "--virtual-time-budget=15000", f"--screenshot={args.out.resolve()}",
                            f"{url}/#hparams"], check=True, capture_output=True, timeout=120)
    finally:
        board.terminate()
        board.wait(10)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
