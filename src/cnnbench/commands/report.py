"""``cnnbench report DIR [DIR ...]``: the comparison report of finished runs."""

from __future__ import annotations

from cnnbench.report import write_report


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="write report.md, report.html and results.csv from run directories",
        description="Reads only run directories (or folders holding them, such as a study's "
                    "--out directory) and writes report.md with figures/, a self-contained "
                    "report.html and results.csv.")
    parser.add_argument("dirs", nargs="+", metavar="DIR",
                        help="run directories, or directories that contain run directories")
    parser.add_argument("--out", metavar="DIR",
                        help="where to write the report (default: DIR, when only one is given)")
    parser.set_defaults(func=_report)


def _report(args) -> int:
    files = write_report(args.dirs, args.out)
    print(f"wrote {files.markdown}, {files.html} ({len(files.figures)} figure{'' if len(files.figures) == 1 else 's'}), {files.csv}")
    return 0
