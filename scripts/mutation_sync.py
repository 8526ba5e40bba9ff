"""Bring mutmut's copy of the tree (mutants/) up to date for an incremental run.

mutmut copies src/ and tests/ into mutants/ once. On a later run it re-makes the mutated
files whose source changed (and forgets the results of the functions that changed), but
never refreshes the other files: a test added since, or a changed module that is not
mutated, would be missing or stale. This copies every changed file except the mutated ones
(which mutmut owns) and removes files that no longer exist.
"""

from __future__ import annotations

import filecmp
import shutil
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def sync(source: Path, target: Path, owned: set[Path]) -> int:
    changed = 0
    for path in source.rglob("*"):
        if "__pycache__" in path.parts or path.is_dir() or path in owned:
            continue
        copy = target / path.relative_to(source)
        if not copy.exists() or not filecmp.cmp(path, copy, shallow=False):
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, copy)
            changed += 1
    for copy in target.rglob("*.py"):
        if "__pycache__" not in copy.parts and not (source / copy.relative_to(target)).exists():
            copy.unlink()
            changed += 1
    return changed


def main() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mutmut"]
    owned = {REPO / p for p in config["only_mutate"]}
    mutants = REPO / "mutants"
    n = sum(sync(REPO / d, mutants / d, owned) for d in ("src", "tests"))
    for name in config.get("also_copy", []):
        if (REPO / name).is_dir():  # a folder of files: refreshed as src/ and tests/ are
            n += sync(REPO / name, mutants / name, owned)
        else:
            shutil.copy2(REPO / name, mutants / name)
    print(f"mutation_sync: {n} files of src/, tests/ and the also_copy folders refreshed in mutants/")


if __name__ == "__main__":
    main()
