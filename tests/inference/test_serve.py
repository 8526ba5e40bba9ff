"""``cnnbench serve`` over HTTP: the models found under the runs folder, their answers, and a
4xx with a one-line message for every bad upload. (The page itself, in a browser:
test_serve_browser.py.)"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import urllib.parse
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnbench.cli import build_parser, main
from cnnbench.errors import UserError
from cnnbench.inference.server import ModelBoard, find_checkpoints, make_server
from cnnbench.training.checkpoint import load_checkpoint, save_checkpoint
from inference_fixtures import draw_digit, live_server, png_header

SRC = Path(__file__).resolve().parents[2] / "src"


def request(url: str, method: str = "GET", path: str = "/", body: bytes | None = None,
            headers: dict | None = None, chunked: bool = False) -> tuple[int, bytes]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        if chunked:  # no Content-Length: the body arrives in pieces of 16 kB
            pieces = (body[i:i + 16384] for i in range(0, len(body), 16384))
            conn.request(method, path, body=pieces, headers=headers or {}, encode_chunked=True)
        else:
            conn.request(method, path, body=body, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def multipart(data: bytes, filename: str = "digit.png", field: str = "image") -> tuple[bytes, dict]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; "
            f"filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    body += data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def upload(url: str, data: bytes, filename: str = "digit.png", **kw) -> tuple[int, dict]:
    body, headers = multipart(data, filename)
    status, reply = request(url, "POST", "/api/predict", body, headers, **kw)
    return status, json.loads(reply)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_every_model_answers_an_uploaded_image(board, digits_files):
    with live_server(board) as url:
        assert url.startswith("http://127.0.0.1:")
        status, page = request(url)
        assert status == 200 and b'<canvas id="pad"' in page and b"{{" not in page
        status, models = request(url, path="/api/models")
        listing = json.loads(models)
        assert [m["name"] for m in listing["models"]] == ["lenet5", "simple_cnn"]
        assert listing["skipped"] == []  # runs/notes.txt is no run: not even tried
        for info, run in zip(listing["models"], (digits_files.lenet, digits_files.simple)):
            summary = json.loads((run / "summary.json").read_text())
            assert info["test_acc"] == summary["test_acc"] and info["test_images"] == 30
            assert info["checkpoint"] == str(run / "best.ckpt")

        # a dark 3 on a white page, as a phone would photograph it
        photo = Image.fromarray(255 - np.asarray(draw_digit(3, 200, width=20)))
        status, reply = upload(url, png(photo), "three.png")
        assert status == 200, reply
        assert reply["image"] == {"name": "three.png", "size": [200, 200], "mode": "L",
                                  "bytes": len(png(photo))}
        assert [a["name"] for a in reply["answers"]] == ["lenet5", "simple_cnn"]
        assert reply["answers"][0]["top"][0]["class"] == "3"  # LeNet-5 reads it (see test_predict)
        for answer in reply["answers"]:
            assert len(answer["top"]) == 3 and answer["top"][0]["class"] in "0123456789", answer
            probs = [t["prob"] for t in answer["top"]]
            assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
            assert answer["ms_per_image"] > 0 and answer["test_acc"] is not None
            assert answer["notes"][0].startswith("inverted")
            # the model's Grad-CAM heat map of its answer, as a PNG the page shows beside it
            assert answer["explained_by"] == "features"
            heat = Image.open(io.BytesIO(base64.b64decode(answer["heatmap"].split(",", 1)[1])))
            assert heat.format == "PNG" and heat.size == (4 * 28, 4 * 28) and heat.mode == "RGB"


def test_bad_uploads_get_a_4xx_and_one_line(board, tmp_path):
    cut = png(Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)))
    big = png(Image.fromarray(np.random.default_rng(1).integers(0, 256, (150, 150), dtype=np.uint8)))
    png_header(tmp_path / "huge.png", 40000, 40000)
    with live_server(board, max_upload_mb=0.02) as url:
        cases = {
            "empty": (upload(url, b"", "empty.png"), 400, "is empty (0 bytes)"),
            "not an image": (upload(url, b"%PDF-1.4 not an image", "paper.pdf"), 415,
                             "is not an image PIL can read"),
            "truncated": (upload(url, cut[:len(cut) // 2], "cut.png"), 400, "is corrupt or truncated"),
            "too many pixels": (upload(url, (tmp_path / "huge.png").read_bytes(), "huge.png"), 413,
                                "is too large (1,600,000,000 pixels)"),
            "over the cap": (upload(url, big, "big.png"), 413, "the upload is larger than 0.02 MB"),
            "over the cap, chunked": (upload(url, big, "big.png", chunked=True), 413,
                                      "the upload is larger than 0.02 MB"),
        }
        for case, ((status, reply), expected, words) in cases.items():
            assert status == expected, (case, status, reply)
            assert list(reply) == ["error"] and words in reply["error"], (case, reply)
            assert "\n" not in reply["error"]
        body, headers = multipart(png(Image.new("L", (28, 28))), field="file")
        status, reply = request(url, "POST", "/api/predict", body, headers)
        assert status == 400 and "field named 'image'" in json.loads(reply)["error"]
        status, reply = request(url, "POST", "/api/predict", b"raw bytes",
                                {"Content-Type": "image/png"})
        assert status == 400 and "field named 'image'" in json.loads(reply)["error"]
        # and after all that it still answers
        assert upload(url, png(Image.new("L", (28, 28))))[0] == 200


class _Payload:
    """Pickled, it would create ``path`` when loaded without weights_only."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_runs_that_cannot_be_used_are_skipped_and_listed(digits_files, tmp_path):
    runs = tmp_path / "runs"
    good = runs / "good"
    good.mkdir(parents=True)
    for name in ("best.ckpt", "config.yaml", "summary.json"):
        (good / name).write_bytes((digits_files.lenet / name).read_bytes())
    state = load_checkpoint(digits_files.lenet / "best.ckpt")
    state["config"]["model"] = "simple_cnn"
    (runs / "mismatch").mkdir()
    save_checkpoint(runs / "mismatch" / "best.ckpt", state)
    (runs / "evil").mkdir()
    marker = tmp_path / "payload-ran"
    torch.save({"format": "cnnbench-checkpoint", "payload": _Payload(marker)}, runs / "evil" / "last.ckpt")
    (runs / "nested" / "deeper" / "run").mkdir(parents=True)
    (runs / "nested" / "deeper" / "run" / "last.ckpt").write_text("garbage")

    assert find_checkpoints(runs) == [runs / "evil" / "last.ckpt", runs / "good" / "best.ckpt",
                                      runs / "mismatch" / "best.ckpt",
                                      runs / "nested" / "deeper" / "run" / "last.ckpt"]
    lines = []
    loaded = ModelBoard(runs, log=lines.append)
    assert [m.name for m in loaded.models] == ["good"] and not marker.exists()
    reasons = {Path(s["checkpoint"]).parent.name: s["reason"] for s in loaded.skipped}
    assert "refusing to read" in reasons["evil"] and "could run code" in reasons["evil"]
    assert "do not fit model simple_cnn" in reasons["mismatch"]
    assert "corrupt, truncated or not a PyTorch weights file" in reasons["run"]
    assert lines[0].startswith("skipped ") and any(line.startswith("loaded good: lenet5 on mnist")
                                                   for line in lines)

    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no usable trained model under .*empty"):
        ModelBoard(tmp_path / "empty")
    with pytest.raises(UserError, match="is not a directory"):
        ModelBoard(tmp_path / "nowhere")


def test_serve_listens_on_loopback_by_default_and_needs_its_extra(board, tmp_path, capsys,
                                                                    monkeypatch):
    args = build_parser().parse_args(["serve", "--runs", "runs"])
    assert (args.host, args.port, args.max_upload_mb) == ("127.0.0.1", 8000, 5.0)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(UserError, match=r"cannot listen on 127.0.0.1:\d+ .*choose another --port"):
            make_server(board, port=taken.getsockname()[1])
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if it were not installed
    assert main(["serve", "--runs", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "cnnbench: error: the web page (cnnbench serve) needs fastapi, which is not installed: "
        "pip install 'cnnbench[serve]'"]


@pytest.mark.slow(seconds=3)  # started first, so that two workers end together
def test_the_serve_command_serves_the_page(digits_files):
    """The real command, as a user starts it: it prints where it serves, and serves there."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "cnnbench", "serve", "--runs",
                                str(digits_files.runs), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        while not lines or not lines[-1].startswith("serving"):
            line = process.stdout.readline()
            assert line, f"serve ended: {''.join(lines)}{process.stderr.read()}"
            lines.append(line)
        assert lines[0].startswith("loaded lenet5: lenet5 on mnist")
        url = lines[-1].split(" at ")[1].split()[0]
        assert lines[-1].startswith("serving 2 models at http://127.0.0.1:")
        status, page = request(url)
        assert status == 200 and b"cnnbench: try the trained models" in page
    finally:
        process.terminate()
        process.wait(20)
        process.stdout.close()
        process.stderr.close()
