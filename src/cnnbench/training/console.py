"""Progress of a run on the terminal: tqdm bars on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time


class Console:
    """Progress of a run: tqdm bars on a terminal, plain log lines otherwise, or nothing."""

    PLAIN_INTERVAL_S = 30.0

    def __init__(self, enabled: bool, stream=None):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = None
        self._last_line = 0.0
        self.log_file = None  # lines (not progress bars) are also appended here

    def keep_log(self, path) -> None:
        """Append every line from now on to ``path`` (the run's ``train.log``)."""
        self.log_file = path

    def start_epoch(self, epoch: int, epochs: int, images: int) -> None:
        self.epoch, self.epochs, self.images, self.done = epoch, epochs, images, 0
        self.t0 = self._last_line = time.perf_counter()
        if self.tty:
            from tqdm import tqdm
            self.bar = tqdm(total=images, unit="img", unit_scale=True, leave=False,
                            desc=f"epoch {epoch}/{epochs}", file=self.stream, dynamic_ncols=True)

    def update(self, images: int) -> None:
        self.done += images
        if self.bar is not None:
            self.bar.update(images)

    @staticmethod
    def _shown(metrics: dict[str, float]) -> dict[str, str]:
        """Accuracies in percent, as the epoch lines show them; losses with 4 decimals."""
        return {k: f"{100 * v:.2f}%" if k.endswith("acc") else f"{v:.4f}" for k, v in metrics.items()}

    def log(self, **metrics: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(self._shown(metrics), refresh=False)
        elif self.enabled and time.perf_counter() - self._last_line >= self.PLAIN_INTERVAL_S:
            self._last_line = time.perf_counter()
            elapsed = self._last_line - self.t0
            rate = self.done / elapsed if elapsed > 0 else 0.0
            eta = (self.images - self.done) / rate if rate > 0 else float("nan")
            values = " ".join(f"{k} {v}" for k, v in self._shown(metrics).items())
            self.line(f"epoch {self.epoch}/{self.epochs} {self.done}/{self.images} img {values} "
                      f"{rate:.0f} img/s ETA {eta:.0f} s")

    def end_epoch(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def line(self, text: str, echo: bool = True) -> None:
        """Print ``text`` (unless ``echo`` is False) and append it to the log file."""
        if self.log_file is not None:
            with open(self.log_file, "a") as log:
                log.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {text}\n")
        if not self.enabled or not echo:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)
