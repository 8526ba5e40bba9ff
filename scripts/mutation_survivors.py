"""Sort the mutants that survived (docs/mutation-score.json) by what they change.

For every mutant mutmut did not detect, the mutated function in mutants/ is compared with the
original (``x_<name>__mutmut_orig``): the first changed line of each, and a kind read from it
by the rules of :data:`KINDS` (first match wins; the rules look at the original line and the
mutant's). The kinds say why a test passing such a mutant is no hole in the net (console text,
a message's wording) or that it is one to look at (``other``).

    .venv/bin/python scripts/mutation_survivors.py            # table of kinds, then the "other" ones
    .venv/bin/python scripts/mutation_survivors.py --json F   # every survivor with its kind, to F
"""

from __future__ import annotations

import argparse
import ast
import json
import re
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# (kind, what it means, test on (original line, mutant line))
KINDS = [
    ("console text", "what a run prints for a person (progress, the header, the last line)",
     lambda o, m: bool(re.search(r"\b(console\.line|self\.line|print|log\.(info|warning)|\.write)\(", o))),
    ("message wording", "the words of an error message or a note (tests check its key words)",
     lambda o, m: bool(re.search(r"\braise\b|Error\(|warn\(|notes?\.append\(", o))
     and (("XX" in m and "XX" not in o) or (o.lower() == m.lower() and o != m))),
    ("timing and rounding", "a duration's or a number's rounding in a summary",
     lambda o, m: bool(re.search(r"round\(|perf_counter|monotonic|time\.time|_s\b|seconds", o))),
    ("other", "to read: a hole in the tests, or an equivalent mutant", lambda o, m: True),
]


def _functions(path: Path) -> dict[str, str]:
    source = path.read_text()
    lines = source.splitlines()
    out = {}
    # by line numbers: ast.get_source_segment scans the file from its start for every function
    # (minutes for a file of a thousand mutants)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and "__mutmut_" in node.name:
            out[node.name] = "\n".join(lines[node.lineno - 1:node.end_lineno])
    return out


def changed_line(orig: str, mutant: str) -> tuple[str, str]:
    """The first line that differs (signature lines skipped: only the name differs there)."""
    a, b = orig.splitlines()[1:], mutant.splitlines()[1:]
    for x, y in zip(a, b):
        if x != y:
            return x.strip(), y.strip()
    return (a[len(b)].strip() if len(a) > len(b) else ""), (b[len(a)].strip() if len(b) > len(a) else "")


def classify(score_file: Path) -> list[dict]:
    score = json.loads(score_file.read_text())
    rows, cache = [], {}
    for module, info in score["modules"].items():
        path = REPO / "mutants" / "src" / (module.replace(".", "/") + ".py")
        if path not in cache:
            cache[path] = _functions(path) if path.exists() else {}
        functions = cache[path]
        for entry in info["not_detected"]:
            name, status = entry.rsplit(": ", 1)
            local = name[len(module) + 1:]                     # x_func__mutmut_3 / xǁCǁm__mutmut_3
            orig = functions.get(local.rsplit("__mutmut_", 1)[0] + "__mutmut_orig", "")
            mutant = functions.get(local, "")
            o, m = changed_line(orig, mutant) if orig and mutant else ("?", "?")
            kind = next(k for k, _, test in KINDS if test(o, m))
            rows.append({"mutant": name, "status": status, "kind": kind, "original": o,
                         "mutant_line": m})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--score", default=str(REPO / "docs" / "mutation-score.json"))
    ap.add_argument("--json", metavar="FILE", help="write every survivor with its kind here")
    args = ap.parse_args()
    rows = classify(Path(args.score))
    counts = Counter(r["kind"] for r in rows)
    for kind, meaning, _ in KINDS:
        print(f"{counts.get(kind, 0):5d}  {kind}: {meaning}")
    for r in rows:
        if r["kind"] == "other":
            print(f"\n{r['mutant']} ({r['status']})\n  - {r['original']}\n  + {r['mutant_line']}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
