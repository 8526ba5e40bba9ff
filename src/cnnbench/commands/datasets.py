"""``cnnbench datasets``: every dataset, whether its files are found and verified, where, and
its train/val/test sizes.

Without names it lists all built-in datasets and exits 0 whatever it finds. With names
(``cnnbench datasets mnist imagefolder:PATH``) it checks those and, if one of them is missing or
corrupt, ends with that one-line error and exit status 2, so scripts can test for data.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from cnnbench.commands import examples
from cnnbench.errors import UserError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "datasets", help="check datasets: found, verified, where, split sizes",
        description="Show every built-in dataset (or the ones named): whether its files are "
                    "found and verified, where they are, and its train/validation/test sizes. "
                    "Without names it exits 0 whatever it finds; with names it ends with a "
                    "one-line error and exit status 2 if one of them is missing or corrupt, so "
                    "scripts can check for data. --download fetches the named ones that are "
                    "missing (on a machine with a network, for a later offline run).",
        epilog=examples("cnnbench datasets",
                        "cnnbench datasets mnist cifar10 --data-dir /data",
                        "cnnbench datasets mnist cifar10 --download   # before an offline job"))
    parser.add_argument("names", nargs="*", metavar="DATASET",
                        help="datasets to check (default: all built-in ones); imagefolder:PATH too")
    parser.add_argument("--data-dir", help="data root, the only one looked in (default: $CNNBENCH_DATA, else ./data "
                                             "then shared/datasets beside the checkout)")
    parser.add_argument("--cache-dir", help="cache root (default: $CNNBENCH_CACHE, else ~/.cache/cnnbench)")
    parser.add_argument("--val-split", "--val_split", type=float, default=0.1,
                        help="fraction of the training set held out for validation (default 0.1)")
    parser.add_argument("--download", action="store_true",
                        help="download the named datasets that are missing (torchvision's "
                             "checksummed downloaders) and decode them into the cache, so that "
                             "a later run needs no network")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def _rows(args) -> list[dict]:
    from cnnbench.data import dataset_info, list_datasets
    from cnnbench.data.split import split_sizes

    rows = []
    for name in args.names or list_datasets():
        info = dataset_info(name, data_dir=args.data_dir, cache_dir=args.cache_dir)
        if info["train"] is not None:
            info["train"], info["val"] = split_sizes(info["train"], args.val_split)
        else:
            info["val"] = None
        rows.append(info)
    return rows


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (it may be swapped, as pytest does)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def run(args: argparse.Namespace) -> int:
    from cnnbench.data import resolve_cache_dir, resolve_data_dir
    from cnnbench.data.split import split_sizes

    split_sizes(0, args.val_split)  # validates --val-split before any work
    if args.download and not args.names:
        raise UserError("--download needs the datasets to fetch, e.g. `cnnbench datasets mnist "
                        "cifar10 --download`")
    # First runs verify and decode datasets (seconds): say so on stderr instead of going silent.
    logger = logging.getLogger("cnnbench.data")
    handler = None
    if not args.json and not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        if args.download:
            from cnnbench.data import load_dataset

            for name in args.names:  # a missing one is fetched, then decoded into the cache
                load_dataset(name, data_dir=args.data_dir, cache_dir=args.cache_dir, download=True)
        rows = _rows(args)
    finally:
        if handler is not None:
            logger.removeHandler(handler)
            logger.setLevel(logging.NOTSET)
    if args.names:
        for row in rows:
            if row["status"] != "found":
                raise UserError(row["message"])
    if args.json:
        out = {"data_dir": str(resolve_data_dir(args.data_dir)),
               "cache_dir": str(resolve_cache_dir(args.cache_dir)),
               "val_split": args.val_split, "datasets": rows}
        print(json.dumps(out, indent=2))
        return 0
    print(_table(rows))
    print(f"\ndata root: {resolve_data_dir(args.data_dir)}   cache: {resolve_cache_dir(args.cache_dir)}"
          f"   val split: {args.val_split:g} of train (seeded)")
    for row in rows:
        for line in ([row["message"]] if row["message"] else []) + row["notes"]:
            print(f"  {line}")
    return 0


def _table(rows: list[dict]) -> str:
    def cell(value) -> str:
        return "-" if value is None else str(value)

    header = ("dataset", "status", "verified", "train", "val", "test", "location")
    lines = [header]
    for row in rows:
        verified = "-" if row["status"] != "found" else (
            f"yes: {row['verification']}" if row["verified"] else f"no: {row['verification']}")
        lines.append((row["name"], row["status"], verified, cell(row["train"]), cell(row["val"]),
                      cell(row["test"]), cell(row["location"])))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    right = {3, 4, 5}  # numbers right-aligned
    return "\n".join(
        "  ".join(v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(line, widths))).rstrip()
        for line in lines)
