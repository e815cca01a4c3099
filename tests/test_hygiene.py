"""Repository hygiene: clean notebooks, one formatter and linter, one width.

These are the rules the pre-commit hooks in ``.pre-commit-config.yaml``
apply, checked here without pre-commit, so a commit made without the hooks
still fails the tests.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import strip_notebooks

REPO_ROOT = Path(__file__).resolve().parent.parent
NOT_SOURCES = {"build", "output", "data", ".ipynb_checkpoints", ".git"}


def repository_notebooks() -> list[Path]:
    """Every notebook in the repository, outside build and cache folders."""
    found = []
    for folder, subfolders, files in os.walk(REPO_ROOT):
        subfolders[:] = [
            name
            for name in subfolders
            if name not in NOT_SOURCES and not name.startswith(".venv")
        ]
        found += [Path(folder) / name for name in files if name.endswith(".ipynb")]
    return sorted(found)


NOTEBOOKS = repository_notebooks()


def notebook_id(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))


def test_notebooks_found() -> None:
    assert (REPO_ROOT / "keras" / "mnist_train.ipynb") in NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=notebook_id)
def test_notebook_is_clean(path: Path) -> None:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    assert strip_notebooks.problems(notebook) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=notebook_id)
def test_notebook_is_valid_nbformat(path: Path) -> None:
    notebook = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    nbformat.validate(notebook)
    assert notebook.nbformat == 4


@pytest.mark.parametrize("path", NOTEBOOKS, ids=notebook_id)
def test_notebook_stored_as_nbformat_writes(path: Path) -> None:
    """Sorted keys and indent 1, so Jupyter's own saves give small diffs."""
    text = path.read_text(encoding="utf-8")
    assert strip_notebooks.serialise(json.loads(text)) == text


def test_strip_cleans_executed_notebook() -> None:
    notebook = json.loads((REPO_ROOT / "keras" / "mnist_train.ipynb").read_text())
    dirty = copy.deepcopy(notebook)
    code = next(cell for cell in dirty["cells"] if cell["cell_type"] == "code")
    code["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "4\n"}]
    code["execution_count"] = 7
    code["metadata"]["execution"] = {"iopub.status.idle": "2026-01-01T00:00:00Z"}
    dirty["metadata"]["kernelspec"]["name"] = "python3"
    assert len(strip_notebooks.problems(dirty)) == 4
    assert strip_notebooks.problems(strip_notebooks.strip(dirty)) == []
    assert strip_notebooks.strip(dirty) == notebook


@pytest.mark.parametrize(
    "line",
    [
        'model.save("/home/alice/model.keras")',
        "data = open('/eos/user/a/alice/higgs.csv')",
        'path = r"C:\\Users\\alice\\digit.png"',
        'image = "~/Downloads/digit.png"',
    ],
)
def test_absolute_path_detected(line: str) -> None:
    notebook = {
        "metadata": {"kernelspec": {"name": strip_notebooks.KERNEL_NAME}},
        "cells": [{"cell_type": "code", "source": line, "metadata": {}}],
    }
    assert len(strip_notebooks.problems(notebook)) == 1


def test_relative_paths_accepted() -> None:
    notebook = {
        "metadata": {"kernelspec": {"name": strip_notebooks.KERNEL_NAME}},
        "cells": [
            {
                "cell_type": "code",
                "source": 'sys.path.insert(0, "..")\nx = 3 / 4\npath = "images/a.png"',
                "metadata": {},
            }
        ],
    }
    assert strip_notebooks.problems(notebook) == []


# --- one formatter and linter at one line width -------------------------------

needs_ruff = pytest.mark.skipif(
    importlib.util.find_spec("ruff") is None, reason="ruff is not installed"
)


def run_ruff(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *arguments],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@needs_ruff
def test_ruff_format_clean() -> None:
    result = run_ruff("format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_ruff
def test_ruff_check_clean() -> None:
    result = run_ruff("check", "--output-format", "concise", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_ruff_configuration() -> None:
    """Only ruff.toml configures formatting, so every file has one width."""
    others = [
        path
        for pattern in ("ruff.toml", ".ruff.toml", "pyproject.toml", "setup.cfg")
        for path in REPO_ROOT.rglob(pattern)
        if path != REPO_ROOT / "ruff.toml"
        and not any(part.startswith(".venv") for part in path.parts)
    ]
    assert others == []
    settings = (REPO_ROOT / "ruff.toml").read_text()
    assert re.search(r"^line-length = 88$", settings, re.MULTILINE)
    assert '"*.ipynb"' in settings  # notebooks are formatted and linted too


def test_pre_commit_uses_pinned_ruff() -> None:
    config = (REPO_ROOT / ".pre-commit-config.yaml").read_text()
    pinned = re.search(
        r"^ruff==(\S+)$", (REPO_ROOT / "requirements.txt").read_text(), re.MULTILINE
    )
    assert pinned is not None
    versions = set(re.findall(r'"ruff==([^"]+)"', config))
    assert versions == {pinned.group(1)}
    for hook in ("id: ruff-format", "id: ruff-check", "id: strip-notebooks"):
        assert hook in config


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            found[name.strip().lower()] = version.strip()
    return found


def test_swan_requirements_are_tested() -> None:
    """What SWAN users install is the pair that make test-oldest runs on."""
    swan = pins(REPO_ROOT / "requirements-swan.txt")
    oldest = pins(REPO_ROOT / "requirements-oldest.txt")
    assert set(swan) == {"tensorflow", "keras"}
    for name, version in swan.items():
        assert oldest.get(name) == version, name
