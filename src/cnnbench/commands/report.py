"""``cnnbench report DIR [DIR ...]``: the comparison report of finished runs."""

from __future__ import annotations

from cnnbench.commands import examples


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="compare finished runs: report.md, report.html, results.csv, reproduction.csv",
        description="Compare finished runs: read run directories (or folders holding them, such "
                    "as a study's --out directory) and write report.md with its figures/, a "
                    "self-contained report.html, results.csv and reproduction.csv (the lab reports' "
                    "numbers beside cnnbench's). Nothing is trained or "
                    "evaluated; only the files the runs wrote are read.",
        epilog=examples("cnnbench report runs/mnist-five",
                        "cnnbench report runs/lenet5-mnist-1 runs/resnet18-mnist-1 --out reports/mnist",
                        "cnnbench report runs/mnist-five --no-figures   # tables and CSVs only, faster"))
    parser.add_argument("dirs", nargs="+", metavar="DIR",
                        help="run directories, or directories that contain run directories")
    parser.add_argument("--out", metavar="DIR",
                        help="where to write the report (default: DIR, when only one is given)")
    parser.add_argument("--no-figures", dest="figures", action="store_false",
                        help="draw no figures: every table and CSV file, without the curves and "
                             "the per-run figures (drawing is most of a report's time); figures "
                             "an earlier report drew in OUT/figures/ are removed")
    parser.add_argument("--no-run-figures", dest="run_figures", action="store_false",
                        help="leave out each run's confusion matrix and gallery of misclassified "
                             "images (two figures a run); the comparison figures and curves stay")
    parser.set_defaults(func=_report)


def _report(args) -> int:
    from cnnbench.report import write_report

    files = write_report(args.dirs, args.out, figures=args.figures, run_figures=args.run_figures)
    print(f"wrote {files.markdown}, {files.html} ({len(files.figures)} figure{'' if len(files.figures) == 1 else 's'}), {files.csv}"
          + (f", {files.reproduction_csv}" if files.reproduction_csv else ""))
    return 0
