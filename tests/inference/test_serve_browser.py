"""``cnnbench serve``'s page in a real headless browser (Debian's ``chromium``).

The page is opened in chromium, driven over the DevTools protocol: a stroke is drawn on the
canvas with synthesized mouse events, and both trained models must answer on the page with
three classes, probabilities and a time per image, next to their test accuracy; a text file
chosen in the upload field must give the server's message. A screenshot of the page is saved
under the test's tmp_path (its path is printed).

Skipped when no chromium binary is installed (``apt-get install chromium``); ``$CHROMIUM``
names another binary.
"""

from __future__ import annotations

import pytest

import re

from browser_fixtures import SEVEN, DevTools, browser
from inference_fixtures import live_server


@pytest.mark.slow(seconds=3)  # a browser: started first, so that two workers end together
def test_a_drawn_stroke_gets_answers_from_every_model(board, tmp_path):
    binary = browser()
    with live_server(board) as url, DevTools(binary, tmp_path, url, width=1280, height=760) as page:
        assert page.wait_for("document.querySelectorAll('.model').length") == 2
        page.drag_within("#pad", SEVEN)
        page.wait_for("document.querySelectorAll('.model li.answer').length === 6")
        cards = page.evaluate("""[...document.querySelectorAll('.model')].map((c) => ({
            name: c.dataset.name, meta: c.querySelector('.meta').innerText,
            answers: [...c.querySelectorAll('li.answer')].map((li) => li.innerText),
            time: c.querySelector('.time').innerText,
            heat: (c.querySelector('.heat img') || {}).naturalWidth,
            heatCaption: (c.querySelector('.heat figcaption') || {}).innerText,
            notes: (c.querySelector('.notes') || {}).innerText}))""")
        assert sorted(card["name"] for card in cards) == ["lenet5", "simple_cnn"]
        for card, run in zip(cards, ("lenet5", "simple_cnn")):
            summary = board.models[[m.name for m in board.models].index(card["name"])].summary
            assert f"test accuracy {100 * summary['test_acc']:.2f}%" in card["meta"], card
            probs = []
            for line in card["answers"]:
                label, prob = re.fullmatch(r"(\d)\s+([\d.]+)%", line.replace("\n", " ").strip()).groups()
                probs.append(float(prob))
            assert probs == sorted(probs, reverse=True) and sum(probs) <= 100.5, card
            assert re.fullmatch(r"[\d.]+ ms per image", card["time"]), card
            # the heat map of its answer beside it (Grad-CAM, 4 x the 28 px input)
            assert card["heat"] == 112 and card["heatCaption"].startswith("Grad-CAM of "), card
            assert "inverted" in card["notes"] and "centre of mass" in card["notes"], card
        assert "2 models answered for drawing.png" in page.evaluate(
            "document.getElementById('status').innerText")
        shot = page.screenshot(tmp_path / "serve.png")
        print(f"screenshot of the page after a drawn stroke: {shot}")

        # a file that is not an image: the server's one line, shown on the page
        text = tmp_path / "notes.png"
        text.write_text("not an image")
        page.set_file("#file", text)
        message = page.wait_for("document.getElementById('status').className === 'error' && "
                                "document.getElementById('status').innerText")
        assert "is not an image" in message

    from PIL import Image

    with Image.open(shot) as image:
        assert image.width == 1280 and image.height >= 600
        lo, hi = image.convert("L").getextrema()
    assert lo < 80 and hi > 230  # text and drawing on a light page
