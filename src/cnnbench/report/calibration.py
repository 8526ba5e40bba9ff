"""The report's calibration view: how far each network's confidence can be trusted on the
test set (:mod:`cnnbench.training.calibration` computes the numbers in every run's
``summary.json``): a table across the study's networks and one reliability diagram."""

from __future__ import annotations

from matplotlib.figure import Figure

from cnnbench.report.figures import palette
from cnnbench.report.records import RunGroup
from cnnbench.report.tables import n_seeds

# (summary.json key, column title); the NLL before scaling is the run's test loss
COLUMNS = (("test_ece", "ECE"), ("test_loss", "NLL"), ("test_brier", "Brier"),
           ("temperature", "T (fitted on val)"), ("test_ece_scaled", "ECE at T"),
           ("test_nll_scaled", "NLL at T"), ("test_brier_scaled", "Brier at T"))


def calibrated(groups: list[RunGroup]) -> list[RunGroup]:
    """The groups whose finished runs recorded calibration (runs older than it have none)."""
    return [g for g in groups if g.stat("test_ece") is not None]


def _cell(group: RunGroup, key: str) -> str:
    ms = group.stat(key)
    if ms is None:
        return "—"
    digits = 3 if key == "temperature" else 4
    return f"{ms[0]:.{digits}f} ± {ms[1]:.{digits}f}" if n_seeds(group) > 1 else f"{ms[0]:.{digits}f}"


def calibration_table(groups: list[RunGroup]) -> tuple[list[str], list[list[str]]]:
    """One row per run: test accuracy, then the calibration numbers before and after
    temperature scaling (mean ± std over seeds)."""
    header = ["run", "model", "test acc (%)"] + [title for _key, title in COLUMNS]
    rows = []
    for g in calibrated(groups):
        acc = g.test_acc
        rows.append([g.label, str(g.first.get("model", "—")), "—" if acc is None else f"{100 * acc[0]:.2f}"]
                    + [_cell(g, key) for key, _title in COLUMNS])
    return header, rows


def reliability_figure(groups: list[RunGroup]) -> Figure | None:
    """Accuracy against confidence in the 15 bins of each run's test set (its first seed),
    before temperature scaling; the diagonal is a perfectly calibrated model. A bin's marker
    area grows with the images in it."""
    drawn = [(g, g.first.get("reliability", {}).get("test")) for g in calibrated(groups)]
    drawn = [(g, bins) for g, bins in drawn if bins]
    if not drawn:
        return None
    fig = Figure(figsize=(6.4, 5.2))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="0.6", linestyle=":", linewidth=1, label="calibrated")
    for (g, bins), color in zip(drawn, palette(len(drawn))):
        points = [(c, a, n) for c, a, n in zip(bins["confidence"], bins["accuracy"], bins["count"])
                  if n]
        total = sum(n for _c, _a, n in points)
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        ax.plot(xs, ys, color=color, linewidth=1.2, label=f"{g.label} (ECE {g.first.get('test_ece'):.3f})")
        ax.scatter(xs, ys, s=[8 + 120 * n / total for _c, _a, n in points], color=color, alpha=0.7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top softmax probability)")
    ax.set_ylabel("accuracy")
    ax.set_aspect("equal")
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    return fig
