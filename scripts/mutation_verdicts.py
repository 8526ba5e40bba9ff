"""Keep mutmut's verdicts in the repository, so a mutation run can go on from a fresh checkout.

mutmut keeps what it learned in ``mutants/`` (ignored by git): one ``.meta`` file per mutated
module with the verdict of every mutant and a hash of every function's source. The whole run
of the core modules takes tens of hours on 2 cores, far longer than one working session, and a
fresh checkout has no ``mutants/``. So:

    python scripts/mutation_verdicts.py save      # mutants/**/*.meta -> docs/mutation-verdicts.json
    python scripts/mutation_verdicts.py restore   # docs/mutation-verdicts.json -> mutants/ (before a run)
    python scripts/mutation_verdicts.py undetected  # the mutants no test detected, one per line

``restore`` writes the ``.meta`` files mutmut reads when it makes a module's mutants: mutmut
then keeps the verdict of every mutant whose function's source hash is unchanged and tries
again the mutants of functions that changed (its own rule for an edited file). It refuses a
verdict file made under different test settings (the pytest arguments, test selection, stack
depth or mutation settings of ``[tool.mutmut]``), which would make old verdicts mean something
else. Mutant names are stable only because ``mutate_only_covered_lines`` is off: with it on,
which lines get mutants (and so their numbers) depends on a coverage run.

``scripts/mutation.sh`` calls ``restore`` before mutmut starts and ``save`` when it stops;
``scripts/mutation_report.py`` scores from the saved file.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import sys
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The [tool.mutmut] settings a verdict depends on (which tests run, how, against which mutants).
SETTINGS = ("pytest_add_cli_args", "pytest_add_cli_args_test_selection", "max_stack_depth",
            "do_not_mutate_patterns", "mutate_only_covered_lines", "timeout_multiplier",
            "timeout_constant")


def verdicts_path(repo: Path = REPO) -> Path:
    return repo / "docs" / "mutation-verdicts.json"


def settings_hash(repo: Path = REPO) -> str:
    config = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["mutmut"]
    chosen = {key: config.get(key) for key in SETTINGS}
    return hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:12]


def _meta_files(mutants: Path) -> list[Path]:
    return sorted(p for p in (mutants / "src").rglob("*.py.meta"))


def _read_meta(path: Path) -> dict:
    """A .meta file, read again if mutmut was writing it (it rewrites the file in place)."""
    for _ in range(20):
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            time.sleep(0.1)
    return json.loads(path.read_text())


def save(repo: Path = REPO) -> dict:
    """Write every mutant's verdict (None: not tried yet) and every function hash of mutants/."""
    mutants = repo / "mutants"
    files = {}
    for meta_path in _meta_files(mutants):
        meta = _read_meta(meta_path)
        source = str(meta_path.relative_to(mutants))[: -len(".meta")]
        files[source] = {
            "function_hashes": dict(sorted(meta.get("hash_by_function_name", {}).items())),
            "exit_codes": dict(sorted(meta["exit_code_by_key"].items())),
        }  # not mutmut's durations: its fork-server workers leave them at 0
    if not files:
        sys.exit("mutation_verdicts: no mutmut results in mutants/; nothing saved")
    commit_file = mutants / ".commit"
    data = {"settings": settings_hash(repo),
            "commit": commit_file.read_text().strip() if commit_file.exists() else None,
            "wall_s": _wall_seconds(mutants),
            "saved": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "files": files}
    verdicts_path(repo).write_text(json.dumps(data, indent=0, sort_keys=False) + "\n")
    tried = sum(code is not None for f in files.values() for code in f["exit_codes"].values())
    total = sum(len(f["exit_codes"]) for f in files.values())
    print(f"mutation_verdicts: saved {tried} verdicts of {total} mutants to "
          f"{verdicts_path(repo).relative_to(repo)}")
    return data


def restore(repo: Path = REPO) -> int:
    """Write the saved verdicts as mutmut's .meta files where mutants/ has none yet."""
    path = verdicts_path(repo)
    if not path.exists():
        print("mutation_verdicts: no saved verdicts; mutmut starts from nothing")
        return 0
    data = json.loads(path.read_text())
    if data["settings"] != settings_hash(repo):
        print(f"mutation_verdicts: {path.relative_to(repo)} was made with other [tool.mutmut] "
              "test settings; its verdicts are not reused (every mutant is tried again)")
        return 0
    mutants = repo / "mutants"
    restored = 0
    for source, saved in data["files"].items():
        meta_path = mutants / (source + ".meta")
        if meta_path.exists():  # mutmut's own, newer than the saved copy
            continue
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        meta_path.write_text(json.dumps({
            "exit_code_by_key": saved["exit_codes"],
            "hash_by_function_name": saved["function_hashes"],
            "type_check_error_by_key": {},
            "durations_by_key": {},
            "estimated_durations_by_key": {},
        }, indent=4))
        restored += sum(code is not None for code in saved["exit_codes"].values())
    if data.get("wall_s") and not (mutants / ".wall_seconds").exists():
        (mutants / ".wall_seconds").write_text(str(int(data["wall_s"])))
    print(f"mutation_verdicts: restored {restored} verdicts from {path.relative_to(repo)} "
          f"(mutants of functions changed since are tried again)")
    return restored


def _wall_seconds(mutants: Path) -> float | None:
    """The run's wall seconds in all: ``.wall_seconds`` (earlier runs), plus the time since
    ``.started`` (the running or stopped run's start, written by mutation.sh), which is then
    added to ``.wall_seconds`` and removed so that a second save does not count it again."""
    wall, started = mutants / ".wall_seconds", mutants / ".started"
    total = float(wall.read_text()) if wall.exists() else None
    if started.exists():
        total = (total or 0.0) + max(0.0, time.time() - float(started.read_text()))
        wall.write_text(str(int(total)))
        started.unlink()
    return total


UNDETECTED = (0, 5, 33)  # mutmut's exit codes for "survived" and "no tests"


def undetected(repo: Path = REPO) -> list[str]:
    """The mutants mutmut tried that no test detected (survived, or no test reached them), from
    mutants/: the ones to try again after tests were added (``mutation.sh --retry``). Those
    explained as equivalent (docs/mutation-explained.json) for their function's current source
    are left out: no test can detect them."""
    explained_path = repo / "docs" / "mutation-explained.json"
    explained = json.loads(explained_path.read_text()) if explained_path.exists() else {}
    names = []
    for meta_path in _meta_files(repo / "mutants"):
        meta = _read_meta(meta_path)
        hashes = meta.get("hash_by_function_name", {})
        for name, code in meta["exit_code_by_key"].items():
            function = name.rsplit(".", 1)[-1].rsplit("__mutmut_", 1)[0]
            if code in UNDETECTED and explained.get(name, {}).get("function_hash") != hashes.get(function):
                names.append(name)
    return sorted(names)


def main(argv: list[str]) -> int:
    if argv[1:] == ["save"]:
        save()
    elif argv[1:] == ["restore"]:
        restore()
    elif argv[1:] == ["undetected"]:
        print("\n".join(undetected()))
    else:
        sys.exit("usage: python scripts/mutation_verdicts.py save|restore|undetected")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
