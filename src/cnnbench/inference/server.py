"""``cnnbench serve``: a local web page where every trained model under a folder answers.

Built on FastAPI (routes, uploads) and uvicorn (the HTTP server). The page (``page.html``)
lets a visitor draw on a canvas or upload an image; each model answers with its top-3
classes, their probabilities and its time per image, side by side with the test accuracy
from its run's ``summary.json``.

Routes: ``GET /`` (the page), ``GET /api/models`` (the models and the runs that could not be
loaded), ``POST /api/predict`` (multipart field ``image``) -> ``{"image": {...}, "answers":
[...]}``; an error is ``{"error": "one line"}`` with a 4xx status: 400 empty, corrupt or
missing upload, 413 upload over the cap or image over the pixel limit, 415 not an image.

Hardening: binds 127.0.0.1 unless told otherwise; the request body is capped (checked on the
Content-Length header and again while it streams in); images are decoded with a pixel limit;
checkpoints are read with ``weights_only=True``; predictions run one at a time.
"""

# No `from __future__ import annotations`: FastAPI reads the route functions' annotations,
# and those of create_app's local routes only resolve when they are real objects.
import base64
import socket
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

from cnnbench.errors import UserError
from cnnbench.inference.explain import explain_images, overlay_png
from cnnbench.extras import require
from cnnbench.inference.images import MAX_PIXELS, ImageInputError, open_image
from cnnbench.inference.model import TrainedModel, load_trained_model
from cnnbench.training.rundir import BEST, LAST

DEFAULT_MAX_UPLOAD_MB = 5.0
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def find_checkpoints(runs_dir: str | Path) -> list[Path]:
    """The checkpoint of every run directory in and below ``runs_dir``: its ``best.ckpt``,
    else its ``last.ckpt``; sorted by path."""
    root = Path(runs_dir)
    if not root.is_dir():
        raise UserError(f"--runs {root} is not a directory; give the folder your runs are in "
                        f"(e.g. runs/)")
    folders = sorted({p.parent for name in (BEST, LAST) for p in root.rglob(name)})
    return [folder / BEST if (folder / BEST).is_file() else folder / LAST for folder in folders]


class ModelBoard:
    """The models found under a folder, answering together, one request at a time."""

    def __init__(self, runs_dir: str | Path, *, device: str = "cpu", max_pixels: int = MAX_PIXELS,
                 log=print):
        self.runs_dir = Path(runs_dir)
        self.max_pixels = max_pixels
        self.models: list[TrainedModel] = []
        self.skipped: list[dict[str, str]] = []
        self.lock = threading.Lock()
        for path in find_checkpoints(self.runs_dir):
            try:
                trained = load_trained_model(path, device)
                trained.predict(trained.prepare(_blank(trained))[0][None])  # warm up: first call is slow
                self.models.append(trained)
                log(f"loaded {self.label(trained)}: {trained.describe()}")
            except UserError as exc:
                self.skipped.append({"checkpoint": str(path), "reason": str(exc)})
                log(f"skipped {path}: {exc}")
        if not self.models:
            raise UserError(f"no usable trained model under {self.runs_dir} (no run directory "
                            f"with a best.ckpt or last.ckpt{' that loads' if self.skipped else ''}); "
                            f"train one with `cnnbench train --out {self.runs_dir}/my-run`")

    def label(self, trained: TrainedModel) -> str:
        """The run's path relative to the runs folder (``mnist/lenet5``)."""
        folder = trained.run_dir or trained.path
        try:
            return str(folder.relative_to(self.runs_dir)) if folder != self.runs_dir else folder.name
        except ValueError:
            return folder.name

    def describe(self) -> dict[str, Any]:
        return {"runs_dir": str(self.runs_dir), "skipped": self.skipped,
                "models": [self._info(m) for m in self.models]}

    def _info(self, trained: TrainedModel) -> dict[str, Any]:
        summary = trained.summary or {}
        split = summary.get("split") or {}
        return {"name": self.label(trained), "model": trained.config.model,
                "dataset": trained.config.dataset, "epoch": trained.epoch,
                "checkpoint": str(trained.path), "test_acc": trained.test_acc,
                "test_images": split.get("test"), "limited": bool(summary.get("limited")),
                "input": trained.preprocessing.describe(), "classes": list(trained.classes),
                "tta": trained.config.tta}

    def answer(self, upload: bytes, filename: str | None = None) -> dict[str, Any]:
        """Every model's top-3 for the uploaded image bytes (errors: ImageInputError)."""
        image = open_image(upload, f"the upload {filename!r}" if filename else None,
                           max_pixels=self.max_pixels)
        answers = []
        with self.lock:
            for trained in self.models:
                t0 = time.perf_counter()
                pixels, notes = trained.prepare(image)
                t1 = time.perf_counter()
                probs = trained.predict(pixels[None])
                t2 = time.perf_counter()
                explained = explain_images(trained, pixels[None])  # Grad-CAM of the top class
                heat = base64.b64encode(overlay_png(pixels, explained["maps"][0])).decode()
                answers.append({**self._info(trained), "top": trained.top(probs, 3)[0],
                                "notes": notes, "ms_per_image": 1000 * (t2 - t1),
                                "prepare_ms": 1000 * (t1 - t0),
                                "heatmap": f"data:image/png;base64,{heat}",
                                "explained_by": explained["layer"] or "saliency"})
        return {"image": {"name": filename, "size": list(image.size), "mode": image.mode,
                          "bytes": len(upload)}, "answers": answers}


def _blank(trained: TrainedModel):
    from PIL import Image

    h, w = trained.preprocessing.image_size
    return Image.new("L", (w, h), 0)


class UploadLimit:
    """ASGI middleware: a request body over ``max_bytes`` is answered 413 (the declared
    Content-Length at once, a body without one as soon as it passes the cap)."""

    def __init__(self, app, max_bytes: int):
        from starlette.exceptions import HTTPException

        self.app, self.max_bytes, self.http_error = app, max_bytes, HTTPException
        self.message = (f"the upload is larger than {max_bytes / 1e6:g} MB; send a smaller image "
                        f"(the server's --max-upload-mb)")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send)
        seen, started = 0, False

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # an HTTPException: FastAPI passes it on while it parses the form (any
                    # other error there becomes "400 error parsing the body")
                    raise self.http_error(413, self.message)
            return message

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except self.http_error as exc:  # raised where no handler turned it into a response
            if exc.status_code != 413 or started:
                raise
            await self._refuse(send)

    async def _refuse(self, send):
        import json

        body = json.dumps({"error": self.message}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def page_html(board: ModelBoard, max_upload_bytes: int) -> str:
    """The page, with the upload cap filled in."""
    import html

    text = resources.files("cnnbench.inference").joinpath("page.html").read_text()
    return (text.replace("{{MAX_UPLOAD_BYTES}}", str(int(max_upload_bytes)))
                .replace("{{RUNS_DIR}}", html.escape(str(board.runs_dir))))


def create_app(board: ModelBoard, max_upload_bytes: int):
    """The FastAPI application serving ``board``."""
    require("serve")
    from fastapi import FastAPI, File, Request, UploadFile
    from fastapi.concurrency import run_in_threadpool
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.exceptions import HTTPException

    app = FastAPI(title="cnnbench", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(UploadLimit, max_bytes=max_upload_bytes)
    page = page_html(board, max_upload_bytes)

    @app.exception_handler(RequestValidationError)
    async def missing_field(request: Request, exc: RequestValidationError):
        return JSONResponse({"error": "send the image as a multipart/form-data field named "
                                      "'image'"}, status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.get("/", response_class=HTMLResponse)
    def index():
        return page

    @app.get("/api/models")
    def models():
        return board.describe()

    @app.post("/api/predict")
    async def predict(image: UploadFile = File(...)):
        upload = await image.read()
        try:
            return await run_in_threadpool(board.answer, upload, image.filename)
        except ImageInputError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)

    return app


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free one); taken -> UserError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another "
                        f"--port (or --host)") from None
    sock.listen(128)
    return sock


def make_server(board: ModelBoard, *, host: str = "127.0.0.1", port: int = 8000,
                max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB):
    """``(uvicorn.Server, socket, url)``: call ``server.run(sockets=[socket])`` to serve
    (``server.should_exit = True`` stops it)."""
    if max_upload_mb <= 0:
        raise UserError(f"--max-upload-mb must be > 0, got {max_upload_mb}")
    _, uvicorn, _ = require("serve")
    app = create_app(board, int(max_upload_mb * 1e6))
    sock = bind(host, port)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{sock.getsockname()[1]}/"
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    return uvicorn.Server(config), sock, url


def serve(runs_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8000,
          max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, device: str = "cpu", log=print) -> None:
    """Load every model under ``runs_dir`` and serve the page until Ctrl-C."""
    require("serve")
    board = ModelBoard(runs_dir, device=device, log=log)
    server, sock, url = make_server(board, host=host, port=port, max_upload_mb=max_upload_mb)
    if host not in LOOPBACK:
        log(f"warning: listening on {host}: other machines can reach this page (there is no "
            f"login); use --host 127.0.0.1 to keep it local")
    log(f"serving {len(board.models)} model{'s' if len(board.models) != 1 else ''} at {url} "
        f"(uploads up to {max_upload_mb:g} MB; Ctrl-C stops)")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
