"""Strip outputs from notebooks and check the rules every committed notebook meets.

Usage: python scripts/strip_notebooks.py [--check] NOTEBOOK ...

Without ``--check`` each notebook is rewritten in place, without outputs,
execution counts or per-cell execution timings, and with the workshop
kernel. With ``--check`` nothing is written; every rule a notebook breaks is
listed and the exit status is 1. The pre-commit hook runs the first form,
and ``tests/test_hygiene.py`` the checks.

Rules: no outputs, no execution counts, no ``execution`` timing metadata,
the kernel ``tf-keras-workshop``, and no absolute paths of a user's machine
in code cells.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

KERNEL_NAME = "tf-keras-workshop"
KERNEL_DISPLAY_NAME = "Python (TF/Keras workshop)"

# Absolute paths that only exist on one machine: home and scratch folders,
# CERN's shared file systems, Windows drives.
ABSOLUTE_PATH = re.compile(
    r"""(?:^|[\s"'(=])(?:/(?:home|Users|root|tmp|afs|eos|work|cvmfs|mnt|scratch)/"""
    r"""|~/|[A-Za-z]:\\)"""
)


def problems(notebook: dict[str, Any]) -> list[str]:
    """List every rule the notebook breaks, one line each."""
    found = []
    kernel = notebook.get("metadata", {}).get("kernelspec", {}).get("name")
    if kernel != KERNEL_NAME:
        found.append(f"kernel is {kernel!r}, expected {KERNEL_NAME!r}")
    for number, cell in enumerate(notebook.get("cells", []), start=1):
        if cell.get("outputs"):
            found.append(f"cell {number} has outputs")
        if cell.get("execution_count") is not None:
            found.append(f"cell {number} has an execution count")
        if "execution" in cell.get("metadata", {}):
            found.append(f"cell {number} has execution timing metadata")
        if cell.get("cell_type") == "code":
            for line in _source(cell).splitlines():
                if ABSOLUTE_PATH.search(line):
                    found.append(f"cell {number} has an absolute path: {line.strip()}")
    return found


def strip(notebook: dict[str, Any]) -> dict[str, Any]:
    """Remove outputs, execution counts and timings; set the workshop kernel."""
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        cell.get("metadata", {}).pop("execution", None)
    metadata = notebook.setdefault("metadata", {})
    metadata["kernelspec"] = {
        "display_name": KERNEL_DISPLAY_NAME,
        "language": "python",
        "name": KERNEL_NAME,
    }
    return notebook


def _source(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def serialise(notebook: dict[str, Any]) -> str:
    """Return the notebook as nbformat writes it (sorted keys, indent 1)."""
    return json.dumps(notebook, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument(
        "--check", action="store_true", help="list problems, change nothing"
    )
    args = parser.parse_args(argv)
    status = 0
    for path in args.notebooks:
        text = path.read_text(encoding="utf-8")
        notebook = json.loads(text)
        if args.check:
            for problem in problems(notebook):
                print(f"{path}: {problem}")
                status = 1
            continue
        stripped = serialise(strip(notebook))
        if stripped != text:
            path.write_text(stripped, encoding="utf-8")
            print(f"Stripped {path}")
            status = 1  # pre-commit convention: a changed file fails the hook
    return status


if __name__ == "__main__":
    sys.exit(main())
