"""``cnnbench serve --runs DIR``: a local page where every trained model under DIR answers."""

from __future__ import annotations

import argparse

from cnnbench.commands import examples
from cnnbench.config import DEVICES


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve", help="a local web page to try every trained model on drawings and images",
        description="Serve a local web page where you draw a digit or upload an image and every "
                    "trained model found under DIR answers side by side: its top-3 classes, "
                    "their probabilities, its time per image and its test accuracy. It listens "
                    "on 127.0.0.1 only unless --host says otherwise, caps uploads and refuses "
                    "files that are not images (pip install 'cnnbench[serve]').",
        epilog=examples("cnnbench serve --runs runs",
                        "cnnbench serve --runs runs/mnist-five --port 8080 --max-upload-mb 2"))
    parser.add_argument("--runs", required=True, metavar="DIR",
                        help="a folder of run directories (each with best.ckpt or last.ckpt)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free one)")
    parser.add_argument("--max-upload-mb", type=float, default=5.0, metavar="MB",
                        help="largest accepted upload in MB (default 5)")
    parser.add_argument("--device", choices=DEVICES, default="cpu", help="device (default cpu)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cnnbench.inference.server import serve

    serve(args.runs, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb,
          device=args.device, log=lambda line: print(line, flush=True))
    return 0
