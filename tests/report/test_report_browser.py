"""report.html in a real headless browser at 1,280 px (Debian's ``chromium``).

A wide results table must scroll inside its own box (the page never scrolls sideways),
short cells ("3.5 min", "92.00 ± 2.00", the headers) must stay on one line, and figures must
be shown at a readable scale. The layout is measured by the browser itself: a copy of the
page with a small script that writes its measurements into the DOM, read back with
``--dump-dom``. A screenshot of the page itself is saved under the test's tmp_path.

Skipped when no chromium binary is installed (``apt-get install chromium``); ``$CHROMIUM``
names another binary.
"""

from __future__ import annotations

import html
import json
import os
import re
import struct
import subprocess
from pathlib import Path

import pytest

from cnnbench.report import write_report
from cnnbench.report import figures
from browser_fixtures import HEADLESS_FLAGS, browser
from report_fixtures import write_fake_run

WIDTH = 1280
MIN_PX_PER_INCH = 120  # 10 pt tick labels at least 16.7 px, 8 pt legends at least 13 px

def run_browser(binary: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    command = [binary, *HEADLESS_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}",
               f"--window-size={WIDTH},2000", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "HOME": str(tmp_path)})
    assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
    return done


# Runs once the page (and its embedded images) has loaded; writes what it measured into
# <pre id="layout-probe"> for --dump-dom.
PROBE = """
<script>
window.addEventListener("load", () => {
  const root = document.documentElement;
  const lines = (el) => {
    const range = document.createRange();
    range.selectNodeContents(el);
    const tops = new Set();
    for (const r of range.getClientRects()) if (r.width > 0) tops.add(Math.round(r.top));
    return tops.size;
  };
  const tables = [...document.querySelectorAll("table")].map((t) => {
    const box = t.parentElement;
    return {
      first: t.querySelector("th").textContent,
      wrapped_in: box.className,
      overflow_x: getComputedStyle(box).overflowX,
      table_width: t.getBoundingClientRect().width,
      box_width: box.clientWidth,
      box_scroll_width: box.scrollWidth,
      multi_line_cells: [...t.querySelectorAll("th, td")]
        .filter((c) => !c.classList.contains("wrap") && lines(c) > 1)
        .map((c) => c.textContent),
    };
  });
  const images = [...document.querySelectorAll("figure img")].map((img) => ({
    alt: img.alt, natural_width: img.naturalWidth,
    width: img.getBoundingClientRect().width, height: img.getBoundingClientRect().height,
  }));
  const body = getComputedStyle(document.body);
  const content = document.body.clientWidth - parseFloat(body.paddingLeft)
    - parseFloat(body.paddingRight);
  const probe = document.createElement("pre");
  probe.id = "layout-probe";
  probe.textContent = JSON.stringify({
    inner_width: window.innerWidth, client_width: root.clientWidth,
    scroll_width: root.scrollWidth,
    content_width: content, tables, images,
  });
  document.body.appendChild(probe);
});
</script>
"""


@pytest.fixture(scope="module")
def wide_report(tmp_path_factory) -> Path:
    """A study whose results table is wider than the page: long run names, GPU names,
    seeds (mean ± std) and 3.5 min training times; a reference (the reproduction table).
    Rendered once for the module's tests (neither changes it)."""
    tmp_path = tmp_path_factory.mktemp("wide-report")
    runs = tmp_path / "runs"
    names = ["resnet18-cifar10-augment-label-smoothing", "vgg16-bn-cifar10-cosine-schedule",
             "lenet5-mnist-baseline"]
    for position, name in enumerate(names):
        for seed in (0, 1):
            run = write_fake_run(runs / f"{name}-seed{seed}", model=name.split("-")[0],
                                 test_acc=0.91 + 0.01 * position + 0.005 * seed, seed=seed)
            summary = json.loads((run / "summary.json").read_text())
            summary.update(train_time_s=210.0, device="cuda:0",
                           device_name="NVIDIA H100 80GB HBM3", params=11_200_000)
            (run / "summary.json").write_text(json.dumps(summary))
            meta = {"study": "wide-table", "study_description": "a study with a wide table",
                    "run": name, "name": f"{name}-seed{seed}", "seed": seed,
                    "position": position, "profile": "quick", "options": {}, "recipe": {},
                    "reference": {"value": [91.5, 93.0], "metric": "test_acc",
                                  "wording": "about 92%"}}
            (run / "study.json").write_text(json.dumps(meta))
    write_report([runs], tmp_path / "report")
    return tmp_path / "report" / "report.html"


@pytest.mark.slow(seconds=2)  # a browser: started first, so that two workers end together
def test_report_reads_well_at_1280px(wide_report, tmp_path):
    binary = browser()

    page = wide_report.read_text()
    probe_page = wide_report.with_name("report-probe.html")
    probe_page.write_text(page.replace("</body>", PROBE + "</body>"))
    dom = run_browser(binary, tmp_path, "--virtual-time-budget=10000", "--dump-dom",
                      probe_page.as_uri()).stdout
    found = re.search(r'<pre id="layout-probe">(.*?)</pre>', dom, re.S)
    assert found, f"the probe did not run; the DOM ends with: {dom[-500:]}"
    layout = json.loads(html.unescape(found.group(1)))

    # the page itself never scrolls sideways, whatever its tables' widths
    assert layout["inner_width"] == WIDTH
    assert layout["scroll_width"] <= layout["client_width"], layout

    for table in layout["tables"]:
        assert table["wrapped_in"] == "table-wrap" and table["overflow_x"] == "auto", table
        assert table["box_width"] <= layout["content_width"] + 1, table
        assert not table["multi_line_cells"], (
            f"short cells wrapped in the table starting {table['first']!r}", table)
    results = next(t for t in layout["tables"] if t["first"] == "run")
    assert results["table_width"] > layout["content_width"], (
        "the fixture's results table should be wider than the page", results)
    assert results["box_scroll_width"] > results["box_width"]  # it scrolls in its box

    # figures: at a readable scale, or as wide as the page allows
    assert len(layout["images"]) >= 7
    for image in layout["images"]:
        px_per_inch = image["width"] / (image["natural_width"] / figures.DPI)
        page_wide = image["width"] >= layout["content_width"] - 1
        assert px_per_inch >= MIN_PX_PER_INCH or page_wide, image
        assert image["width"] <= layout["content_width"] + 1, image
    curves = next(i for i in layout["images"] if i["alt"].startswith("Accuracy per epoch"))
    assert curves["width"] >= 0.6 * WIDTH, curves

    # and a picture of the page itself, for a person to look at
    shot = tmp_path / "report-1280.png"
    run_browser(binary, tmp_path, f"--screenshot={shot}", wide_report.as_uri())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (WIDTH, 2000)
    from PIL import Image

    with Image.open(shot) as image:
        colors = image.convert("L").getextrema()
    assert colors[0] < 100 and colors[1] > 200, "the screenshot shows text on a light page"
    print(f"screenshot of report.html at {WIDTH} px: {shot}")


def test_page_rules_without_a_browser(wide_report):
    """What the browser test relies on, checked in the HTML text (runs without chromium)."""
    from cnnbench.report.document import FIGURE_DISPLAY_SCALE, NOWRAP_CHARS

    page = wide_report.read_text()
    assert page.count("<table>") == page.count('<div class="table-wrap"><table>') > 0
    assert re.search(r"\.table-wrap \{[^}]*overflow-x: auto", page)
    assert re.search(r"th, td \{[^}]*white-space: nowrap", page)
    assert "<td>3.5 min</td>" in page and "<th>same recipe?</th>" in page
    long_name = "resnet18-cifar10-augment-label-smoothing"
    assert len(long_name) > NOWRAP_CHARS and f'<td class="wrap">{long_name}</td>' in page
    sizes = re.findall(r'<img alt="[^"]*" width="(\d+)" height="(\d+)" src="data:image/png;'
                       r'base64,', page)
    assert len(sizes) == page.count("<img ") >= 7
    assert figures.DPI * FIGURE_DISPLAY_SCALE >= MIN_PX_PER_INCH
