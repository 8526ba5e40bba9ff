"""Turn the last mutmut run into a score: docs/mutation-score.json and the table in docs/testing.md.

Run by ``scripts/mutation.sh`` (after ``mutmut run``); reads the verdicts saved in
``docs/mutation-verdicts.json`` (``scripts/mutation_verdicts.py``), so it can be re-run any time,
from any checkout, with ``./scripts/mutation.sh --report``.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

from mutation_verdicts import verdicts_path
from mutmut.stats import status_by_exit_code

REPO = Path(__file__).resolve().parent.parent
SCORE_JSON = REPO / "docs" / "mutation-score.json"
TESTING_MD = REPO / "docs" / "testing.md"
START, END = "<!-- mutation:start -->", "<!-- mutation:end -->"
DETECTED = ("killed", "timeout", "segfault")  # the tests noticed the change
NOT_RUN = "not checked"                         # mutmut was stopped before it tried these
UNDETECTED = ("survived", "no tests")
# undetected mutants read one by one and found equivalent (no test can tell them apart), each
# with its reason and its function's source hash (a changed function numbers its mutants anew):
# {"mutant name": {"why": "...", "function_hash": "..."}}
EXPLAINED = REPO / "docs" / "mutation-explained.json"
EXPLAINED_STATUS = "explained"


def _module(mutant: str) -> str:
    """``cnnbench.data.split.x_split_sizes__mutmut_1`` -> ``cnnbench.data.split``."""
    return re.split(r"\.x[_ǁ]", mutant, maxsplit=1)[0]


def _dotted(path: str) -> str:
    """``src/cnnbench/data/split.py`` -> ``cnnbench.data.split``."""
    return path.removeprefix("src/").removesuffix(".py").replace("/", ".")


def _saved() -> tuple[dict, dict, dict]:
    """The saved verdicts: (the file, each mutant's status, each function's source hash)."""
    path = verdicts_path(REPO)
    if not path.exists():
        sys.exit("no saved mutmut verdicts here; run ./scripts/mutation.sh first")
    saved = json.loads(path.read_text())
    statuses = {name: status_by_exit_code[code] for f in saved["files"].values()
                for name, code in f["exit_codes"].items()}
    hashes = {f"{_dotted(path)}.{function}": digest for path, f in saved["files"].items()
              for function, digest in f["function_hashes"].items()}
    return saved, statuses, hashes


def explain(why: str, names: list[str]) -> None:
    """Record undetected mutants as equivalent, each with its function's current source hash."""
    _, statuses, hashes = _saved()
    if not why.strip():
        sys.exit("mutation_report: say why the mutants are equivalent (the first argument)")
    for name in names:
        if statuses.get(name) not in UNDETECTED:
            sys.exit(f"mutation_report: {name} is {statuses.get(name, 'not a saved mutant')}, "
                     f"not undetected; only a survivor can be explained")
    explained = json.loads(EXPLAINED.read_text()) if EXPLAINED.exists() else {}
    for name in names:
        explained[name] = {"why": why, "function_hash": hashes[name.rsplit("__mutmut_", 1)[0]]}
    EXPLAINED.write_text(json.dumps(dict(sorted(explained.items())), indent=1, ensure_ascii=False) + "\n")
    print(f"mutation_report: {len(names)} explained in {EXPLAINED.name}")


def collect() -> dict:
    saved, statuses, hashes = _saved()
    if not statuses:
        sys.exit("mutmut recorded no mutants; see logs/mutmut.log")
    explained = json.loads(EXPLAINED.read_text()) if EXPLAINED.exists() else {}
    for name, entry in sorted(explained.items()):
        # a mutant's name holds for its function's source only (mutmut numbers the mutants)
        current = hashes.get(name.rsplit("__mutmut_", 1)[0]) == entry["function_hash"]
        if current and statuses.get(name) in UNDETECTED:
            statuses[name] = EXPLAINED_STATUS
        elif not current or statuses.get(name) != NOT_RUN:
            print(f"mutation_report: the explanation of {name} in {EXPLAINED.name} is stale "
                  f"({'its function changed' if not current else statuses.get(name)}): read "
                  f"the mutant again, then drop or renew it")
    per_module: dict[str, Counter] = defaultdict(Counter)
    survivors: dict[str, list[str]] = defaultdict(list)
    for name, status in sorted(statuses.items()):
        per_module[_module(name)][status] += 1
        if status not in (*DETECTED, NOT_RUN, EXPLAINED_STATUS):
            survivors[_module(name)].append(f"{name}: {status}")
    modules = {}
    for module, counts in sorted(per_module.items()):
        total = sum(n for s, n in counts.items() if s != NOT_RUN)  # an interrupted run: not scored
        detected = sum(counts[s] for s in DETECTED)
        scored = total - counts[EXPLAINED_STATUS]
        modules[module] = {"mutants": total, "detected": detected,
                           "explained": counts[EXPLAINED_STATUS],
                           "score": detected / scored if scored else None,
                           "not_run": counts[NOT_RUN], "by_status": dict(counts),
                           "not_detected": survivors[module]}
    total = sum(m["mutants"] for m in modules.values())
    detected = sum(m["detected"] for m in modules.values())
    equivalent = sum(m["explained"] for m in modules.values())
    not_run = sum(m["not_run"] for m in modules.values())
    sys.path.insert(0, str(REPO / "src"))
    from cnnbench.devices import cpu_name

    import mutmut
    return {"tool": f"mutmut {mutmut.__version__}",
            "score": detected / (total - equivalent) if total - equivalent else None,
            "mutants": total, "detected": detected, "explained": equivalent, "not_run": not_run,
            "modules": modules,
            "definition": "score = (killed + timeout + segfault) / (mutants tried - explained); "
                          "explained: undetected mutants that docs/mutation-explained.json says "
                          "no test can tell apart (the reason given there); mutants not tried "
                          "(an interrupted run) are counted apart as not_run",
            "wall_s": saved.get("wall_s"),
            "device": f"CPU: {cpu_name()}",
            "commit": saved["commit"],
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def _percent(score: float | None) -> str:
    return f"{100 * score:.1f}%" if score is not None else "—"


def render(result: dict) -> str:
    lines = [f"Last run: {result['date'][:10]}, mutants of commit `{result['commit']}` (verdicts of functions unchanged since earlier runs kept: scripts/mutation_verdicts.py), {result['tool']}, "
             f"{result['device']}"
             + (f", {result['wall_s'] / 60:.0f} min" if result["wall_s"] else "") + ".",
             "", "| module | mutants tried | detected | explained | score | not tried |",
             "|---|---|---|---|---|---|"]
    for module, m in result["modules"].items():
        lines.append(f"| `{module}` | {m['mutants']} | {m['detected']} | {m['explained']} | "
                     f"{_percent(m['score'])} | {m['not_run']} |")
    lines.append(f"| **all** | {result['mutants']} | {result['detected']} | {result['explained']} "
                 f"| **{_percent(result['score'])}** | {result['not_run']} |")
    lines += ["", "Score: detected / (tried - explained). Source: "
              "[`docs/mutation-score.json`](mutation-score.json) (it lists every mutant that was "
              "neither detected nor explained); the explained ones, each with its reason: "
              "[`docs/mutation-explained.json`](mutation-explained.json)."]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv[1:2] == ["explain"]:
        if len(argv) < 4:
            sys.exit('usage: python scripts/mutation_report.py explain "WHY" MUTANT_NAME...')
        explain(argv[2], argv[3:])
        return 0
    if argv[1:]:
        sys.exit('usage: python scripts/mutation_report.py [explain "WHY" MUTANT_NAME...]')
    result = collect()
    SCORE_JSON.write_text(json.dumps(result, indent=1) + "\n")
    text = TESTING_MD.read_text() if TESTING_MD.exists() else f"{START}\n{END}\n"
    if START not in text:
        text += f"\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    text = head + START + "\n" + render(result) + "\n" + END + rest.split(END, 1)[1]
    TESTING_MD.write_text(text)
    print(render(result))
    print(f"wrote {SCORE_JSON.relative_to(REPO)} and {TESTING_MD.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
