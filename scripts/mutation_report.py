"""Turn the last mutmut run into a score: docs/mutation-score.json and the table in docs/testing.md.

Run by ``scripts/mutation.sh`` (after ``mutmut run``); reads mutmut's own results, so it can be
re-run any time with ``./scripts/mutation.sh --report``.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCORE_JSON = REPO / "docs" / "mutation-score.json"
TESTING_MD = REPO / "docs" / "testing.md"
START, END = "<!-- mutation:start -->", "<!-- mutation:end -->"
DETECTED = ("killed", "timeout", "segfault")  # the tests noticed the change
NOT_RUN = "not checked"                         # mutmut was stopped before it tried these


def _mutmut(*args: str) -> str:
    done = subprocess.run([str(Path(sys.executable).parent / "mutmut"), *args], cwd=REPO,
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"mutmut {' '.join(args)} failed: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout


def _module(mutant: str) -> str:
    """``cnnbench.data.split.x_split_sizes__mutmut_1`` -> ``cnnbench.data.split``."""
    return re.split(r"\.x[_ǁ]", mutant, maxsplit=1)[0]


def collect() -> dict:
    if not (REPO / "mutants").is_dir():
        sys.exit("no mutmut results here; run ./scripts/mutation.sh first")
    statuses: dict[str, str] = {}
    for line in _mutmut("results", "--all", "true").splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            statuses[name] = status
    if not statuses:
        sys.exit("mutmut recorded no mutants; see logs/mutmut.log")
    per_module: dict[str, Counter] = defaultdict(Counter)
    survivors: dict[str, list[str]] = defaultdict(list)
    for name, status in sorted(statuses.items()):
        per_module[_module(name)][status] += 1
        if status not in (*DETECTED, NOT_RUN):
            survivors[_module(name)].append(f"{name}: {status}")
    modules = {}
    for module, counts in sorted(per_module.items()):
        total = sum(n for s, n in counts.items() if s != NOT_RUN)  # an interrupted run: not scored
        detected = sum(counts[s] for s in DETECTED)
        modules[module] = {"mutants": total, "detected": detected,
                           "score": detected / total if total else None,
                           "not_run": counts[NOT_RUN], "by_status": dict(counts),
                           "not_detected": survivors[module]}
    total = sum(m["mutants"] for m in modules.values())
    detected = sum(m["detected"] for m in modules.values())
    not_run = sum(m["not_run"] for m in modules.values())
    wall = REPO / "mutants" / ".wall_seconds"
    commit_file = REPO / "mutants" / ".commit"  # the tree mutmut copied (scripts/mutation.sh)
    sys.path.insert(0, str(REPO / "src"))
    from cnnbench.training.machine import cpu_name, git_commit

    import mutmut
    return {"tool": f"mutmut {mutmut.__version__}", "score": detected / total if total else None,
            "mutants": total,
            "detected": detected, "not_run": not_run, "modules": modules,
            "definition": "score = (killed + timeout + segfault) / mutants tried; mutants not "
                          "tried (an interrupted run) are counted apart as not_run",
            "wall_s": float(wall.read_text()) if wall.exists() else None,
            "device": f"CPU: {cpu_name()}",
            "commit": (commit_file.read_text().strip() if commit_file.exists() else git_commit()),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def render(result: dict) -> str:
    lines = [f"Last run: {result['date'][:10]}, mutants of commit `{result['commit']}` (modules not in that run: their own commit), {result['tool']}, "
             f"{result['device']}"
             + (f", {result['wall_s'] / 60:.0f} min" if result["wall_s"] else "") + ".",
             "", "| module | mutants tried | detected | score | not tried | commit |",
             "|---|---|---|---|---|---|"]
    for module, m in result["modules"].items():
        score = f"{100 * m['score']:.1f}%" if m["score"] is not None else "—"
        lines.append(f"| `{module}` | {m['mutants']} | {m['detected']} | {score} | {m['not_run']} "
                     f"| `{m.get('commit', result['commit'])}` |")
    lines.append(f"| **all** | {result['mutants']} | {result['detected']} | "
                 f"**{100 * result['score']:.1f}%** | {result['not_run']} | |")
    lines += ["", "Source: [`docs/mutation-score.json`](mutation-score.json) (it lists every "
              "mutant that was not detected)."]
    return "\n".join(lines)


def keep_earlier(result: dict) -> dict:
    """A run of a subset (``mutation.sh GLOB ...``) leaves the other modules untried: keep
    their numbers from the previous score file, marked with the commit they were measured at."""
    if not SCORE_JSON.exists():
        return result
    earlier = json.loads(SCORE_JSON.read_text())
    for module in list(earlier.get("modules", {})):  # a module that no longer exists is dropped
        if not (REPO / "src" / (module.replace(".", "/") + ".py")).exists():
            earlier["modules"].pop(module)
    for module, m in result["modules"].items():
        before = earlier.get("modules", {}).get(module)
        if m["mutants"] == 0 and before and before.get("mutants"):
            result["modules"][module] = {**before, "commit": before.get("commit", earlier.get("commit")),
                                         "wall_s": before.get("wall_s", earlier.get("wall_s"))}
    for module, m in result["modules"].items():
        m.setdefault("commit", result["commit"])
    result["mutants"] = sum(m["mutants"] for m in result["modules"].values())
    result["detected"] = sum(m["detected"] for m in result["modules"].values())
    result["not_run"] = sum(m["not_run"] for m in result["modules"].values())
    result["score"] = result["detected"] / result["mutants"] if result["mutants"] else None
    return result


def main() -> int:
    result = keep_earlier(collect())
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
    sys.exit(main())
